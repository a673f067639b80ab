// Permuted copy (transpose generalised to up to 6 axes):
//   out[i] = x[sum_k idx_k(i) * src_stride[k]], idx_k(i) the k-th coordinate of i in the output shape.
// The host passes the output shape and, per output axis, the stride of the source axis it
// came from; unused leading axes have size 1. Launch: 256 threads per workgroup over the
// output elements (grid folded into (x, y)). Reads each input element once.

struct Params { n: u32, groups_x: u32, d0: u32, d1: u32, d2: u32, d3: u32, d4: u32, d5: u32,
                s0: u32, s1: u32, s2: u32, s3: u32, s4: u32, s5: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn permute(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * p.groups_x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    var rem = i;
    var src = 0u;
    src += (rem % p.d5) * p.s5; rem /= p.d5;
    src += (rem % p.d4) * p.s4; rem /= p.d4;
    src += (rem % p.d3) * p.s3; rem /= p.d3;
    src += (rem % p.d2) * p.s2; rem /= p.d2;
    src += (rem % p.d1) * p.s1; rem /= p.d1;
    src += rem * p.s0;
    out[i] = x[src];
}
