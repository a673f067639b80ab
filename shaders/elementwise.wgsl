// Elementwise kernels over a flat f32 buffer of n elements.
//   add, mul:   out[i] = a[i] op b[i % nb]   (b repeats over leading axes: bias, norm weight)
//   scale:      out[i] = alpha * a[i]
//   silu:       out[i] = a[i] * sigmoid(a[i])
//   gelu_tanh:  out[i] = 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))
//   gelu_erf:   out[i] = 0.5 a (1 + erf(a / sqrt(2)))
//   dropout:    out[i] = a[i] * (hash32(i ^ hash32(seed)) >= threshold ? alpha : 0), seed in nb
//   fill:       out[i] = alpha (Tensor::full on a device: no host buffer, no upload)
// Launch: 256 threads per workgroup, one element per thread; the workgroup grid is
// folded into (x, y) when it exceeds 65535 groups. Reads every input element once.

struct Params { n: u32, nb: u32, alpha: f32, groups_x: u32, threshold: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn flat(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * p.groups_x + wid.x) * 256u + lid;
}

// Abramowitz & Stegun 7.1.26: |error| < 1.5e-7; WGSL has no erf builtin.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-z * z);
    return s * y;
}

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    out[i] = p.alpha;
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    out[i] = a[i] + b[i % p.nb];
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    out[i] = a[i] * b[i % p.nb];
}

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    out[i] = p.alpha * a[i];
}

// lowbias32 (C. Wellons), as backend/cpu/elementwise.rs::hash32.
fn hash32(v: u32) -> u32 {
    var x = v;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    return x ^ (x >> 16u);
}

@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let keep = hash32(i ^ hash32(p.nb)) >= p.threshold;
    out[i] = a[i] * select(0.0, p.alpha, keep);
}

@compute @workgroup_size(256)
fn silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    out[i] = x / (1.0 + exp(-x));
}

@compute @workgroup_size(256)
fn gelu_tanh(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    // Clamp: some drivers compute tanh as a ratio of exponentials that overflows to NaN.
    let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
    out[i] = 0.5 * x * (1.0 + tanh(u));
}

@compute @workgroup_size(256)
fn gelu_erf(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    out[i] = 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476));
}

// ---- backward and gated kernels: out = f(a, b); swiglu_backward also reads c (dy) and writes out2 ----

@group(0) @binding(4) var<storage, read> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// a = x, b = dy.
@compute @workgroup_size(256)
fn silu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    let s = sigmoid(x);
    out[i] = b[i] * s * (1.0 + x * (1.0 - s));
}

@compute @workgroup_size(256)
fn gelu_tanh_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    let k = 0.7978845608028654;
    let t = tanh(clamp(k * (x + 0.044715 * x * x * x), -15.0, 15.0));
    out[i] = b[i] * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x));
}

@compute @workgroup_size(256)
fn gelu_erf_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let x = a[i];
    let cdf = 0.5 * (1.0 + erf_approx(x * 0.7071067811865476));
    let pdf = exp(-0.5 * x * x) * 0.3989422804014327;
    out[i] = b[i] * (cdf + x * pdf);
}

// a = gate, b = up: out = silu(gate) * up.
@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let g = a[i];
    out[i] = g * sigmoid(g) * b[i];
}

// a = gate, b = up, c = dy: out = dgate, out2 = dup.
@compute @workgroup_size(256)
fn swiglu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat(wid, lid);
    if (i >= p.n) { return; }
    let g = a[i];
    let s = sigmoid(g);
    out2[i] = c[i] * g * s;
    out[i] = c[i] * b[i] * s * (1.0 + g * (1.0 - s));
}
