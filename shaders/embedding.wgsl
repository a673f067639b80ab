// Embedding lookup and its backward.
//   gather:      out[r, d] = table[ids[r], d]                         (out [N, D], table [V, D])
//   scatter_add: dtable[v, d] = sum over positions r with ids[r] = v of dout[r, d]
// scatter_add is deterministic and atomic-free: the host sorts positions by id (counting
// sort) into `order`, with row v's positions at order[offsets[v] .. offsets[v+1]]; each
// vocabulary row is then summed in a fixed order, and rows no token hit are written as 0.
// Launch: gather, 256 threads per workgroup over N*D elements (grid folded into (x, y));
// scatter_add, one workgroup per vocabulary row, threads striding over D.

// gather's table is bound as words in its dtype (TABLE_DTYPE: f32, or bf16/f16 packed two to a
// word, include/half.wgsl) and widened exactly; scatter_add's dout is f32.

override TABLE_DTYPE: u32 = 0u;

struct Params { n: u32, d: u32, v: u32, groups_x: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> offsets: array<u32>;

// #include "half.wgsl"

fn load_table(i: u32) -> f32 {
    if (TABLE_DTYPE == 0u) { return bitcast<f32>(src[i]); }
    return widen_half(src[i >> 1u], (i & 1u) == 1u, TABLE_DTYPE);
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * p.groups_x + wid.x) * 256u + lid;
    if (i >= p.n * p.d) { return; }
    let r = i / p.d;
    let c = i % p.d;
    out[i] = load_table(ids[r] * p.d + c);
}

// Here `ids` holds the counting-sorted positions (`order`).
@compute @workgroup_size(256)
fn scatter_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let v = wid.y * p.groups_x + wid.x;
    if (v >= p.v) { return; }
    let start = offsets[v];
    let end = offsets[v + 1u];
    for (var c = lid; c < p.d; c += 256u) {
        var acc = 0.0;
        for (var k = start; k < end; k++) { acc += bitcast<f32>(src[ids[k] * p.d + c]); }
        out[v * p.d + c] = acc;
    }
}
