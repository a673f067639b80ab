// Fused cross-entropy over the vocabulary; no [N, V] probability tensor is ever written.
//   cross_entropy_forward:  lse[r] = logsumexp(logits[r]); loss[r] = lse[r] - logits[r, t_r]
//   cross_entropy_backward: dlogits[r, v] = g_r * (exp(logits[r, v] - lse[r]) - [v == t_r]),
//                           g_r = dloss[r % dloss_len] * scale
// A target of 0xffffffff is ignored: loss 0 and gradient 0.
// Launch: one workgroup of 256 threads per row (grid folded into (x, y)). The forward reads
// each logit once, keeping an online (max, sum) per thread merged by a tree; the backward
// reads each logit once more and writes its gradient.

struct Params { rows: u32, v: u32, groups_x: u32, dloss_len: u32, scale: f32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>; // logits
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dloss: array<f32>;

const IGNORE: u32 = 0xffffffffu;

// #include "row_stats.wgsl"

@compute @workgroup_size(256)
fn cross_entropy_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.v;
    let st = row_stats(base, p.v, lid);
    if (lid == 0u) {
        let l = st.x + log(st.y);
        lse[row] = l;
        let t = targets[row];
        if (t == IGNORE) { out[row] = 0.0; } else { out[row] = l - x[base + t]; }
    }
}

@compute @workgroup_size(256)
fn cross_entropy_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.v;
    let t = targets[row];
    if (t == IGNORE) {
        for (var c = lid; c < p.v; c += 256u) { out[base + c] = 0.0; }
        return;
    }
    let g = dloss[row % p.dloss_len] * p.scale;
    let l = lse[row];
    for (var c = lid; c < p.v; c += 256u) {
        var d = g * exp(x[base + c] - l);
        if (c == t) { d -= g; }
        out[base + c] = d;
    }
}
