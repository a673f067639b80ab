// Softmax and log-softmax over the last axis of [rows, cols] (see shaders/softmax.wgsl).
// Launch: one block of 256 threads per row. Pass 1 keeps an online (max, sum) pair per
// thread, merged by a shared-memory tree; pass 2 writes the row. Params: rows, cols.

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
