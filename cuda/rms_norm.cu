// RMSNorm with a weight, and its backward (see shaders/rms_norm.wgsl).
//   rms_norm: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps); one block of 256 per row.
//   rms_norm_backward: dx = rstd (w dy - xhat mean(w dy xhat)); one block of 256 per row.
//   rms_norm_dweight_partial: partial[k, c] = sum over rows of chunk k (1024 rows) of dy x rstd;
//     grid (column blocks, chunks), one thread per column.
//   rms_norm_dweight: dw[c] = sum_k partial[k, c]; one thread per column.
// Params: rows, d, eps, (grid width), chunks.

#define CHUNK 1024u

__device__ float block_sum(float v, float* partial) {
    unsigned int lid = threadIdx.x;
    partial[lid] = v;
    __syncthreads();
    for (unsigned int s = 128; s > 0; s >>= 1) {
        if (lid < s) partial[lid] += partial[lid + s];
        __syncthreads();
    }
    float total = partial[0];
    __syncthreads();
    return total;
}

extern "C" __global__ void rms_norm(const float* x, const float* w, float* y, float* rstd, const Params p) {
    __shared__ float partial[256];
    unsigned int row = blockIdx.x, d = p.w[1];
    if (row >= p.w[0]) return;
    const float* xr = x + (size_t)row * d;
    float acc = 0.0f;
    for (unsigned int c = threadIdx.x; c < d; c += 256) acc += xr[c] * xr[c];
    float r = rsqrtf(block_sum(acc, partial) / (float)d + pf(p, 2));
    for (unsigned int c = threadIdx.x; c < d; c += 256) y[(size_t)row * d + c] = xr[c] * r * w[c];
    if (threadIdx.x == 0) rstd[row] = r;
}

extern "C" __global__ void rms_norm_backward(const float* x, const float* w, float* dx, const float* rstd,
                                             const float* dy, const Params p) {
    __shared__ float partial[256];
    unsigned int row = blockIdx.x, d = p.w[1];
    if (row >= p.w[0]) return;
    size_t base = (size_t)row * d;
    float r = rstd[row], acc = 0.0f;
    for (unsigned int c = threadIdx.x; c < d; c += 256) acc += w[c] * dy[base + c] * x[base + c] * r;
    float dot = block_sum(acc, partial) / (float)d;
    for (unsigned int c = threadIdx.x; c < d; c += 256) dx[base + c] = r * (w[c] * dy[base + c] - x[base + c] * r * dot);
}

extern "C" __global__ void rms_norm_dweight_partial(const float* x, float* partial, const float* rstd, const float* dy,
                                                    const Params p) {
    unsigned int c = blockIdx.x * blockDim.x + threadIdx.x, rows = p.w[0], d = p.w[1];
    if (c >= d) return;
    unsigned int r0 = blockIdx.y * CHUNK, r1 = min(rows, r0 + CHUNK);
    float acc = 0.0f;
    for (unsigned int r = r0; r < r1; r++) acc += dy[(size_t)r * d + c] * x[(size_t)r * d + c] * rstd[r];
    partial[(size_t)blockIdx.y * d + c] = acc;
}

extern "C" __global__ void rms_norm_dweight(float* dw, const float* partials, const Params p) {
    unsigned int c = blockIdx.x * blockDim.x + threadIdx.x, d = p.w[1], chunks = p.w[4];
    if (c >= d) return;
    float acc = 0.0f;
    for (unsigned int k = 0; k < chunks; k++) acc += partials[(size_t)k * d + c];
    dw[c] = acc;
}
