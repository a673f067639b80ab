// Elementwise kernels over a flat f32 buffer of n elements (see shaders/elementwise.wgsl).
//   add, mul: out[i] = a[i] op b[i % nb];  scale: alpha * a[i];  silu; gelu_tanh; gelu_erf.
// Launch: 256 threads per block, one element per thread, 1-D grid. Params: n, nb, alpha.
// Reads every input element once.

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
