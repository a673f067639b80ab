// Fused AdamW step (decoupled weight decay, bias correction) and the partial sums of
// squares behind the global gradient norm.
//   adamw:       g = grad * grad_scale (clipping); m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g^2;
//                p' = p - lr (wd p + (m' / bias1) / (sqrt(v' / bias2) + eps))
//   sum_squares: out[k] = sum of x^2 over block k of `block` elements.
// Launch: adamw, 256 threads per workgroup, one element each (grid folded into (x, y)),
// reading p, g, m, v once and writing p', m', v' once; sum_squares, one workgroup of 256
// threads per block with a shared-memory tree.

struct Params { n: u32, groups_x: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, bias1: f32,
                bias2: f32, grad_scale: f32, block: u32, pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> m: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> v_out: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * p.groups_x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    let g = grad[i] * p.grad_scale;
    let m2 = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let v2 = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m_out[i] = m2;
    v_out[i] = v2;
    out[i] = x[i] - p.lr * (p.wd * x[i] + (m2 / p.bias1) / (sqrt(v2 / p.bias2) + p.eps));
}

@compute @workgroup_size(256)
fn sum_squares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = wid.y * p.groups_x + wid.x;
    let start = k * p.block;
    if (start >= p.n) { return; }
    let end = min(start + p.block, p.n);
    var acc = 0.0;
    for (var i = start + lid; i < end; i += 256u) { acc += x[i] * x[i]; }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    if (lid == 0u) { out[k] = partial[0]; }
}
