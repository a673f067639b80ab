// Batched matmul with transpose flags: C[b] = op(A[b]) · op(B[b]), op = identity or transpose.
//   A is [M, K] (or [K, M] when TRANS_A), B is [K, N] (or [N, K] when TRANS_B), C is [M, N].
//   a_stride / b_stride are the per-batch element strides; 0 broadcasts one matrix over the batch.
// Launch: workgroups (ceil(N/64), ceil(M/64), batch), 256 threads each. Every workgroup stages
// a 64x16 tile of A and a 16x64 tile of B in workgroup memory (8 KiB) per step of 16 along K,
// and each thread accumulates a 4x4 block of C in registers (rows ty + 16i, cols tx + 16j),
// so each A and B element is read from global memory N/64 and M/64 times instead of N and M.
// Tile loads follow the memory order of each operand (K-fastest or M/N-fastest) to coalesce.
// The transpose flags are specialization constants: one pipeline per (TRANS_A, TRANS_B).
// With p.accumulate != 0 the product is added to C (C += op(A) · op(B)): the fused-linear
// loss sums the LM head's gradient over row chunks without a second [V, H] buffer.
// A and B are bound as words and read in their dtype (A_DTYPE, B_DTYPE: f32, or bf16/f16 packed
// two to a word, see include/half.wgsl), widened to f32 as the tile is staged: a bf16 weight
// moves half the bytes, and the products and sums stay f32.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override A_DTYPE: u32 = 0u;
override B_DTYPE: u32 = 0u;

struct Params { m: u32, n: u32, k: u32, a_stride: u32, b_stride: u32, pad0: u32, pad1: u32, accumulate: u32 }

@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// #include "half.wgsl"

fn load_a(i: u32) -> f32 {
    if (A_DTYPE == 0u) { return bitcast<f32>(a[i]); }
    return widen_half(a[i >> 1u], (i & 1u) == 1u, A_DTYPE);
}

fn load_b(i: u32) -> f32 {
    if (B_DTYPE == 0u) { return bitcast<f32>(b[i]); }
    return widen_half(b[i >> 1u], (i & 1u) == 1u, B_DTYPE);
}

var<workgroup> As: array<f32, 1024>; // [16 k][64 m]
var<workgroup> Bs: array<f32, 1024>; // [16 k][64 n]

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let a_off = wid.z * p.a_stride;
    let b_off = wid.z * p.b_stride;
    let tx = lid % 16u;
    let ty = lid / 16u;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }

    for (var t = 0u; t < p.k; t += 16u) {
        for (var l = 0u; l < 4u; l++) {
            let e = lid + l * 256u;
            // A tile element (mm, kk).
            var mm: u32; var kk: u32;
            if (TRANS_A) { mm = e % 64u; kk = e / 64u; } else { kk = e % 16u; mm = e / 16u; }
            let gm = row0 + mm;
            let gk = t + kk;
            var va = 0.0;
            if (gm < p.m && gk < p.k) {
                if (TRANS_A) { va = load_a(a_off + gk * p.m + gm); } else { va = load_a(a_off + gm * p.k + gk); }
            }
            As[kk * 64u + mm] = va;
            // B tile element (kb, nn).
            var nn: u32; var kb: u32;
            if (TRANS_B) { kb = e % 16u; nn = e / 16u; } else { nn = e % 64u; kb = e / 64u; }
            let gn = col0 + nn;
            let gkb = t + kb;
            var vb = 0.0;
            if (gn < p.n && gkb < p.k) {
                if (TRANS_B) { vb = load_b(b_off + gn * p.k + gkb); } else { vb = load_b(b_off + gkb * p.n + gn); }
            }
            Bs[kb * 64u + nn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) { av[i] = As[kk * 64u + ty + 16u * i]; }
            for (var j = 0u; j < 4u; j++) { bv[j] = Bs[kk * 64u + tx + 16u * j]; }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] += av[i] * bv[j]; }
            }
        }
        workgroupBarrier();
    }

    let c_off = wid.z * p.m * p.n;
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + tx + 16u * j;
            if (r < p.m && col < p.n) {
                let at = c_off + r * p.n + col;
                if (p.accumulate != 0u) { c[at] = c[at] + acc[i * 4u + j]; } else { c[at] = acc[i * 4u + j]; }
            }
        }
    }
}
