// Fused clipped policy loss with its backward (see shaders/policy_loss.wgsl for the math).
// One block of 256 threads per token row: an online (max, sum exp, sum exp z) pass merged by
// a shared-memory tree, the token's loss and gradient coefficient by thread 0, then a pass
// writing dlogits. Params: rows, v, inv_t, clip_low, clip_high, dual_clip, kl_coef.
// Non-finite inputs and the cancellation-free KL term as in the WGSL file.

extern "C" __global__ void policy_loss(const float* logits, const unsigned int* tokens, float* dlogits,
                                       const float* tok_in, float* tok_out, const Params p) {
    __shared__ float pm[256], ps[256], pt[256];
    __shared__ float coef, lse_shared;
    unsigned int row = blockIdx.x, v = p.w[1], lid = threadIdx.x;
    if (row >= p.w[0]) return;
    float inv_t = pf(p, 2), clip_low = pf(p, 3), clip_high = pf(p, 4), dual = pf(p, 5), kl_coef = pf(p, 6);
    const float* xr = logits + (size_t)row * v;
    float* dr = dlogits + (size_t)row * v;
    float m = FLT_LOWEST, s = 0.0f, te = 0.0f;
    for (unsigned int c = lid; c < v; c += 256) {
        float z = xr[c] * inv_t;
        if (z > m) { float r = expf(m - z); s = s * r + 1.0f; te = te * r + z; m = z; }
        else { float e = expf(z - m); s += e; te += e == 0.0f ? 0.0f : e * z; }
    }
    pm[lid] = m; ps[lid] = s; pt[lid] = te;
    __syncthreads();
    for (unsigned int k = 128; k > 0; k >>= 1) {
        if (lid < k) {
            float m2 = fmaxf(pm[lid], pm[lid + k]);
            float r1 = expf(pm[lid] - m2), r2 = expf(pm[lid + k] - m2);
            ps[lid] = ps[lid] * r1 + ps[lid + k] * r2;
            pt[lid] = pt[lid] * r1 + pt[lid + k] * r2;
            pm[lid] = m2;
        }
        __syncthreads();
    }
    unsigned int t = tokens[row];
    if (lid == 0) {
        float lse = pm[0] + logf(ps[0]);
        float logp = xr[t] * inv_t - lse;
        const float* x = tok_in + 4 * (size_t)row;
        float old = x[0], adv = x[1], weight = x[2], refp = x[3];
        float ratio = expf(logp - old);
        float pg1 = -adv * ratio, pg2 = -adv * fminf(fmaxf(ratio, 1.0f - clip_low), 1.0f + clip_high);
        float loss = pg2, grad = 0.0f;
        if (pg1 >= pg2) { loss = pg1; grad = -adv * ratio; }
        if (dual > 0.0f && adv < 0.0f && -adv * dual < loss) { loss = -adv * dual; grad = 0.0f; }
        if (is_nan(ratio) || is_nan(adv)) { loss = nan_f32(); grad = loss; }
        if (kl_coef > 0.0f) {
            float d = refp - logp;
            loss += kl_coef * k3(d);
            grad -= kl_coef * expm1_acc(d);
        }
        float* o = tok_out + 4 * (size_t)row;
        o[0] = loss; o[1] = logp; o[2] = lse - pt[0] / ps[0]; o[3] = pg2 > pg1 ? 1.0f : 0.0f;
        coef = weight * grad * inv_t;
        lse_shared = lse;
    }
    __syncthreads();
    float g = coef, lse = lse_shared;
    for (unsigned int c = lid; c < v; c += 256) {
        float d = g != 0.0f ? -g * expf(xr[c] * inv_t - lse) : 0.0f;
        dr[c] = (c == t) ? d + g : d;
    }
}
