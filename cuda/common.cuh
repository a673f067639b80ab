// Prepended by the loader to every kernel file: NVRTC compiles each family alone, without
// include paths. Params mirrors the WGSL uniform block: 16 32-bit words, f32 as raw bits.
struct Params { unsigned int w[16]; };
__device__ __forceinline__ float pf(const Params& p, int i) { return __uint_as_float(p.w[i]); }
#define FLT_LOWEST (-3.402823e38f)

// IEEE classes and cancellation-free forms, the same formulas as shaders/include/numerics.wgsl
// and src/backend/cpu/fastmath.rs.
__device__ __forceinline__ bool is_nan(float x) { return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u; }
__device__ __forceinline__ bool is_finite(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }
__device__ __forceinline__ float nan_f32() { return __uint_as_float(0x7fc00000u); }
__device__ __forceinline__ float neg_inf_f32() { return __uint_as_float(0xff800000u); }
// max that returns NaN when either side is NaN (fmaxf returns the other operand).
__device__ __forceinline__ float max_nan(float a, float b) { return is_nan(a) ? a : (is_nan(b) ? b : fmaxf(a, b)); }
// clamp to [-lim, lim] that keeps a NaN.
__device__ __forceinline__ float clamp_sym(float d, float lim) { return is_nan(d) ? d : fminf(fmaxf(d, -lim), lim); }
// e^d - 1 - d through d^8 for |d| < 0.5: relative error below 5e-8 there.
__device__ __forceinline__ float k3_series(float d) {
    float q = 1.0f / 40320.0f;
    q = q * d + 1.0f / 5040.0f;
    q = q * d + 1.0f / 720.0f;
    q = q * d + 1.0f / 120.0f;
    q = q * d + 1.0f / 24.0f;
    q = q * d + 1.0f / 6.0f;
    q = q * d + 0.5f;
    return d * d * q;
}
// k3(d) = e^d - 1 - d without cancellation: the series for |d| < 0.5, the direct form elsewhere.
__device__ __forceinline__ float k3(float d) { return fabsf(d) < 0.5f ? k3_series(d) : expf(d) - 1.0f - d; }
__device__ __forceinline__ float expm1_acc(float d) { return fabsf(d) < 0.5f ? d + k3_series(d) : expf(d) - 1.0f; }
// log(1 + x) - x: with s = x / (2 + x), -x^2 / (2 + x) + 2 (s^3/3 + s^5/5 + ...) for |x| < 0.25.
__device__ __forceinline__ float log1p_minus_x(float x) {
    if (fabsf(x) < 0.25f) {
        float s = x / (2.0f + x), s2 = s * s;
        float tail = ((s2 * (1.0f / 9.0f) + 1.0f / 7.0f) * s2 + 1.0f / 5.0f) * s2 + 1.0f / 3.0f;
        return -x * x / (2.0f + x) + 2.0f * s * s2 * tail;
    }
    return logf(1.0f + x) - x;
}

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

// Half-precision storage (see tensor::Storage and shaders/include/half.wgsl): bf16 or f16
// bit patterns, read through an unsigned short pointer and widened exactly. Written as bit
// operations rather than __nv_bfloat16/__half so NVRTC needs no cuda_fp16.h/cuda_bf16.h and
// the CPU emulation compiles the same code. dtype codes: 0 f32, 1 bf16, 2 f16.
__device__ __forceinline__ float bf16_to_f32(unsigned short h) { return __uint_as_float(((unsigned int)h) << 16); }
__device__ __forceinline__ float f16_to_f32(unsigned short h) {
    unsigned int sign = ((unsigned int)h & 0x8000u) << 16, exp = ((unsigned int)h >> 10) & 0x1fu, man = (unsigned int)h & 0x3ffu;
    if (exp == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (man << 13));  // inf, nan (payload kept)
    if (exp != 0u) return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
    // zero or subnormal: man x 2^-24, exact in f32
    float v = (float)man * 5.9604644775390625e-8f;
    return sign ? -v : v;
}
// Element i of a buffer holding f32 values (dtype 0) or half bit patterns.
__device__ __forceinline__ float load_any(const float* buf, size_t i, unsigned int dtype) {
    if (dtype == 0u) return buf[i];
    unsigned short h = ((const unsigned short*)buf)[i];
    return dtype == 1u ? bf16_to_f32(h) : f16_to_f32(h);
}
