// Batched matmul with transpose flags (see shaders/matmul.wgsl): C[b] = op(A[b]) · op(B[b]).
// Launch: grid (ceil(N/64), ceil(M/64), batch), 256 threads. Each block stages a 64x16 tile
// of A and a 16x64 tile of B in shared memory (8 KiB) per step of 16 along K; each thread
// accumulates a 4x4 block of C (rows ty + 16i, cols tx + 16j) in registers. Tile loads follow
// each operand's memory order to coalesce. Params: m, n, k, a_stride, b_stride, trans_a, trans_b,
// accumulate (C += the product instead of C = it), a_dtype, b_dtype (0 f32; 1 bf16 and 2 f16,
// read as bit patterns and widened exactly as the tile is staged, see common.cuh).

extern "C" __global__ void matmul(const float* a, const float* b, float* c, const Params p) {
    __shared__ float As[16 * 64];
    __shared__ float Bs[16 * 64];
    const unsigned int M = p.w[0], N = p.w[1], K = p.w[2];
    const bool ta = p.w[5] != 0, tb = p.w[6] != 0, acc_c = p.w[7] != 0;
    const unsigned int row0 = blockIdx.y * 64, col0 = blockIdx.x * 64;
    const unsigned int a_dt = p.w[8], b_dt = p.w[9];
    const size_t a_off = (size_t)blockIdx.z * p.w[3], b_off = (size_t)blockIdx.z * p.w[4];
    const unsigned int lid = threadIdx.x, tx = lid % 16, ty = lid / 16;
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; i++) acc[i] = 0.0f;

    for (unsigned int t = 0; t < K; t += 16) {
#pragma unroll
        for (unsigned int l = 0; l < 4; l++) {
            unsigned int e = lid + l * 256;
            unsigned int mm = ta ? e % 64 : e / 16, kk = ta ? e / 64 : e % 16;
            unsigned int gm = row0 + mm, gk = t + kk;
            float va = 0.0f;
            if (gm < M && gk < K) va = load_any(a, a_off + (ta ? (size_t)gk * M + gm : (size_t)gm * K + gk), a_dt);
            As[kk * 64 + mm] = va;
            unsigned int nn = tb ? e / 16 : e % 64, kb = tb ? e % 16 : e / 64;
            unsigned int gn = col0 + nn, gkb = t + kb;
            float vb = 0.0f;
            if (gn < N && gkb < K) vb = load_any(b, b_off + (tb ? (size_t)gn * K + gkb : (size_t)gkb * N + gn), b_dt);
            Bs[kb * 64 + nn] = vb;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < 16; kk++) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) av[i] = As[kk * 64 + ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) bv[j] = Bs[kk * 64 + tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i * 4 + j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    float* C = c + (size_t)blockIdx.z * M * N;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        unsigned int r = row0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            unsigned int col = col0 + tx + 16 * j;
            if (r < M && col < N) C[(size_t)r * N + col] = (acc_c ? C[(size_t)r * N + col] : 0.0f) + acc[i * 4 + j];
        }
    }
}
