// Elementwise kernels over a flat f32 buffer of n elements (see shaders/elementwise.wgsl).
//   add, mul: out[i] = a[i] op b[i % nb];  scale: alpha * a[i];  silu; gelu_tanh; gelu_erf;
//   dropout: a[i] * (hash32(i ^ hash32(seed)) >= threshold ? alpha : 0);  fill: alpha.
// Launch: 256 threads per block, one element per thread, 1-D grid. Params: n, nb (dropout:
// the seed), alpha, -, threshold.
// Reads every input element once.

extern "C" __global__ void fill(float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    out[i] = pf(p, 2);
}

extern "C" __global__ void add(const float* a, const float* b, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    out[i] = a[i] + b[i % p.w[1]];
}

extern "C" __global__ void mul(const float* a, const float* b, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    out[i] = a[i] * b[i % p.w[1]];
}

extern "C" __global__ void scale(const float* a, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    out[i] = pf(p, 2) * a[i];
}

// lowbias32 (C. Wellons), as backend/cpu/elementwise.rs::hash32.
__device__ __forceinline__ unsigned int hash32(unsigned int x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    return x ^ (x >> 16);
}

extern "C" __global__ void dropout(const float* a, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    bool keep = hash32(i ^ hash32(p.w[1])) >= p.w[4];
    out[i] = a[i] * (keep ? pf(p, 2) : 0.0f);
}

extern "C" __global__ void silu(const float* a, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    float x = a[i];
    out[i] = x / (1.0f + expf(-x));
}

extern "C" __global__ void gelu_tanh(const float* a, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    float x = a[i];
    out[i] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

extern "C" __global__ void gelu_erf(const float* a, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    float x = a[i];
    out[i] = 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

// ---- backward and gated kernels (see shaders/elementwise.wgsl) ----

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

extern "C" __global__ void silu_backward(const float* x, const float* dy, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    float s = sigmoidf(x[i]);
    out[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
}

extern "C" __global__ void gelu_tanh_backward(const float* x, const float* dy, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    const float k = 0.7978845608028654f;
    float v = x[i];
    float t = tanhf(k * (v + 0.044715f * v * v * v));
    out[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * v * v));
}

extern "C" __global__ void gelu_erf_backward(const float* x, const float* dy, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    float v = x[i];
    float cdf = 0.5f * (1.0f + erff(v * 0.7071067811865476f));
    float pdf = expf(-0.5f * v * v) * 0.3989422804014327f;
    out[i] = dy[i] * (cdf + v * pdf);
}

extern "C" __global__ void swiglu(const float* gate, const float* up, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    float g = gate[i];
    out[i] = g * sigmoidf(g) * up[i];
}

extern "C" __global__ void swiglu_backward(const float* gate, const float* up, float* dgate, const float* dy,
                                           float* dup, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    float g = gate[i], s = sigmoidf(g);
    dup[i] = dy[i] * g * s;
    dgate[i] = dy[i] * up[i] * s * (1.0f + g * (1.0f - s));
}
