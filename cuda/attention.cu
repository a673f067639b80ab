// Fused (flash-style) attention and its backward, head_dim <= 128 (see shaders/attention.wgsl
// for the masking rules and the algorithm). The forward stores only o and lse, so memory is
// O(T * D); the backward recomputes p from lse and uses no atomics.
//
// Every row (a query row in the forward and dq, a key row in dkv) belongs to a group of LANES
// threads; lane l holds the row's elements l, l + LANES, ... in registers: P of them, a
// compile-time count (the kernels are instantiated for head sizes up to 32, 64, 80 and 128,
// suffixes _d32 ... _d128), so every loop over a row unrolls and no row array falls back to
// local memory (ptxas -v: 0 bytes stack frame). ROWS rows per block (256 threads); tiles of
// BC key/value (or query/dO) rows are staged in shared memory, read once per block, columns
// past the head size zeroed. A tile's dot products are summed over the lanes once per tile
// through shared memory, in lane order, so every lane of a row holds the same bits.
// attention_delta keeps one thread per row.
// Params: b, hq, hkv, tq, tk, d, causal, scale, has_seg, neg_inf, rows.

#define BR 64
#define LANES 8
#define ROWS 32
#define THREADS (ROWS * LANES)
#define BC 16
#define HIDDEN 0x80000000u
#define SEG 0x7fffffffu

struct Attn {
    unsigned int b, hq, hkv, tq, tk, d, causal, has_seg, rows;
    float scale, neg_inf;
};

__device__ __forceinline__ Attn unpack(const Params& p) {
    Attn a;
    a.b = p.w[0]; a.hq = p.w[1]; a.hkv = p.w[2]; a.tq = p.w[3]; a.tk = p.w[4]; a.d = p.w[5];
    a.causal = p.w[6]; a.scale = pf(p, 7); a.has_seg = p.w[8]; a.neg_inf = pf(p, 9); a.rows = p.w[10];
    return a;
}

__device__ __forceinline__ bool visible(const Attn& a, unsigned int i, unsigned int j, unsigned int qinfo, unsigned int kinfo) {
    if (kinfo & HIDDEN) return false;
    if (a.causal && j + a.tq > i + a.tk) return false;
    if (a.has_seg && (qinfo & SEG) != (kinfo & SEG)) return false;
    return true;
}

// Last key (exclusive) any query row of the block starting at row0 may see.
__device__ __forceinline__ unsigned int key_end(const Attn& a, unsigned int row0) {
    if (!a.causal) return a.tk;
    unsigned int last = min(row0 + ROWS, a.tq);
    return min(last + a.tk - a.tq, a.tk);
}

// Rows j0 .. j0 + BC of x and y (row stride d, from base) into tiles of W = P * LANES
// columns: zeros past the last row and past column d.
template <int W>
__device__ __forceinline__ void stage(const Attn& a, const float* x, const float* y, size_t base, unsigned int j0, unsigned int n,
                                      float* tx, float* ty) {
    for (unsigned int e = threadIdx.x; e < BC * W; e += THREADS) {
        unsigned int jj = e / W, c = e % W, j = j0 + jj;
        bool in = j < n && c < a.d;
        tx[e] = in ? x[base + (size_t)j * a.d + c] : 0.0f;
        ty[e] = in ? y[base + (size_t)j * a.d + c] : 0.0f;
    }
}

// Each row's BC dot products, from every lane's partial sums: summed in lane order, the
// same bits in every lane. Two barriers: the partials are written, then read before the
// buffer is used again.
__device__ __forceinline__ void lane_sums(float* part, float* red) {
    unsigned int row = threadIdx.x / LANES, lane = threadIdx.x % LANES;
#pragma unroll
    for (int jj = 0; jj < BC; jj++) red[(row * BC + jj) * LANES + lane] = part[jj];
    __syncthreads();
#pragma unroll
    for (int jj = 0; jj < BC; jj++) {
        float s = 0.0f;
#pragma unroll
        for (int l = 0; l < LANES; l++) s += red[(row * BC + jj) * LANES + l];
        part[jj] = s;
    }
    __syncthreads();
}

// The row's elements held by this lane: c = lane + LANES * t for t < P, zero past d.
template <int P>
__device__ __forceinline__ void load_row(const Attn& a, const float* x, size_t base, bool live, float scale, float* r) {
    unsigned int lane = threadIdx.x % LANES;
#pragma unroll
    for (int t = 0; t < P; t++) {
        unsigned int c = lane + LANES * t;
        r[t] = live && c < a.d ? x[base + c] * scale : 0.0f;
    }
}

template <int P>
__device__ __forceinline__ void store_row(const Attn& a, float* x, size_t base, bool live, float scale, const float* r) {
    unsigned int lane = threadIdx.x % LANES;
#pragma unroll
    for (int t = 0; t < P; t++) {
        unsigned int c = lane + LANES * t;
        if (live && c < a.d) x[base + c] = r[t] * scale;
    }
}

// part[jj] = this lane's share of row . tile[jj].
template <int P>
__device__ __forceinline__ void partial_dots(const float* r, const float* tile, float* part) {
    unsigned int lane = threadIdx.x % LANES;
#pragma unroll
    for (int jj = 0; jj < BC; jj++) {
        float s = 0.0f;
#pragma unroll
        for (int t = 0; t < P; t++) s += r[t] * tile[jj * P * LANES + lane + LANES * t];
        part[jj] = s;
    }
}

template <int P>
__device__ void forward_rows(const float* q, const float* k, float* o, const float* v, float* lse, const unsigned int* keyinfo,
                             const Params& p) {
    __shared__ float ta[BC * P * LANES];
    __shared__ float tb[BC * P * LANES];
    __shared__ float red[ROWS * BC * LANES];
    __shared__ unsigned int tinfo[BC];
    const Attn a = unpack(p);
    unsigned int b = blockIdx.z, h = blockIdx.y, row0 = blockIdx.x * ROWS, i = row0 + threadIdx.x / LANES;
    bool live = i < a.tq;
    size_t qrow = ((size_t)(b * a.hq + h) * a.tq + i) * a.d;
    size_t kbase = (size_t)(b * a.hkv + h / (a.hq / a.hkv)) * a.tk * a.d;
    float qr[P], acc[P];
    load_row<P>(a, q, qrow, live, a.scale, qr);
#pragma unroll
    for (int t = 0; t < P; t++) acc[t] = 0.0f;
    unsigned int qinfo = live && a.has_seg ? keyinfo[b * a.tk + i] : 0u;
    float mx = FLT_LOWEST, sum = 0.0f;
    unsigned int kend = key_end(a, row0);
    for (unsigned int j0 = 0; j0 < kend; j0 += BC) {
        stage<P * LANES>(a, k, v, kbase, j0, a.tk, ta, tb);
        if (threadIdx.x < BC) {
            unsigned int j = j0 + threadIdx.x;
            tinfo[threadIdx.x] = j < a.tk ? keyinfo[b * a.tk + j] : HIDDEN;
        }
        __syncthreads();
        float sc[BC];
        partial_dots<P>(qr, ta, sc);
        lane_sums(sc, red);
        if (live) {
            float bmax = FLT_LOWEST;
            // A NaN score is kept (it makes the row NaN, as in PyTorch), not taken for masked.
            bool any = false;
#pragma unroll
            for (int jj = 0; jj < BC; jj++) {
                if (!visible(a, i, j0 + jj, qinfo, tinfo[jj])) sc[jj] = FLT_LOWEST;
                bmax = fmaxf(bmax, sc[jj]);
                any = any || sc[jj] > FLT_LOWEST || is_nan(sc[jj]);
            }
            if (any) {
                float nm = fmaxf(mx, bmax), corr = expf(mx - nm);
                sum *= corr;
#pragma unroll
                for (int t = 0; t < P; t++) acc[t] *= corr;
                unsigned int lane = threadIdx.x % LANES;
#pragma unroll
                for (int jj = 0; jj < BC; jj++) {
                    if (sc[jj] > FLT_LOWEST || is_nan(sc[jj])) {
                        float pj = expf(sc[jj] - nm);
                        sum += pj;
#pragma unroll
                        for (int t = 0; t < P; t++) acc[t] += pj * tb[jj * P * LANES + lane + LANES * t];
                    }
                }
                mx = nm;
            }
        }
        __syncthreads();
    }
    // A row that sees no key has sum 0; a NaN sum (NaN or +inf scores) propagates.
    float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    store_row<P>(a, o, qrow, live, inv, acc);
    if (live && threadIdx.x % LANES == 0) lse[(size_t)(b * a.hq + h) * a.tq + i] = sum == 0.0f ? a.neg_inf : mx + logf(sum);
}

extern "C" __global__ void attention_delta(const float* o, float* stats, const float* lse, const float* dout, const Params p) {
    const Attn a = unpack(p);
    size_t r = (size_t)blockIdx.x * BR + threadIdx.x;
    if (r >= a.rows) return;
    float acc = 0.0f;
    for (unsigned int c = 0; c < a.d; c++) acc += o[r * a.d + c] * dout[r * a.d + c];
    stats[2 * r] = lse[r];
    stats[2 * r + 1] = acc;
}

template <int P>
__device__ void backward_dq_rows(const float* q, const float* k, float* dq, const float* v, const unsigned int* keyinfo,
                                 const float* dout, const float* stats, const Params& p) {
    __shared__ float ta[BC * P * LANES];
    __shared__ float tb[BC * P * LANES];
    __shared__ float red[ROWS * BC * LANES];
    __shared__ unsigned int tinfo[BC];
    const Attn a = unpack(p);
    unsigned int b = blockIdx.z, h = blockIdx.y, row0 = blockIdx.x * ROWS, i = row0 + threadIdx.x / LANES;
    size_t r = (size_t)(b * a.hq + h) * a.tq + i, qrow = r * a.d;
    size_t kbase = (size_t)(b * a.hkv + h / (a.hq / a.hkv)) * a.tk * a.d;
    bool in = i < a.tq;
    float l = in ? stats[2 * r] : FLT_LOWEST, delta = in ? stats[2 * r + 1] : 0.0f;
    bool live = in && l > FLT_LOWEST;
    float qr[P], dor[P], acc[P];
    load_row<P>(a, q, qrow, live, 1.0f, qr);
    load_row<P>(a, dout, qrow, live, 1.0f, dor);
#pragma unroll
    for (int t = 0; t < P; t++) acc[t] = 0.0f;
    unsigned int qinfo = in && a.has_seg ? keyinfo[b * a.tk + i] : 0u;
    unsigned int kend = key_end(a, row0);
    for (unsigned int j0 = 0; j0 < kend; j0 += BC) {
        stage<P * LANES>(a, k, v, kbase, j0, a.tk, ta, tb);
        if (threadIdx.x < BC) {
            unsigned int j = j0 + threadIdx.x;
            tinfo[threadIdx.x] = j < a.tk ? keyinfo[b * a.tk + j] : HIDDEN;
        }
        __syncthreads();
        float s[BC], dp[BC];
        partial_dots<P>(qr, ta, s);
        lane_sums(s, red);
        partial_dots<P>(dor, tb, dp);
        lane_sums(dp, red);
        if (live) {
            unsigned int lane = threadIdx.x % LANES;
#pragma unroll
            for (int jj = 0; jj < BC; jj++) {
                if (!visible(a, i, j0 + jj, qinfo, tinfo[jj])) continue;
                float pj = expf(s[jj] * a.scale - l), ds = pj * (dp[jj] - delta) * a.scale;
#pragma unroll
                for (int t = 0; t < P; t++) acc[t] += ds * ta[jj * P * LANES + lane + LANES * t];
            }
        }
        __syncthreads();
    }
    // A row that sees no key gets a zero gradient.
    store_row<P>(a, dq, qrow, in, live ? 1.0f : 0.0f, acc);
}

template <int P>
__device__ void backward_dkv_rows(const float* q, const float* k, float* dk, const float* v, const unsigned int* keyinfo,
                                  const float* dout, const float* stats, float* dv, const Params& p) {
    __shared__ float ta[BC * P * LANES];
    __shared__ float tb[BC * P * LANES];
    __shared__ float red[ROWS * BC * LANES];
    __shared__ unsigned int tinfo[BC];
    __shared__ float tstat[2 * BC];
    const Attn a = unpack(p);
    unsigned int b = blockIdx.z, hk = blockIdx.y, key0 = blockIdx.x * ROWS, j = key0 + threadIdx.x / LANES;
    bool live = j < a.tk;
    size_t krow = ((size_t)(b * a.hkv + hk) * a.tk + j) * a.d;
    float kr[P], vr[P], gk[P], gv[P];
    load_row<P>(a, k, krow, live, 1.0f, kr);
    load_row<P>(a, v, krow, live, 1.0f, vr);
#pragma unroll
    for (int t = 0; t < P; t++) { gk[t] = 0.0f; gv[t] = 0.0f; }
    unsigned int kinfo = live ? keyinfo[b * a.tk + j] : HIDDEN;
    unsigned int first = (a.causal && key0 + a.tq > a.tk) ? key0 + a.tq - a.tk : 0;
    unsigned int group = a.hq / a.hkv, lane = threadIdx.x % LANES;
    for (unsigned int h = hk * group; h < (hk + 1) * group; h++) {
        size_t qbase = (size_t)(b * a.hq + h) * a.tq;
        for (unsigned int i0 = first; i0 < a.tq; i0 += BC) {
            stage<P * LANES>(a, q, dout, qbase * a.d, i0, a.tq, ta, tb);
            if (threadIdx.x < BC) {
                unsigned int i = i0 + threadIdx.x;
                bool in = i < a.tq;
                tinfo[threadIdx.x] = (in && a.has_seg) ? keyinfo[b * a.tk + i] : 0u;
                tstat[2 * threadIdx.x] = in ? stats[2 * (qbase + i)] : FLT_LOWEST;
                tstat[2 * threadIdx.x + 1] = in ? stats[2 * (qbase + i) + 1] : 0.0f;
            }
            __syncthreads();
            float s[BC], dp[BC];
            partial_dots<P>(kr, ta, s);
            lane_sums(s, red);
            partial_dots<P>(vr, tb, dp);
            lane_sums(dp, red);
            if (live) {
#pragma unroll
                for (int ii = 0; ii < BC; ii++) {
                    unsigned int i = i0 + ii;
                    float l = tstat[2 * ii];
                    if (i >= a.tq || !(l > FLT_LOWEST) || !visible(a, i, j, tinfo[ii], kinfo)) continue;
                    float pj = expf(s[ii] * a.scale - l), ds = pj * (dp[ii] - tstat[2 * ii + 1]) * a.scale;
#pragma unroll
                    for (int t = 0; t < P; t++) {
                        gv[t] += pj * tb[ii * P * LANES + lane + LANES * t];
                        gk[t] += ds * ta[ii * P * LANES + lane + LANES * t];
                    }
                }
            }
            __syncthreads();
        }
    }
    store_row<P>(a, dk, krow, live, 1.0f, gk);
    store_row<P>(a, dv, krow, live, 1.0f, gv);
}

extern "C" __global__ void attention_forward_d32(const float* q, const float* k, float* o, const float* v, float* lse,
                                                 const unsigned int* keyinfo, const Params p) {
    forward_rows<4>(q, k, o, v, lse, keyinfo, p);
}
extern "C" __global__ void attention_backward_dq_d32(const float* q, const float* k, float* dq, const float* v,
                                                     const unsigned int* keyinfo, const float* dout, const float* stats,
                                                     const Params p) {
    backward_dq_rows<4>(q, k, dq, v, keyinfo, dout, stats, p);
}
extern "C" __global__ void attention_backward_dkv_d32(const float* q, const float* k, float* dk, const float* v,
                                                      const unsigned int* keyinfo, const float* dout, const float* stats,
                                                      float* dv, const Params p) {
    backward_dkv_rows<4>(q, k, dk, v, keyinfo, dout, stats, dv, p);
}
extern "C" __global__ void attention_forward_d64(const float* q, const float* k, float* o, const float* v, float* lse,
                                                 const unsigned int* keyinfo, const Params p) {
    forward_rows<8>(q, k, o, v, lse, keyinfo, p);
}
extern "C" __global__ void attention_backward_dq_d64(const float* q, const float* k, float* dq, const float* v,
                                                     const unsigned int* keyinfo, const float* dout, const float* stats,
                                                     const Params p) {
    backward_dq_rows<8>(q, k, dq, v, keyinfo, dout, stats, p);
}
extern "C" __global__ void attention_backward_dkv_d64(const float* q, const float* k, float* dk, const float* v,
                                                      const unsigned int* keyinfo, const float* dout, const float* stats,
                                                      float* dv, const Params p) {
    backward_dkv_rows<8>(q, k, dk, v, keyinfo, dout, stats, dv, p);
}
extern "C" __global__ void attention_forward_d80(const float* q, const float* k, float* o, const float* v, float* lse,
                                                 const unsigned int* keyinfo, const Params p) {
    forward_rows<10>(q, k, o, v, lse, keyinfo, p);
}
extern "C" __global__ void attention_backward_dq_d80(const float* q, const float* k, float* dq, const float* v,
                                                     const unsigned int* keyinfo, const float* dout, const float* stats,
                                                     const Params p) {
    backward_dq_rows<10>(q, k, dq, v, keyinfo, dout, stats, p);
}
extern "C" __global__ void attention_backward_dkv_d80(const float* q, const float* k, float* dk, const float* v,
                                                      const unsigned int* keyinfo, const float* dout, const float* stats,
                                                      float* dv, const Params p) {
    backward_dkv_rows<10>(q, k, dk, v, keyinfo, dout, stats, dv, p);
}
extern "C" __global__ void attention_forward_d128(const float* q, const float* k, float* o, const float* v, float* lse,
                                                 const unsigned int* keyinfo, const Params p) {
    forward_rows<16>(q, k, o, v, lse, keyinfo, p);
}
extern "C" __global__ void attention_backward_dq_d128(const float* q, const float* k, float* dq, const float* v,
                                                     const unsigned int* keyinfo, const float* dout, const float* stats,
                                                     const Params p) {
    backward_dq_rows<16>(q, k, dq, v, keyinfo, dout, stats, p);
}
extern "C" __global__ void attention_backward_dkv_d128(const float* q, const float* k, float* dk, const float* v,
                                                      const unsigned int* keyinfo, const float* dout, const float* stats,
                                                      float* dv, const Params p) {
    backward_dkv_rows<16>(q, k, dk, v, keyinfo, dout, stats, dv, p);
}
