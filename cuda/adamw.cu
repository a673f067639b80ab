// Fused AdamW step and partial sums of squares (see shaders/adamw.wgsl).
// Params: n, _, lr, beta1, beta2, eps, wd, bias1, bias2, grad_scale, block.
// adamw: 256 threads per block, one element each. sum_squares: one block of 256 per block
// of `block` elements, shared-memory tree.

extern "C" __global__ void adamw(const float* x, const float* grad, float* out, const float* m, const float* v,
                                 float* m_out, float* v_out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    float lr = pf(p, 2), b1 = pf(p, 3), b2 = pf(p, 4), eps = pf(p, 5), wd = pf(p, 6);
    float g = grad[i] * pf(p, 9);
    float m2 = b1 * m[i] + (1.0f - b1) * g;
    float v2 = b2 * v[i] + (1.0f - b2) * g * g;
    m_out[i] = m2;
    v_out[i] = v2;
    out[i] = x[i] - lr * (wd * x[i] + (m2 / pf(p, 7)) / (sqrtf(v2 / pf(p, 8)) + eps));
}

extern "C" __global__ void sum_squares(const float* x, float* out, const Params p) {
    __shared__ float partial[256];
    unsigned int n = p.w[0], block = p.w[10], k = blockIdx.x, lid = threadIdx.x;
    size_t start = (size_t)k * block;
    if (start >= n) return;
    size_t end = start + block < n ? start + block : n;
    float acc = 0.0f;
    for (size_t i = start + lid; i < end; i += 256) acc += x[i] * x[i];
    partial[lid] = acc;
    __syncthreads();
    for (unsigned int s = 128; s > 0; s >>= 1) {
        if (lid < s) partial[lid] += partial[lid + s];
        __syncthreads();
    }
    if (lid == 0) out[k] = partial[0];
}
