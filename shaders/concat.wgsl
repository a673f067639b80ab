// Block copy along one axis, the kernel behind concat and slice. Viewing source and
// destination as [outer, axis, inner], it copies `len` rows of the axis:
//   dst[o, dst_off + j, r] = src[o, src_off + j, r]   for j < len, r < inner.
// concat runs it once per input into one output; slice runs it once.
// Launch: 256 threads per workgroup over outer*len*inner elements (grid folded into (x, y)).

struct Params { n: u32, len: u32, inner: u32, src_dim: u32, src_off: u32, dst_dim: u32, dst_off: u32, groups_x: u32 }

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn copy_block(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * p.groups_x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    let r = i % p.inner;
    let j = (i / p.inner) % p.len;
    let o = i / (p.inner * p.len);
    dst[(o * p.dst_dim + p.dst_off + j) * p.inner + r] = src[(o * p.src_dim + p.src_off + j) * p.inner + r];
}
