// Fused (flash-style) attention and its backward, head_dim <= 128 (see shaders/attention.wgsl
// for the masking rules and the algorithm). One thread per query row (forward, dq) or key
// row (dkv), 64 threads per block; tiles of 16 key/value (or query/dO) rows are staged in
// shared memory (16 KiB) and read once per block. The forward stores only o and lse, so
// memory is O(T * D); the backward recomputes p from lse and uses no atomics.
// Params: b, hq, hkv, tq, tk, d, causal, scale, has_seg, neg_inf, rows.

#define BR 64
#define BC 16
#define DMAX 128
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

__device__ __forceinline__ unsigned int key_end(const Attn& a, unsigned int row0) {
    if (!a.causal) return a.tk;
    unsigned int last = min(row0 + BR, a.tq);
    return min(last + a.tk - a.tq, a.tk);
}

__device__ void stage_kv(const Attn& a, const float* k, const float* v, const unsigned int* keyinfo, size_t kbase,
                         unsigned int j0, unsigned int b, float* ta, float* tb, unsigned int* tinfo) {
    for (unsigned int e = threadIdx.x; e < BC * a.d; e += BR) {
        unsigned int jj = e / a.d, c = e % a.d, j = j0 + jj;
        bool in = j < a.tk;
        ta[jj * DMAX + c] = in ? k[kbase + (size_t)j * a.d + c] : 0.0f;
        tb[jj * DMAX + c] = in ? v[kbase + (size_t)j * a.d + c] : 0.0f;
    }
    if (threadIdx.x < BC) {
        unsigned int j = j0 + threadIdx.x;
        tinfo[threadIdx.x] = j < a.tk ? keyinfo[b * a.tk + j] : HIDDEN;
    }
}

extern "C" __global__ void attention_forward(const float* q, const float* k, float* o, const float* v, float* lse,
                                             const unsigned int* keyinfo, const Params p) {
    __shared__ float ta[BC * DMAX];
    __shared__ float tb[BC * DMAX];
    __shared__ unsigned int tinfo[BC];
    const Attn a = unpack(p);
    unsigned int b = blockIdx.z, h = blockIdx.y, row0 = blockIdx.x * BR, i = row0 + threadIdx.x;
    bool live = i < a.tq;
    size_t qrow = ((size_t)(b * a.hq + h) * a.tq + i) * a.d;
    size_t kbase = (size_t)(b * a.hkv + h / (a.hq / a.hkv)) * a.tk * a.d;
    float qr[DMAX], acc[DMAX];
    unsigned int qinfo = 0;
    if (live) {
        for (unsigned int c = 0; c < a.d; c++) { qr[c] = q[qrow + c] * a.scale; acc[c] = 0.0f; }
        if (a.has_seg) qinfo = keyinfo[b * a.tk + i];
    }
    float mx = FLT_LOWEST, sum = 0.0f;
    unsigned int kend = key_end(a, row0);
    for (unsigned int j0 = 0; j0 < kend; j0 += BC) {
        stage_kv(a, k, v, keyinfo, kbase, j0, b, ta, tb, tinfo);
        __syncthreads();
        if (live) {
            float sc[BC], bmax = FLT_LOWEST;
            // A NaN score is kept (it makes the row NaN, as in PyTorch), not taken for masked.
            bool any = false;
            for (unsigned int jj = 0; jj < BC; jj++) {
                float s = FLT_LOWEST;
                if (visible(a, i, j0 + jj, qinfo, tinfo[jj])) {
                    s = 0.0f;
                    for (unsigned int c = 0; c < a.d; c++) s += qr[c] * ta[jj * DMAX + c];
                }
                sc[jj] = s;
                bmax = fmaxf(bmax, s);
                any = any || s > FLT_LOWEST || is_nan(s);
            }
            if (any) {
                float nm = fmaxf(mx, bmax), corr = expf(mx - nm);
                sum *= corr;
                for (unsigned int c = 0; c < a.d; c++) acc[c] *= corr;
                for (unsigned int jj = 0; jj < BC; jj++) {
                    if (sc[jj] > FLT_LOWEST || is_nan(sc[jj])) {
                        float pj = expf(sc[jj] - nm);
                        sum += pj;
                        for (unsigned int c = 0; c < a.d; c++) acc[c] += pj * tb[jj * DMAX + c];
                    }
                }
                mx = nm;
            }
        }
        __syncthreads();
    }
    if (live) {
        size_t r = (size_t)(b * a.hq + h) * a.tq + i;
        // A row that sees no key has sum 0; a NaN sum (NaN or +inf scores) propagates.
        float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
        for (unsigned int c = 0; c < a.d; c++) o[qrow + c] = acc[c] * inv;
        lse[r] = sum == 0.0f ? a.neg_inf : mx + logf(sum);
    }
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

extern "C" __global__ void attention_backward_dq(const float* q, const float* k, float* dq, const float* v,
                                                 const unsigned int* keyinfo, const float* dout, const float* stats,
                                                 const Params p) {
    __shared__ float ta[BC * DMAX];
    __shared__ float tb[BC * DMAX];
    __shared__ unsigned int tinfo[BC];
    const Attn a = unpack(p);
    unsigned int b = blockIdx.z, h = blockIdx.y, row0 = blockIdx.x * BR, i = row0 + threadIdx.x;
    size_t r = (size_t)(b * a.hq + h) * a.tq + i, qrow = r * a.d;
    size_t kbase = (size_t)(b * a.hkv + h / (a.hq / a.hkv)) * a.tk * a.d;
    float qr[DMAX], dor[DMAX], acc[DMAX];
    unsigned int qinfo = 0;
    float l = FLT_LOWEST, delta = 0.0f;
    bool live = i < a.tq;
    if (live) {
        l = stats[2 * r];
        delta = stats[2 * r + 1];
        live = l > FLT_LOWEST;
        for (unsigned int c = 0; c < a.d; c++) { qr[c] = q[qrow + c]; dor[c] = dout[qrow + c]; acc[c] = 0.0f; }
        if (a.has_seg) qinfo = keyinfo[b * a.tk + i];
    }
    unsigned int kend = key_end(a, row0);
    for (unsigned int j0 = 0; j0 < kend; j0 += BC) {
        stage_kv(a, k, v, keyinfo, kbase, j0, b, ta, tb, tinfo);
        __syncthreads();
        if (live) {
            for (unsigned int jj = 0; jj < BC; jj++) {
                if (!visible(a, i, j0 + jj, qinfo, tinfo[jj])) continue;
                float s = 0.0f, dp = 0.0f;
                for (unsigned int c = 0; c < a.d; c++) { s += qr[c] * ta[jj * DMAX + c]; dp += dor[c] * tb[jj * DMAX + c]; }
                float pj = expf(s * a.scale - l), ds = pj * (dp - delta) * a.scale;
                for (unsigned int c = 0; c < a.d; c++) acc[c] += ds * ta[jj * DMAX + c];
            }
        }
        __syncthreads();
    }
    if (i < a.tq)
        for (unsigned int c = 0; c < a.d; c++) dq[qrow + c] = live ? acc[c] : 0.0f;
}

extern "C" __global__ void attention_backward_dkv(const float* q, const float* k, float* dk, const float* v,
                                                  const unsigned int* keyinfo, const float* dout, const float* stats,
                                                  float* dv, const Params p) {
    __shared__ float ta[BC * DMAX];
    __shared__ float tb[BC * DMAX];
    __shared__ unsigned int tinfo[BC];
    __shared__ float tstat[2 * BC];
    const Attn a = unpack(p);
    unsigned int b = blockIdx.z, hk = blockIdx.y, key0 = blockIdx.x * BR, j = key0 + threadIdx.x;
    bool live = j < a.tk;
    size_t krow = ((size_t)(b * a.hkv + hk) * a.tk + j) * a.d;
    float kr[DMAX], vr[DMAX], gk[DMAX], gv[DMAX];
    unsigned int kinfo = HIDDEN;
    if (live) {
        for (unsigned int c = 0; c < a.d; c++) { kr[c] = k[krow + c]; vr[c] = v[krow + c]; gk[c] = 0.0f; gv[c] = 0.0f; }
        kinfo = keyinfo[b * a.tk + j];
    }
    unsigned int first = (a.causal && key0 + a.tq > a.tk) ? key0 + a.tq - a.tk : 0;
    unsigned int group = a.hq / a.hkv;
    for (unsigned int h = hk * group; h < (hk + 1) * group; h++) {
        size_t qbase = (size_t)(b * a.hq + h) * a.tq;
        for (unsigned int i0 = first; i0 < a.tq; i0 += BC) {
            for (unsigned int e = threadIdx.x; e < BC * a.d; e += BR) {
                unsigned int ii = e / a.d, c = e % a.d, i = i0 + ii;
                bool in = i < a.tq;
                ta[ii * DMAX + c] = in ? q[(qbase + i) * a.d + c] : 0.0f;
                tb[ii * DMAX + c] = in ? dout[(qbase + i) * a.d + c] : 0.0f;
            }
            if (threadIdx.x < BC) {
                unsigned int i = i0 + threadIdx.x;
                bool in = i < a.tq;
                tinfo[threadIdx.x] = (in && a.has_seg) ? keyinfo[b * a.tk + i] : 0u;
                tstat[2 * threadIdx.x] = in ? stats[2 * (qbase + i)] : FLT_LOWEST;
                tstat[2 * threadIdx.x + 1] = in ? stats[2 * (qbase + i) + 1] : 0.0f;
            }
            __syncthreads();
            if (live) {
                for (unsigned int ii = 0; ii < BC; ii++) {
                    unsigned int i = i0 + ii;
                    float l = tstat[2 * ii];
                    if (i >= a.tq || !(l > FLT_LOWEST) || !visible(a, i, j, tinfo[ii], kinfo)) continue;
                    float s = 0.0f, dp = 0.0f;
                    for (unsigned int c = 0; c < a.d; c++) { s += ta[ii * DMAX + c] * kr[c]; dp += tb[ii * DMAX + c] * vr[c]; }
                    float pj = expf(s * a.scale - l), ds = pj * (dp - tstat[2 * ii + 1]) * a.scale;
                    for (unsigned int c = 0; c < a.d; c++) { gv[c] += pj * tb[ii * DMAX + c]; gk[c] += ds * ta[ii * DMAX + c]; }
                }
            }
            __syncthreads();
        }
    }
    if (live)
        for (unsigned int c = 0; c < a.d; c++) { dk[krow + c] = gk[c]; dv[krow + c] = gv[c]; }
}
