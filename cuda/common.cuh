// Prepended by the loader to every kernel file: NVRTC compiles each family alone, without
// include paths. Params mirrors the WGSL uniform block: 16 32-bit words, f32 as raw bits.
struct Params { unsigned int w[16]; };
__device__ __forceinline__ float pf(const Params& p, int i) { return __uint_as_float(p.w[i]); }
#define FLT_LOWEST (-3.402823e38f)
