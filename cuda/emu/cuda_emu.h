// CPU emulation of the CUDA execution model, for tests only (cargo feature `cuda-emu`).
// Every cuda/*.cu file compiles against this header unchanged, after the same common.cuh
// that NVRTC gets. A launch runs its blocks one after another; the threads of a block are
// real OS threads, so __syncthreads() is a real barrier and a missing one can show up as a
// wrong answer (and as a race under ThreadSanitizer). Because one block runs at a time,
// block-shared storage is static storage. runtime.cpp holds the launch loop.
// What it cannot show: races between blocks (they never overlap), reads of shared memory
// no thread of the block wrote (static storage starts at zero and keeps the previous
// block's values), and the GPU's exact rounding (host libm, no FMA contraction).
#pragma once

#include <math.h>
#include <stddef.h>
#include <string.h>

struct dim3 {
    unsigned int x, y, z;
};

extern thread_local dim3 threadIdx;
extern thread_local dim3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

void pgpo_emu_syncthreads();
#define __syncthreads() pgpo_emu_syncthreads()

struct float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }

inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    memcpy(&u, &f, sizeof u);
    return u;
}
inline float __uint_as_float(unsigned int u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
// One type for both sides, so a mixed call fails to compile instead of converting silently.
template <class T> inline T min(T a, T b) { return a < b ? a : b; }
template <class T> inline T max(T a, T b) { return a > b ? a : b; }
