// Prepended by the loader to every kernel file: NVRTC compiles each family alone, without
// include paths. Params mirrors the WGSL uniform block: 16 32-bit words, f32 as raw bits.
struct Params { unsigned int w[16]; };
__device__ __forceinline__ float pf(const Params& p, int i) { return __uint_as_float(p.w[i]); }
#define FLT_LOWEST (-3.402823e38f)

// Row statistics (max, sum of exp(x - max)) of xr[0 .. cols] by a block of 256 threads: an
// online pair per thread over strided elements, merged by a shared-memory tree.
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
