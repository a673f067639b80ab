// PGPO token weights per response (see shaders/pgpo_weights.wgsl for the definition).
// One block of 256 threads per response; trees for count, min, max and sum(w); the quantile
// threshold by counting ranks (ties broken by index, so one thread writes it). Params: rows, l, tau, beta, eps, variant, floor.

__device__ float tree(float v, float* red, int op) {
    unsigned int lid = threadIdx.x;
    red[lid] = v;
    __syncthreads();
    for (unsigned int s = 128; s > 0; s >>= 1) {
        if (lid < s) red[lid] = op == 0 ? red[lid] + red[lid + s] : op == 1 ? fminf(red[lid], red[lid + s]) : fmaxf(red[lid], red[lid + s]);
        __syncthreads();
    }
    float r = red[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void pgpo_weights(const float* tvd, const float* mask, float* out, const Params p) {
    __shared__ float red[256];
    __shared__ float thr_shared;
    unsigned int row = blockIdx.x, l = p.w[1], lid = threadIdx.x, variant = p.w[5];
    if (row >= p.w[0]) return;
    float tau = pf(p, 2), beta = pf(p, 3), eps = pf(p, 4), floor_w = pf(p, 6);
    size_t base = (size_t)row * l;
    float cnt = 0.0f, lo = 3.402823e38f, hi = -3.402823e38f;
    for (unsigned int c = lid; c < l; c += 256)
        if (mask[base + c] > 0.0f) {
            float st = log1pf(tvd[base + c]);
            cnt += 1.0f; lo = fminf(lo, st); hi = fmaxf(hi, st);
        }
    float n = tree(cnt, red, 0);
    lo = tree(lo, red, 1);
    hi = tree(hi, red, 2);
    float span = hi - lo + eps;
    if (lid == 0) thr_shared = tau;
    __syncthreads();
    if (variant == 1 && n > 0.0f) {
        unsigned int k = min((unsigned int)floorf(n * tau), (unsigned int)n - 1);
        for (unsigned int c = lid; c < l; c += 256) {
            if (mask[base + c] <= 0.0f) continue;
            float ic = (log1pf(tvd[base + c]) - lo) / span;
            // The rank with ties broken by index: exactly one element has rank k, so one thread
            // writes the threshold (tied values are equal, but several writers would race;
            // ThreadSanitizer on the emulation found it).
            unsigned int rank = 0;
            for (unsigned int j = 0; j < l; j++) {
                if (mask[base + j] <= 0.0f) continue;
                float ij = (log1pf(tvd[base + j]) - lo) / span;
                rank += ij < ic || (ij == ic && j < c);
            }
            if (rank == k) thr_shared = ic;
        }
    }
    __syncthreads();
    float thr = thr_shared, wsum = 0.0f;
    for (unsigned int c = lid; c < l; c += 256) {
        float w = 0.0f;
        if (mask[base + c] > 0.0f) {
            float i = (log1pf(tvd[base + c]) - lo) / span;
            if (i < thr) { w = i / (thr + eps); if (variant == 2) w = fmaxf(w, floor_w); }
            else w = 1.0f + beta * (i - thr) / (1.0f - thr + eps);
        }
        out[base + c] = w;
        wsum += w;
    }
    float total = tree(wsum, red, 0);
    for (unsigned int c = lid; c < l; c += 256) {
        if (mask[base + c] <= 0.0f) { out[base + c] = 0.0f; continue; }
        if (total <= 0.0f) out[base + c] = 1.0f;
        else if (variant != 3) out[base + c] = out[base + c] * n / total;
    }
}
