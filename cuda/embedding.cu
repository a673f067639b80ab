// Embedding lookup and its deterministic, atomic-free backward (see shaders/embedding.wgsl).
//   gather:      out[r, d] = table[ids[r], d]; 256 threads per block over N*D elements.
//   scatter_add: dtable[v, d] = sum_{k in offsets[v]..offsets[v+1]} dout[order[k], d];
//                one block per vocabulary row, threads striding over D; untouched rows get 0.
// Params: n, d, v, (fold width), table dtype (0 f32; 1 bf16, 2 f16 bit patterns, see common.cuh).

extern "C" __global__ void gather(const float* table, const unsigned int* ids, float* out, const Params p) {
    unsigned int n = p.w[0], d = p.w[1];
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n * d) return;
    size_t r = i / d, c = i % d;
    out[i] = load_any(table, (size_t)ids[r] * d + c, p.w[4]);
}

extern "C" __global__ void scatter_add(const float* dout, const unsigned int* order, float* out,
                                       const unsigned int* offsets, const Params p) {
    unsigned int d = p.w[1], v = blockIdx.x;
    if (v >= p.w[2]) return;
    unsigned int start = offsets[v], end = offsets[v + 1];
    for (unsigned int c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = 0.0f;
        for (unsigned int k = start; k < end; k++) acc += dout[(size_t)order[k] * d + c];
        out[(size_t)v * d + c] = acc;
    }
}
