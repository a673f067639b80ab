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

var<workgroup> pm: array<f32, 256>;
var<workgroup> ps: array<f32, 256>;

// Row statistics (max, sum of exp(x - max)) shared by both kernels.
fn row_stats(base: u32, lid: u32) -> vec2<f32> {
    var m = -3.402823e38;
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        let v = x[base + c];
        if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
    }
    pm[lid] = m;
    ps[lid] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            let m2 = max(pm[lid], pm[lid + k]);
            ps[lid] = ps[lid] * exp(pm[lid] - m2) + ps[lid + k] * exp(pm[lid + k] - m2);
            pm[lid] = m2;
        }
        workgroupBarrier();
    }
    return vec2<f32>(pm[0], ps[0]);
}

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = row_stats(base, lid);
    let inv = 1.0 / st.y;
    for (var c = lid; c < p.cols; c += 256u) { out[base + c] = exp(x[base + c] - st.x) * inv; }
}

@compute @workgroup_size(256)
fn log_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = row_stats(base, lid);
    let lse = st.x + log(st.y);
    for (var c = lid; c < p.cols; c += 256u) { out[base + c] = x[base + c] - lse; }
}
