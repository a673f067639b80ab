// Row reductions over the last axis of [rows, cols] (see shaders/reduce.wgsl).
//   row_sum: out[r] = sum_c x[r, c];  row_max: out[r] = max_c x[r, c] (NaN if any is NaN)
// Launch: one block of 256 threads per row; each thread strides over the row, then a
// shared-memory tree combines the partials. Params: rows, cols. Reads each element once.

extern "C" __global__ void row_sum(const float* x, float* out, const Params p) {
    __shared__ float partial[256];
    unsigned int row = blockIdx.x, lid = threadIdx.x, cols = p.w[1];
    if (row >= p.w[0]) return;
    const float* xr = x + (size_t)row * cols;
    float acc = 0.0f;
    for (unsigned int c = lid; c < cols; c += 256) acc += xr[c];
    partial[lid] = acc;
    __syncthreads();
    for (unsigned int s = 128; s > 0; s >>= 1) {
        if (lid < s) partial[lid] += partial[lid + s];
        __syncthreads();
    }
    if (lid == 0) out[row] = partial[0];
}

extern "C" __global__ void row_max(const float* x, float* out, const Params p) {
    __shared__ float partial[256];
    unsigned int row = blockIdx.x, lid = threadIdx.x, cols = p.w[1];
    if (row >= p.w[0]) return;
    const float* xr = x + (size_t)row * cols;
    float acc = neg_inf_f32();
    for (unsigned int c = lid; c < cols; c += 256) acc = max_nan(acc, xr[c]);
    partial[lid] = acc;
    __syncthreads();
    for (unsigned int s = 128; s > 0; s >>= 1) {
        if (lid < s) partial[lid] = max_nan(partial[lid], partial[lid + s]);
        __syncthreads();
    }
    if (lid == 0) out[row] = partial[0];
}
