// Fused dual-pass KL (see shaders/kl_dual.wgsl for the math): per row, from the clean and
// blind logits in one streaming pass, both log-probs of the sampled token, the exact
// KL(p_clean || p_blind) in the cancellation-free shifted form (u = b - a - c, c = b_t - a_t;
// KL = kappa + log1p_minus_x(mu + kappa), or the lse form where its rounding error is the
// smaller) and k3.
// One block of 256 threads per row; online (max_a, sum_a, t_a, max_b, sum_b, r, k) per
// thread, merged by a shared-memory tree; each logit is read once. Params: rows, v, inv_t, dclamp.

__device__ __forceinline__ void kl_merge(float* sma, float* ssa, float* sta, float* smb, float* ssb, float* smr, float* ssk,
                                         unsigned int i, unsigned int j) {
    float m2 = fmaxf(sma[i], sma[j]);
    float r1 = expf(sma[i] - m2), r2 = expf(sma[j] - m2);
    ssa[i] = ssa[i] * r1 + ssa[j] * r2;
    sta[i] = sta[i] * r1 + sta[j] * r2;
    sma[i] = m2;
    float n2 = fmaxf(smb[i], smb[j]);
    ssb[i] = ssb[i] * expf(smb[i] - n2) + ssb[j] * expf(smb[j] - n2);
    smb[i] = n2;
    float q2 = fmaxf(smr[i], smr[j]);
    ssk[i] = ssk[i] * expf(smr[i] - q2) + ssk[j] * expf(smr[j] - q2);
    smr[i] = q2;
}

extern "C" __global__ void kl_dual(const float* clean, const float* blind, float* logp_clean, const unsigned int* tokens,
                                   float* logp_blind, float* kl, float* k3_out, const Params p) {
    __shared__ float sma[256], ssa[256], sta[256], smb[256], ssb[256], smr[256], ssk[256];
    unsigned int row = blockIdx.x, v = p.w[1], lid = threadIdx.x;
    if (row >= p.w[0]) return;
    float inv_t = pf(p, 2), dclamp = pf(p, 3);
    const float* ca = clean + (size_t)row * v;
    const float* cb = blind + (size_t)row * v;
    unsigned int t = tokens[row];
    float at = ca[t] * inv_t, bt = cb[t] * inv_t;
    float c = is_finite(bt - at) ? bt - at : 0.0f;
    float ma = FLT_LOWEST, sa = 0.0f, ta = 0.0f, mb = FLT_LOWEST, sb = 0.0f, r = FLT_LOWEST, k = 0.0f, c1 = 0.0f, c2 = 0.0f;
    for (unsigned int i = lid; i < v; i += 256) {
        float a = ca[i] * inv_t, b = cb[i] * inv_t;
        if (a > ma || b > mb) {
            // A maximum moved: rescale the sums and refresh c1 = e^(ma - r), c2 = e^(mb - c - r).
            float na = fmaxf(ma, a), nb = fmaxf(mb, b);
            float nr = fmaxf(r, fmaxf(na, nb - c));
            float fa = expf(ma - na);
            sa *= fa;
            ta *= fa;
            sb *= expf(mb - nb);
            k *= expf(r - nr);
            ma = na;
            mb = nb;
            r = nr;
            c1 = expf(ma - r);
            c2 = expf(mb - c - r);
        }
        float ea = expf(a - ma), eb = expf(b - mb);
        float u = b - a - c;
        // Where p is 0 (a = -inf) u is infinite and weighs nothing in the mean.
        float ue = ea == 0.0f ? 0.0f : u;
        sa += ea;
        ta += ea * ue;
        sb += eb;
        if (fabsf(u) < 0.5f) k += ea * c1 * k3_series(u); else k += eb * c2 - ea * c1 * (1.0f + ue);
    }
    sma[lid] = ma; ssa[lid] = sa; sta[lid] = ta; smb[lid] = mb; ssb[lid] = sb; smr[lid] = r; ssk[lid] = k;
    __syncthreads();
    for (unsigned int s = 128; s > 0; s >>= 1) {
        if (lid < s) kl_merge(sma, ssa, sta, smb, ssb, smr, ssk, lid, lid + s);
        __syncthreads();
    }
    if (lid == 0) {
        float lse_a = sma[0] + logf(ssa[0]), lse_b = smb[0] + logf(ssb[0]);
        float lc = at - lse_a, lb = bt - lse_b;
        logp_clean[row] = lc;
        logp_blind[row] = lb;
        float mu = sta[0] / ssa[0];
        float kappa = ssk[0] * expf(smr[0] - sma[0]) / ssa[0];
        float x = mu + kappa;
        float shifted = kappa + log1p_minus_x(x);
        // The form with the smaller rounding error (in units of epsilon).
        float err_shifted = (kappa + fabsf(mu)) * (1.0f + 1.0f / (1.0f + x));
        float err_lse = fabsf(lse_a) + fabsf(lse_b) + fabsf(c) + fabsf(mu);
        bool use_shifted = is_finite(shifted) && 1.0f + x > 0.0f && err_shifted < err_lse;
        float d_kl = use_shifted ? shifted : lse_b - lse_a - c - mu;
        kl[row] = d_kl < 0.0f ? 0.0f : d_kl;
        k3_out[row] = k3(clamp_sym(lb - lc, dclamp));
    }
}
