// Rotary embedding, rotate-half convention (see shaders/rope.wgsl):
//   out = x cos + sign * sin * rotate_half(x); x [B, H, T, D], tables [T, D] or [B, T, D].
// Params: n, t, d, heads, table_len, sign. Launch: 256 threads per block, one element each.

extern "C" __global__ void rope(const float* x, const float* cos_t, float* out, const float* sin_t, const Params p) {
    unsigned int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= p.w[0]) return;
    unsigned int t = p.w[1], d = p.w[2], heads = p.w[3], h2 = d / 2;
    unsigned int i = e % d, row = e / d, ti = row % t, b = row / (t * heads);
    unsigned int tab = (b * t * d + ti * d) % p.w[4] + i;
    float rot = i < h2 ? -x[e + h2] : x[e - h2];
    out[e] = x[e] * cos_t[tab] + rot * pf(p, 5) * sin_t[tab];
}
