//! Lane-parallel online statistics of logit rows, the inner loops of softmax, cross-entropy,
//! kl_dual and policy_loss. Sixteen independent lanes each keep an online (max, sums) over
//! blocks of the row, so the loops vectorise without reassociating a float reduction; the
//! lanes merge at the end as the GPU kernels' trees do.
//!
//! Non-finite inputs follow PyTorch: a NaN anywhere in a row makes its statistics NaN, and so
//! does +inf (inf - inf); -inf entries have probability 0 and add nothing (0 log 0 = 0). The
//! maxima start at f32::MIN rather than -inf so that exp(-inf - max) is 0, never NaN.

use super::fastmath::{dispatch, exp, flush_subnormal, k3_series};

const L: usize = 16;
const BLOCK: usize = 256;

/// (max, sum exp(z - max), sum exp(z - max) z) of z = x * inv_t.
#[derive(Clone, Copy, Debug)]
pub struct Lse {
    pub max: f32,
    pub sum: f32,
    pub zsum: f32,
}

impl Lse {
    pub fn lse(&self) -> f32 {
        self.max + self.sum.ln()
    }
}

#[inline(always)]
fn merge<const N: usize>(m: &[f32; N], sums: &[&[f32; N]]) -> (f32, Vec<f32>) {
    let top = m.iter().copied().fold(f32::MIN, f32::max);
    let out = sums.iter().map(|s| (0..N).map(|l| s[l] * exp(m[l] - top)).sum()).collect();
    (top, out)
}

/// Raises each lane's max to cover the block, rescaling its sums (once per block).
#[inline(always)]
fn rescale<const N: usize>(m: &mut [f32; N], bm: &[f32; N], sums: &mut [&mut [f32; N]]) {
    for l in 0..N {
        let nm = m[l].max(bm[l]);
        let r = exp(m[l] - nm);
        for s in sums.iter_mut() {
            s[l] *= r;
        }
        m[l] = nm;
    }
}

#[inline(always)]
fn block_max<const N: usize>(x: &[f32], inv_t: f32) -> [f32; N] {
    let mut bm = [f32::MIN; N];
    let mut chunks = x.chunks_exact(N);
    for c in &mut chunks {
        for l in 0..N {
            bm[l] = bm[l].max(c[l] * inv_t);
        }
    }
    for (l, &v) in chunks.remainder().iter().enumerate() {
        bm[l] = bm[l].max(v * inv_t);
    }
    bm
}

/// e * z, 0 where z = -inf (and so e = 0: 0 log 0 = 0 in the entropy). The clamp is one
/// maxps that keeps a NaN.
#[inline(always)]
fn weighted(e: f32, z: f32) -> f32 {
    e * if z < f32::MIN { f32::MIN } else { z }
}

#[inline(always)]
fn lse_stats_impl(x: &[f32], inv_t: f32) -> Lse {
    let (mut m, mut s, mut t) = ([f32::MIN; L], [0.0f32; L], [0.0f32; L]);
    for blk in x.chunks(BLOCK) {
        rescale(&mut m, &block_max(blk, inv_t), &mut [&mut s, &mut t]);
        let mut chunks = blk.chunks_exact(L);
        for c in &mut chunks {
            for l in 0..L {
                let z = c[l] * inv_t;
                let e = exp(z - m[l]);
                s[l] += e;
                t[l] += weighted(e, z);
            }
        }
        for (l, &v) in chunks.remainder().iter().enumerate() {
            let z = v * inv_t;
            let e = exp(z - m[l]);
            s[l] += e;
            t[l] += weighted(e, z);
        }
    }
    let (max, sums) = merge(&m, &[&s, &t]);
    Lse { max, sum: sums[0], zsum: sums[1] }
}

dispatch!(pub fn lse_stats(x: &[f32], inv_t: f32) -> Lse => lse_stats_impl);

/// What kl_dual needs of a pair of rows a = clean / T, b = blind / T, with the shift
/// c = b_t - a_t of the sampled token (see shaders/kl_dual.wgsl for the method):
/// `a` and `b` are each row's (max, sum exp(x - max)); `a.zsum` holds sum e_a u with
/// u = b - a - c and e_a = exp(a - max_a); `k` holds sum e_a k3(u), scaled by exp(-r) with
/// r = max(max_a, max_b - c) (so no term exceeds 1).
#[derive(Clone, Copy, Debug)]
pub struct PairStats {
    pub a: Lse,
    pub b: Lse,
    pub k: f32,
    pub r: f32,
}

/// One element's share of k: e_a k3(u), which is e_b c2 - e_a c1 (1 + u) in the direct form
/// (e_b c2 = e_a c1 e^u, also when e_a underflows to 0); c1, c2 rescale from the rows'
/// maxima to r.
#[inline(always)]
fn k_term(ea: f32, eb: f32, u: f32, ue: f32, c1: f32, c2: f32) -> f32 {
    // Only the series: the direct form of k3 would cost an exp per element (both sides of a
    // select are computed once vectorised), and e_b c2 already holds e_a c1 e^u.
    if u.abs() < 0.5 { ea * c1 * k3_series(u) } else { eb * c2 - ea * c1 * (1.0 + ue) }
}

/// Lanes of kl_stats: its eight per-lane arrays at 8 lanes fill eight AVX registers; at 16
/// they spilled to the stack and the loop ran 2.8x slower.
const KL_LANES: usize = 8;

#[inline(always)]
fn kl_stats_impl(clean: &[f32], blind: &[f32], inv_t: f32, c: f32) -> PairStats {
    let (mut ma, mut sa, mut ta) = ([f32::MIN; KL_LANES], [0.0f32; KL_LANES], [0.0f32; KL_LANES]);
    let (mut mb, mut sb) = ([f32::MIN; KL_LANES], [0.0f32; KL_LANES]);
    let (mut r, mut k) = ([f32::MIN; KL_LANES], [0.0f32; KL_LANES]);
    for (ba, bb) in clean.chunks(BLOCK).zip(blind.chunks(BLOCK)) {
        rescale(&mut ma, &block_max(ba, inv_t), &mut [&mut sa, &mut ta]);
        rescale(&mut mb, &block_max(bb, inv_t), &mut [&mut sb]);
        let target: [f32; KL_LANES] = std::array::from_fn(|l| ma[l].max(mb[l] - c));
        rescale(&mut r, &target, &mut [&mut k]);
        let c1: [f32; KL_LANES] = std::array::from_fn(|l| exp(ma[l] - r[l]));
        let c2: [f32; KL_LANES] = std::array::from_fn(|l| exp(mb[l] - c - r[l]));
        let mut step = |l: usize, xa: f32, xb: f32| {
            let (a, b) = (xa * inv_t, xb * inv_t);
            let (ea, eb) = (exp(a - ma[l]), exp(b - mb[l]));
            let u = b - a - c;
            // Where p_a is 0 (a = -inf), u is infinite and weighs nothing in the mean.
            let ue = if ea == 0.0 { 0.0 } else { u };
            sa[l] += ea;
            ta[l] += ea * ue;
            sb[l] += eb;
            k[l] += k_term(ea, eb, u, ue, c1[l], c2[l]);
        };
        let (mut ca, mut cb) = (ba.chunks_exact(KL_LANES), bb.chunks_exact(KL_LANES));
        for (xa, xb) in (&mut ca).zip(&mut cb) {
            for l in 0..KL_LANES {
                step(l, xa[l], xb[l]);
            }
        }
        for (l, (&xa, &xb)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
            step(l, xa, xb);
        }
    }
    let (max_a, sums_a) = merge(&ma, &[&sa, &ta]);
    let (max_b, sums_b) = merge(&mb, &[&sb]);
    let (top_r, sums_k) = merge(&r, &[&k]);
    PairStats {
        a: Lse { max: max_a, sum: sums_a[0], zsum: sums_a[1] },
        b: Lse { max: max_b, sum: sums_b[0], zsum: 0.0 },
        k: sums_k[0],
        r: top_r,
    }
}

dispatch!(pub fn kl_stats(clean: &[f32], blind: &[f32], inv_t: f32, c: f32) -> PairStats => kl_stats_impl);

/// out[i] = scale * exp(x[i] * inv_t - shift), the second pass of softmax and of the
/// logits gradients.
#[inline(always)]
fn exp_map_impl(x: &[f32], inv_t: f32, shift: f32, scale: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = flush_subnormal(scale * exp(v * inv_t - shift));
    }
}

dispatch!(pub fn exp_map(x: &[f32], inv_t: f32, shift: f32, scale: f32, out: &mut [f32]) => exp_map_impl);

/// One row of an attention score block, in place: z = x * scale; the new running max
/// m' = max(m, max z); x = exp(z - m'). Returns (m', sum of the new x). Entries already at
/// -inf (masked) become 0. When every entry is masked and m is -inf, the row is zeroed;
/// when the only others are NaN, the row and both results are NaN.
#[inline(always)]
fn softmax_block_row_impl(row: &mut [f32], scale: f32, m: f32) -> (f32, f32) {
    let mut bm = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for l in 0..L {
            c[l] *= scale;
            bm[l] = bm[l].max(c[l]);
        }
    }
    for (l, x) in chunks.into_remainder().iter_mut().enumerate() {
        *x *= scale;
        bm[l] = bm[l].max(*x);
    }
    let nm = bm.iter().copied().fold(m, f32::max);
    if nm == f32::NEG_INFINITY {
        // Nothing visible, unless the max dropped NaN scores: those make the row NaN.
        let fill = if row.iter().any(|x| x.is_nan()) { f32::NAN } else { 0.0 };
        row.fill(fill);
        return (if fill == 0.0 { nm } else { fill }, fill);
    }
    let mut sums = [0.0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for l in 0..L {
            c[l] = exp(c[l] - nm);
            sums[l] += c[l];
        }
    }
    for (l, x) in chunks.into_remainder().iter_mut().enumerate() {
        *x = exp(*x - nm);
        sums[l] += *x;
    }
    (nm, sums.iter().sum())
}

dispatch!(pub fn softmax_block_row(row: &mut [f32], scale: f32, m: f32) -> (f32, f32) => softmax_block_row_impl);

/// One row of the attention backward, in place: p = exp(s * scale - lse) (s holds the
/// scores, masked entries -inf), then ds = p (dp - delta) scale (dp holds dO . v).
#[inline(always)]
fn attention_grad_row_impl(s: &mut [f32], dp: &mut [f32], scale: f32, lse: f32, delta: f32) {
    for (x, g) in s.iter_mut().zip(dp.iter_mut()) {
        let p = exp(*x * scale - lse);
        *x = p;
        *g = p * (*g - delta) * scale;
    }
}

dispatch!(pub fn attention_grad_row(s: &mut [f32], dp: &mut [f32], scale: f32, lse: f32, delta: f32) => attention_grad_row_impl);

/// max of x * inv_t (inv_t > 0).
#[inline(always)]
fn row_max_impl(x: &[f32], inv_t: f32) -> f32 {
    block_max::<L>(x, inv_t).iter().copied().fold(f32::MIN, f32::max)
}

dispatch!(pub fn row_max(x: &[f32], inv_t: f32) -> f32 => row_max_impl);

/// out = exp(x * inv_t - max); returns (sum out, sum out * z) with z = x * inv_t. With the
/// row max known this needs one exp per element and leaves the probabilities (times sum) in
/// `out` for a cheap in-place rescale.
#[inline(always)]
fn exp_store_impl(x: &[f32], inv_t: f32, max: f32, out: &mut [f32]) -> (f32, f32) {
    let (mut s, mut t) = ([0.0f32; L], [0.0f32; L]);
    let mut xs = x.chunks_exact(L);
    let mut os = out.chunks_exact_mut(L);
    for (c, o) in (&mut xs).zip(&mut os) {
        for l in 0..L {
            let z = c[l] * inv_t;
            let e = exp(z - max);
            o[l] = e;
            s[l] += e;
            t[l] += e * z;
        }
    }
    for (l, (&v, o)) in xs.remainder().iter().zip(os.into_remainder()).enumerate() {
        let z = v * inv_t;
        let e = exp(z - max);
        *o = e;
        s[l] += e;
        t[l] += e * z;
    }
    (s.iter().sum(), t.iter().sum())
}

dispatch!(pub fn exp_store(x: &[f32], inv_t: f32, max: f32, out: &mut [f32]) -> (f32, f32) => exp_store_impl);

/// out[i] = scale * exp(x[i] * inv_t - shift) written with streaming (non-temporal) stores:
/// for a gradient row that is not read again soon, this skips the read-for-ownership of
/// every output line, a third of the memory traffic of the policy loss.
pub fn exp_map_stream(x: &[f32], inv_t: f32, shift: f32, scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::fastmath::has_avx2() {
        // SAFETY: AVX2 and FMA are present.
        unsafe { exp_map_stream_avx2(x, inv_t, shift, scale, out) };
        return;
    }
    exp_map(x, inv_t, shift, scale, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_map_stream_avx2(x: &[f32], inv_t: f32, shift: f32, scale: f32, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = out.len().min(x.len());
    // Scalar head up to 32-byte alignment of the output, as streaming stores require.
    let head = (out.as_ptr().align_offset(32)).min(n);
    for i in 0..head {
        out[i] = flush_subnormal(scale * exp(x[i] * inv_t - shift));
    }
    let mut i = head;
    let mut tmp = [0.0f32; 8];
    while i + 8 <= n {
        for l in 0..8 {
            tmp[l] = flush_subnormal(scale * exp(x[i + l] * inv_t - shift));
        }
        // SAFETY: out[i..i + 8] is in bounds and 32-byte aligned (i - head is a multiple of 8).
        unsafe { _mm256_stream_ps(out.as_mut_ptr().add(i), _mm256_loadu_ps(tmp.as_ptr())) };
        i += 8;
    }
    for j in i..n {
        out[j] = flush_subnormal(scale * exp(x[j] * inv_t - shift));
    }
    _mm_sfence();
}
