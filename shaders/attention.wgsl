// Fused (flash-style) attention and its backward, for head_dim <= 128.
//   q [B, Hq, Tq, D]; k, v [B, Hkv, Tk, D] (grouped-query: query head h reads KV head
//   h / (Hq / Hkv)); o [B, Hq, Tq, D]; lse [B, Hq, Tq] (-inf for a row that sees no key).
//   Query i (absolute position i + Tk - Tq) sees key j unless: causal and j > i + Tk - Tq;
//   key j is hidden (top bit of keyinfo[b, j]: padding, or a visual token in the blind pass);
//   segments are on and the low 31 bits (segment ids) of keyinfo[b, i] and [b, j] differ.
// attention_forward: workgroup (ceil(Tq/64), Hq, B) of 64 threads, one query row per thread
//   with q and the output accumulator in registers. Key/value tiles of 16 rows are staged in
//   workgroup memory (16 KiB), each read once per workgroup; an online softmax rescales the
//   accumulator once per tile. Only o and lse are stored: memory is O(T * D), not O(T^2).
// attention_delta: stats[r] = (lse[r], sum_d dO[r] * O[r]); O is read through binding 0.
// attention_backward_dq: same shape as the forward; recomputes p = exp(s - lse) per key and
//   accumulates dq = scale * sum_j p (dO.v_j - delta) k_j.
// attention_backward_dkv: workgroup (ceil(Tk/64), Hkv, B), one key row per thread; stages
//   tiles of 16 query rows (q, dO, stats) of every query head in the group and accumulates
//   dv = sum_i p dO_i and dk = scale * sum_i p (dO_i.v - delta_i) q_i. No atomics: each
//   output row is owned by one thread, so results are deterministic.

struct Params { b: u32, hq: u32, hkv: u32, tq: u32, tk: u32, d: u32, causal: u32, scale: f32,
                has_seg: u32, neg_inf: f32, rows: u32, groups_x: u32 }

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read> keyinfo: array<u32>;
@group(0) @binding(7) var<storage, read> dout: array<f32>;
@group(0) @binding(8) var<storage, read> stats: array<f32>;
@group(0) @binding(9) var<storage, read_write> out2: array<f32>;

const BR: u32 = 64u;
const BC: u32 = 16u;
const DMAX: u32 = 128u;
const HIDDEN: u32 = 0x80000000u;
const SEG: u32 = 0x7fffffffu;
const NEG: f32 = -3.402823e38;

// #include "numerics.wgsl"

var<workgroup> ta: array<f32, 2048>; // BC x DMAX: keys, or queries in dkv
var<workgroup> tb: array<f32, 2048>; // BC x DMAX: values, or dO in dkv
var<workgroup> tinfo: array<u32, 16>;
var<workgroup> tstat: array<f32, 32>;

fn visible(i: u32, j: u32, qinfo: u32, kinfo: u32) -> bool {
    if ((kinfo & HIDDEN) != 0u) { return false; }
    if (p.causal != 0u && j + p.tq > i + p.tk) { return false; }
    if (p.has_seg != 0u && (qinfo & SEG) != (kinfo & SEG)) { return false; }
    return true;
}

// Last key (exclusive) any query row of this workgroup may see.
fn key_end(row0: u32) -> u32 {
    if (p.causal == 0u) { return p.tk; }
    let last = min(row0 + BR, p.tq);
    return min(last + p.tk - p.tq, p.tk);
}

// Stages keys and values j0..j0+BC of one KV head into ta / tb, and their keyinfo.
fn stage_kv(kbase: u32, j0: u32, b: u32, lid: u32) {
    for (var e = lid; e < BC * p.d; e += BR) {
        let jj = e / p.d;
        let c = e % p.d;
        let j = j0 + jj;
        var kv = 0.0;
        var vv = 0.0;
        if (j < p.tk) { kv = k[kbase + j * p.d + c]; vv = v[kbase + j * p.d + c]; }
        ta[jj * DMAX + c] = kv;
        tb[jj * DMAX + c] = vv;
    }
    if (lid < BC) {
        let j = j0 + lid;
        var info = HIDDEN;
        if (j < p.tk) { info = keyinfo[b * p.tk + j]; }
        tinfo[lid] = info;
    }
}

@compute @workgroup_size(64)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.z;
    let h = wid.y;
    let row0 = wid.x * BR;
    let i = row0 + lid;
    let live = i < p.tq;
    let qrow = ((b * p.hq + h) * p.tq + i) * p.d;
    let kbase = (b * p.hkv + h / (p.hq / p.hkv)) * p.tk * p.d;
    var qr: array<f32, 128>;
    var acc: array<f32, 128>;
    var qinfo = 0u;
    if (live) {
        for (var c = 0u; c < p.d; c++) { qr[c] = q[qrow + c] * p.scale; acc[c] = 0.0; }
        if (p.has_seg != 0u) { qinfo = keyinfo[b * p.tk + i]; }
    }
    var mx = NEG;
    var sum = 0.0;
    let kend = key_end(row0);
    for (var j0 = 0u; j0 < kend; j0 += BC) {
        stage_kv(kbase, j0, b, lid);
        workgroupBarrier();
        if (live) {
            var sc: array<f32, 16>;
            var bmax = NEG;
            // A NaN score is kept (it makes the row NaN, as in PyTorch), not taken for masked.
            var any = false;
            for (var jj = 0u; jj < BC; jj++) {
                var s = NEG;
                if (visible(i, j0 + jj, qinfo, tinfo[jj])) {
                    s = 0.0;
                    for (var c = 0u; c < p.d; c++) { s += qr[c] * ta[jj * DMAX + c]; }
                }
                sc[jj] = s;
                bmax = max(bmax, s);
                any = any || s > NEG || is_nan(s);
            }
            if (any) {
                let nm = max(mx, bmax);
                let corr = exp(mx - nm);
                sum *= corr;
                for (var c = 0u; c < p.d; c++) { acc[c] *= corr; }
                for (var jj = 0u; jj < BC; jj++) {
                    if (sc[jj] > NEG || is_nan(sc[jj])) {
                        let pj = exp(sc[jj] - nm);
                        sum += pj;
                        for (var c = 0u; c < p.d; c++) { acc[c] += pj * tb[jj * DMAX + c]; }
                    }
                }
                mx = nm;
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let r = (b * p.hq + h) * p.tq + i;
        // A row that sees no key has sum 0; a NaN sum (NaN or +inf scores) propagates.
        if (sum == 0.0) {
            for (var c = 0u; c < p.d; c++) { out[qrow + c] = 0.0; }
            lse[r] = p.neg_inf;
        } else {
            let inv = 1.0 / sum;
            for (var c = 0u; c < p.d; c++) { out[qrow + c] = acc[c] * inv; }
            lse[r] = mx + log(sum);
        }
    }
}

@compute @workgroup_size(64)
fn attention_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = (wid.y * p.groups_x + wid.x) * BR + lid;
    if (r >= p.rows) { return; }
    var acc = 0.0;
    for (var c = 0u; c < p.d; c++) { acc += q[r * p.d + c] * dout[r * p.d + c]; }
    out[2u * r] = lse[r];
    out[2u * r + 1u] = acc;
}

@compute @workgroup_size(64)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.z;
    let h = wid.y;
    let row0 = wid.x * BR;
    let i = row0 + lid;
    let r = (b * p.hq + h) * p.tq + i;
    let qrow = r * p.d;
    let kbase = (b * p.hkv + h / (p.hq / p.hkv)) * p.tk * p.d;
    var qr: array<f32, 128>;
    var dor: array<f32, 128>;
    var dq: array<f32, 128>;
    var qinfo = 0u;
    var l = NEG;
    var delta = 0.0;
    // A row that saw no key (lse = -inf) gets a zero gradient.
    var live = i < p.tq;
    if (live) {
        l = stats[2u * r];
        delta = stats[2u * r + 1u];
        live = l > NEG;
        for (var c = 0u; c < p.d; c++) { qr[c] = q[qrow + c]; dor[c] = dout[qrow + c]; dq[c] = 0.0; }
        if (p.has_seg != 0u) { qinfo = keyinfo[b * p.tk + i]; }
    }
    let kend = key_end(row0);
    for (var j0 = 0u; j0 < kend; j0 += BC) {
        stage_kv(kbase, j0, b, lid);
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < BC; jj++) {
                if (!visible(i, j0 + jj, qinfo, tinfo[jj])) { continue; }
                var s = 0.0;
                var dp = 0.0;
                for (var c = 0u; c < p.d; c++) {
                    s += qr[c] * ta[jj * DMAX + c];
                    dp += dor[c] * tb[jj * DMAX + c];
                }
                let pj = exp(s * p.scale - l);
                let ds = pj * (dp - delta) * p.scale;
                for (var c = 0u; c < p.d; c++) { dq[c] += ds * ta[jj * DMAX + c]; }
            }
        }
        workgroupBarrier();
    }
    if (i < p.tq) {
        for (var c = 0u; c < p.d; c++) { out[qrow + c] = select(0.0, dq[c], live); }
    }
}

@compute @workgroup_size(64)
fn attention_backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.z;
    let hk = wid.y;
    let key0 = wid.x * BR;
    let j = key0 + lid;
    let live = j < p.tk;
    let krow = ((b * p.hkv + hk) * p.tk + j) * p.d;
    var kr: array<f32, 128>;
    var vr: array<f32, 128>;
    var dk: array<f32, 128>;
    var dv: array<f32, 128>;
    var kinfo = HIDDEN;
    if (live) {
        for (var c = 0u; c < p.d; c++) { kr[c] = k[krow + c]; vr[c] = v[krow + c]; dk[c] = 0.0; dv[c] = 0.0; }
        kinfo = keyinfo[b * p.tk + j];
    }
    // Under the causal mask, queries before key0 + Tq - Tk see none of this workgroup's keys.
    var first = 0u;
    if (p.causal != 0u && key0 + p.tq > p.tk) { first = key0 + p.tq - p.tk; }
    let group = p.hq / p.hkv;
    for (var h = hk * group; h < (hk + 1u) * group; h++) {
        let qbase = (b * p.hq + h) * p.tq;
        for (var i0 = first; i0 < p.tq; i0 += BC) {
            for (var e = lid; e < BC * p.d; e += BR) {
                let ii = e / p.d;
                let c = e % p.d;
                let i = i0 + ii;
                var qv = 0.0;
                var dv2 = 0.0;
                if (i < p.tq) { qv = q[(qbase + i) * p.d + c]; dv2 = dout[(qbase + i) * p.d + c]; }
                ta[ii * DMAX + c] = qv;
                tb[ii * DMAX + c] = dv2;
            }
            if (lid < BC) {
                let i = i0 + lid;
                var info = 0u;
                var l = NEG;
                var delta = 0.0;
                if (i < p.tq) {
                    l = stats[2u * (qbase + i)];
                    delta = stats[2u * (qbase + i) + 1u];
                    if (p.has_seg != 0u) { info = keyinfo[b * p.tk + i]; }
                }
                tinfo[lid] = info;
                tstat[2u * lid] = l;
                tstat[2u * lid + 1u] = delta;
            }
            workgroupBarrier();
            if (live) {
                for (var ii = 0u; ii < BC; ii++) {
                    let i = i0 + ii;
                    let l = tstat[2u * ii];
                    if (i >= p.tq || l <= NEG || !visible(i, j, tinfo[ii], kinfo)) { continue; }
                    var s = 0.0;
                    var dp = 0.0;
                    for (var c = 0u; c < p.d; c++) {
                        s += ta[ii * DMAX + c] * kr[c];
                        dp += tb[ii * DMAX + c] * vr[c];
                    }
                    let pj = exp(s * p.scale - l);
                    let ds = pj * (dp - tstat[2u * ii + 1u]) * p.scale;
                    for (var c = 0u; c < p.d; c++) {
                        dv[c] += pj * tb[ii * DMAX + c];
                        dk[c] += ds * ta[ii * DMAX + c];
                    }
                }
            }
            workgroupBarrier();
        }
    }
    if (live) {
        for (var c = 0u; c < p.d; c++) { out[krow + c] = dk[c]; out2[krow + c] = dv[c]; }
    }
}
