// Softmax and log-softmax over the last axis of a [rows, cols] tensor.
//   softmax:     out[r, c] = exp(x[r, c] - m_r) / s_r
//   log_softmax: out[r, c] = x[r, c] - m_r - log(s_r)
// with m_r the row max and s_r = sum_c exp(x[r, c] - m_r).
// Launch: one workgroup of 256 threads per row (grid folded past 65535 rows).
// Pass 1 keeps an online (max, sum) pair per thread, so the row is read once for the
// statistics; a tree merges the pairs; pass 2 reads the row again and writes it.

struct Params { rows: u32, cols: u32, groups_x: u32, pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// #include "row_stats.wgsl"

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = row_stats(base, p.cols, lid);
    let inv = 1.0 / st.y;
    for (var c = lid; c < p.cols; c += 256u) { out[base + c] = exp(x[base + c] - st.x) * inv; }
}

@compute @workgroup_size(256)
fn log_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = row_stats(base, p.cols, lid);
    let lse = st.x + log(st.y);
    for (var c = lid; c < p.cols; c += 256u) { out[base + c] = x[base + c] - lse; }
}
