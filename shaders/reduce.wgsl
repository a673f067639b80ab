// Row reductions over the last axis of a [rows, cols] tensor.
//   row_sum: out[r] = sum_c x[r, c]      row_max: out[r] = max_c x[r, c] (NaN if any is NaN)
// Launch: one workgroup of 256 threads per row (grid folded into (x, y) past 65535 rows).
// Each thread strides over the row, then a shared-memory tree combines the 256 partials.
// Reads each input element once.

struct Params { rows: u32, cols: u32, groups_x: u32, pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// #include "numerics.wgsl"

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn row_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var acc = 0.0;
    for (var c = lid; c < p.cols; c += 256u) { acc += x[base + c]; }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) { out[row] = partial[0]; }
}

@compute @workgroup_size(256)
fn row_max(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var acc = neg_inf_from(row);
    for (var c = lid; c < p.cols; c += 256u) { acc = max_nan(acc, x[base + c]); }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] = max_nan(partial[lid], partial[lid + s]); }
        workgroupBarrier();
    }
    if (lid == 0u) { out[row] = partial[0]; }
}
