// PGPO token weights per response (PGPO_METHOD.md section 3). For row r of tvd [B, L] over
// its valid tokens (mask > 0):
//   St = ln(1 + S);  I = (St - min St) / (max St - min St + eps)
//   thr = tau, or (variant 1, quantile) the value at index floor(n * tau) of the sorted I
//   w = I / (thr + eps) if I < thr, else 1 + beta (I - thr) / (1 - thr + eps);
//   variant 2 (floor): w = max(w, floor) under the threshold
//   wn = w * n / sum(w) (mass conservation; variant 3, no-norm, keeps w); 1 when sum(w) = 0
//   Invalid tokens get 0.
// Launch: one workgroup of 256 threads per response (grid folded into (x, y)); min, max, the
// count and sum(w) by shared-memory trees; the quantile by counting ranks (O(L^2 / 256) per
// thread, fine for response lengths of a few thousand).

struct Params { rows: u32, l: u32, tau: f32, beta: f32, eps: f32, variant: u32, floor: f32, groups_x: u32 }

@group(0) @binding(0) var<storage, read> tvd: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red: array<f32, 256>;

// #include "numerics.wgsl"
var<workgroup> thr_shared: f32;

fn tree(lid: u32, v: f32, op: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            if (op == 0u) { red[lid] += red[lid + s]; }
            else if (op == 1u) { red[lid] = min(red[lid], red[lid + s]); }
            else { red[lid] = max(red[lid], red[lid + s]); }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn pgpo_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.l;
    var cnt = 0.0;
    var lo = 3.402823e38;
    var hi = -3.402823e38;
    for (var c = lid; c < p.l; c += 256u) {
        if (mask[base + c] > 0.0) {
            let st = log1p(tvd[base + c]);
            cnt += 1.0;
            lo = min(lo, st);
            hi = max(hi, st);
        }
    }
    let n = tree(lid, cnt, 0u);
    lo = tree(lid, lo, 1u);
    hi = tree(lid, hi, 2u);
    let span = hi - lo + p.eps;
    if (lid == 0u) { thr_shared = p.tau; }
    workgroupBarrier();
    if (p.variant == 1u && n > 0.0) {
        let k = min(u32(floor(n * p.tau)), u32(n) - 1u);
        for (var c = lid; c < p.l; c += 256u) {
            if (mask[base + c] <= 0.0) { continue; }
            let ic = (log1p(tvd[base + c]) - lo) / span;
            // The rank with ties broken by index: exactly one element has rank k, so one
            // invocation writes the threshold (tied values are equal, but several writers
            // would race).
            var rank = 0u;
            for (var j = 0u; j < p.l; j++) {
                if (mask[base + j] <= 0.0) { continue; }
                let ij = (log1p(tvd[base + j]) - lo) / span;
                if (ij < ic || (ij == ic && j < c)) { rank += 1u; }
            }
            if (rank == k) { thr_shared = ic; }
        }
    }
    workgroupBarrier();
    let thr = thr_shared;
    var wsum = 0.0;
    for (var c = lid; c < p.l; c += 256u) {
        var w = 0.0;
        if (mask[base + c] > 0.0) {
            let i = (log1p(tvd[base + c]) - lo) / span;
            if (i < thr) {
                w = i / (thr + p.eps);
                if (p.variant == 2u) { w = max(w, p.floor); }
            } else {
                w = 1.0 + p.beta * (i - thr) / (1.0 - thr + p.eps);
            }
        }
        out[base + c] = w;
        wsum += w;
    }
    let total = tree(lid, wsum, 0u);
    for (var c = lid; c < p.l; c += 256u) {
        if (mask[base + c] <= 0.0) { out[base + c] = 0.0; continue; }
        if (total <= 0.0) { out[base + c] = 1.0; }
        else if (p.variant != 3u) { out[base + c] = out[base + c] * n / total; }
    }
}
