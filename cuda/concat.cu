// Block copy along one axis, behind concat and slice (see shaders/concat.wgsl):
//   dst[o, dst_off + j, r] = src[o, src_off + j, r]. Params: n, len, inner, src_dim, src_off,
//   dst_dim, dst_off. Launch: 256 threads per block over outer*len*inner elements.

extern "C" __global__ void copy_block(const float* src, float* dst, const Params p) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.w[0]) return;
    unsigned int len = p.w[1], inner = p.w[2];
    unsigned int r = i % inner, j = (i / inner) % len, o = i / (inner * len);
    dst[((size_t)o * p.w[5] + p.w[6] + j) * inner + r] = src[((size_t)o * p.w[3] + p.w[4] + j) * inner + r];
}
