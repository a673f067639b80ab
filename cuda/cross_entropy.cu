// Fused cross-entropy over the vocabulary (see shaders/cross_entropy.wgsl).
//   forward: lse = logsumexp(row), loss = lse - row[t]; backward: dlogits = g (softmax - onehot).
// One block of 256 threads per row; a target of 0xffffffff is ignored.
// Params: rows, v, _, dloss_len, scale.

#define IGNORE 0xffffffffu

extern "C" __global__ void cross_entropy_forward(const float* logits, const unsigned int* targets, float* loss,
                                                 float* lse, const Params p) {
    unsigned int row = blockIdx.x, v = p.w[1], lid = threadIdx.x;
    if (row >= p.w[0]) return;
    const float* xr = logits + (size_t)row * v;
    float2 st = row_stats(xr, v, lid);
    if (lid == 0) {
        float l = st.x + logf(st.y);
        lse[row] = l;
        unsigned int t = targets[row];
        loss[row] = t == IGNORE ? 0.0f : l - xr[t];
    }
}

extern "C" __global__ void cross_entropy_backward(const float* logits, const unsigned int* targets, float* dlogits,
                                                  const float* lse, const float* dloss, const Params p) {
    unsigned int row = blockIdx.x, v = p.w[1];
    if (row >= p.w[0]) return;
    size_t base = (size_t)row * v;
    unsigned int t = targets[row];
    if (t == IGNORE) {
        for (unsigned int c = threadIdx.x; c < v; c += 256) dlogits[base + c] = 0.0f;
        return;
    }
    float g = dloss[row % p.w[3]] * pf(p, 4), l = lse[row];
    for (unsigned int c = threadIdx.x; c < v; c += 256) {
        float d = g * expf(logits[base + c] - l);
        dlogits[base + c] = c == t ? d - g : d;
    }
}
