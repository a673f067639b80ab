// Permuted copy over up to 6 axes (see shaders/permute.wgsl).
//   out[i] = x[sum_k idx_k(i) * src_stride[k]]. Params: n, _, d0..d5 (output shape), s0..s5.
// Launch: 256 threads per block over the output elements.

extern "C" __global__ void permute(const float* x, float* out, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    unsigned int rem = i, src = 0;
#pragma unroll
    for (int k = 5; k >= 1; k--) {
        src += (rem % p.w[2 + k]) * p.w[8 + k];
        rem /= p.w[2 + k];
    }
    src += rem * p.w[8];
    out[i] = x[src];
}
