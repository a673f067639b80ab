// Softmax and log-softmax over the last axis of [rows, cols] (see shaders/softmax.wgsl).
// Launch: one block of 256 threads per row. Pass 1 keeps an online (max, sum) pair per
// thread, merged by a shared-memory tree; pass 2 writes the row. Params: rows, cols.

__device__ float2 row_stats(const float* xr, unsigned int cols, unsigned int lid) {
    __shared__ float pm[256];
    __shared__ float ps[256];
    float m = FLT_LOWEST, s = 0.0f;
    for (unsigned int c = lid; c < cols; c += 256) {
        float v = xr[c];
        if (v > m) { s = s * expf(m - v) + 1.0f; m = v; } else { s += expf(v - m); }
    }
    pm[lid] = m;
    ps[lid] = s;
    __syncthreads();
    for (unsigned int k = 128; k > 0; k >>= 1) {
        if (lid < k) {
            float m2 = fmaxf(pm[lid], pm[lid + k]);
            ps[lid] = ps[lid] * expf(pm[lid] - m2) + ps[lid + k] * expf(pm[lid + k] - m2);
            pm[lid] = m2;
        }
        __syncthreads();
    }
    return make_float2(pm[0], ps[0]);
}

extern "C" __global__ void softmax(const float* x, float* out, const Params p) {
    unsigned int row = blockIdx.x, lid = threadIdx.x, cols = p.w[1];
    if (row >= p.w[0]) return;
    const float* xr = x + (size_t)row * cols;
    float2 st = row_stats(xr, cols, lid);
    float inv = 1.0f / st.y;
    for (unsigned int c = lid; c < cols; c += 256) out[(size_t)row * cols + c] = expf(xr[c] - st.x) * inv;
}

extern "C" __global__ void log_softmax(const float* x, float* out, const Params p) {
    unsigned int row = blockIdx.x, lid = threadIdx.x, cols = p.w[1];
    if (row >= p.w[0]) return;
    const float* xr = x + (size_t)row * cols;
    float2 st = row_stats(xr, cols, lid);
    float lse = st.x + logf(st.y);
    for (unsigned int c = lid; c < cols; c += 256) out[(size_t)row * cols + c] = xr[c] - lse;
}
