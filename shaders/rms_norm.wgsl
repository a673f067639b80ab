// RMSNorm with a weight over the last axis of [rows, d], and its backward.
//   rms_norm:          y = x * rstd * w, rstd[r] = 1 / sqrt(mean(x[r]^2) + eps); stores rstd.
//   rms_norm_backward: dx = rstd * (w dy - xhat * mean(w dy xhat)), xhat = x * rstd.
//   rms_norm_dweight_partial: partial[k, c] = sum over rows r of chunk k of dy[r, c] x[r, c] rstd[r]
//   rms_norm_dweight:  dw[c] = sum_k partial[k, c].
// Launch: the row kernels use one workgroup of 256 threads per row (grid folded into
// (x, y)), a shared-memory tree for the row sum. The weight gradient runs in two steps: a
// grid of (column blocks, row chunks of 1024), one thread per column looping over its chunk
// (adjacent threads read adjacent columns), then one thread per column over the chunks.
// Splitting the rows spreads the work over many workgroups, and keeps every loop short:
// lavapipe stops any shader loop after 65535 iterations, which cut the sum of a single
// thread looping over all rows (found by the folded-grid case, 66000 rows).
// Each input is read twice per row (statistics, then output), from cache for rows that fit.

struct Params { rows: u32, d: u32, eps: f32, groups_x: u32, chunks: u32, pad0: u32, pad1: u32, pad2: u32 }

const CHUNK: u32 = 1024u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> partials: array<f32>;

var<workgroup> partial: array<f32, 256>;

fn tree_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.d;
    var acc = 0.0;
    for (var c = lid; c < p.d; c += 256u) { let v = x[base + c]; acc += v * v; }
    let r = 1.0 / sqrt(tree_sum(lid, acc) / f32(p.d) + p.eps);
    for (var c = lid; c < p.d; c += 256u) { out[base + c] = x[base + c] * r * w[c]; }
    if (lid == 0u) { rstd[row] = r; }
}

@compute @workgroup_size(256)
fn rms_norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.d;
    let r = rstd[row];
    var acc = 0.0;
    for (var c = lid; c < p.d; c += 256u) { acc += w[c] * dy[base + c] * x[base + c] * r; }
    let dot = tree_sum(lid, acc) / f32(p.d);
    for (var c = lid; c < p.d; c += 256u) {
        out[base + c] = r * (w[c] * dy[base + c] - x[base + c] * r * dot);
    }
}

@compute @workgroup_size(256)
fn rms_norm_dweight_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x * 256u + lid;
    if (c >= p.d) { return; }
    let r0 = wid.y * CHUNK;
    let r1 = min(p.rows, r0 + CHUNK);
    var acc = 0.0;
    for (var r = r0; r < r1; r++) { acc += dy[r * p.d + c] * x[r * p.d + c] * rstd[r]; }
    out[wid.y * p.d + c] = acc;
}

@compute @workgroup_size(256)
fn rms_norm_dweight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = (wid.y * p.groups_x + wid.x) * 256u + lid;
    if (c >= p.d) { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.chunks; k++) { acc += partials[k * p.d + c]; }
    out[c] = acc;
}
