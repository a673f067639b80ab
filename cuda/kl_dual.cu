// Fused dual-pass KL (see shaders/kl_dual.wgsl): per row, from the clean and blind logits in
// one streaming pass, both log-probs of the sampled token, the exact KL(p_clean || p_blind)
// and the k3 estimate. One block of 256 threads per row; online (max, sum, t) per thread,
// merged by a shared-memory tree; each logit is read once. Params: rows, v, inv_t, dclamp.

extern "C" __global__ void kl_dual(const float* clean, const float* blind, float* logp_clean, const unsigned int* tokens,
                                   float* logp_blind, float* kl, float* k3, const Params p) {
    __shared__ float sma[256], ssa[256], sta[256], smb[256], ssb[256];
    unsigned int row = blockIdx.x, v = p.w[1], lid = threadIdx.x;
    if (row >= p.w[0]) return;
    float inv_t = pf(p, 2), dclamp = pf(p, 3);
    const float* ca = clean + (size_t)row * v;
    const float* cb = blind + (size_t)row * v;
    float ma = FLT_LOWEST, sa = 0.0f, ta = 0.0f, mb = FLT_LOWEST, sb = 0.0f;
    for (unsigned int c = lid; c < v; c += 256) {
        float a = ca[c] * inv_t, b = cb[c] * inv_t;
        if (a > ma) { float r = expf(ma - a); sa = sa * r + 1.0f; ta = ta * r + (a - b); ma = a; }
        else { float e = expf(a - ma); sa += e; ta += e * (a - b); }
        if (b > mb) { sb = sb * expf(mb - b) + 1.0f; mb = b; } else { sb += expf(b - mb); }
    }
    sma[lid] = ma; ssa[lid] = sa; sta[lid] = ta; smb[lid] = mb; ssb[lid] = sb;
    __syncthreads();
    for (unsigned int k = 128; k > 0; k >>= 1) {
        if (lid < k) {
            float m2 = fmaxf(sma[lid], sma[lid + k]);
            float r1 = expf(sma[lid] - m2), r2 = expf(sma[lid + k] - m2);
            ssa[lid] = ssa[lid] * r1 + ssa[lid + k] * r2;
            sta[lid] = sta[lid] * r1 + sta[lid + k] * r2;
            sma[lid] = m2;
            float n2 = fmaxf(smb[lid], smb[lid + k]);
            ssb[lid] = ssb[lid] * expf(smb[lid] - n2) + ssb[lid + k] * expf(smb[lid + k] - n2);
            smb[lid] = n2;
        }
        __syncthreads();
    }
    if (lid == 0) {
        float lse_a = sma[0] + logf(ssa[0]), lse_b = smb[0] + logf(ssb[0]);
        unsigned int t = tokens[row];
        float lc = ca[t] * inv_t - lse_a, lb = cb[t] * inv_t - lse_b;
        logp_clean[row] = lc;
        logp_blind[row] = lb;
        kl[row] = fmaxf(sta[0] / ssa[0] - lse_a + lse_b, 0.0f);
        float d = fminf(fmaxf(lb - lc, -dclamp), dclamp);
        k3[row] = expf(d) - 1.0f - d;
    }
}
