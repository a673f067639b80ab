//! Fused dual-pass KL (see shaders/kl_dual.wgsl): per row, from the clean and blind logits in
//! one pass, the log-probs of the sampled token under both, the exact full-vocabulary
//! KL(p_clean || p_blind) and the k3 estimate. No probability row is stored.

use rayon::prelude::*;

/// Per-row results, each [N].
pub struct KlOut<'a> {
    pub logp_clean: &'a mut [f32],
    pub logp_blind: &'a mut [f32],
    pub kl: &'a mut [f32],
    pub k3: &'a mut [f32],
}

/// Online statistics of one row: max and sum of exp for both rows, and
/// t = sum exp(a - m_a) (a - b), so that KL = t / s_a - lse_a + lse_b.
#[derive(Clone, Copy)]
struct Stats {
    ma: f32,
    sa: f32,
    ta: f32,
    mb: f32,
    sb: f32,
}

/// Elements per block: the max is taken per block, so the sums are rescaled once per block.
const BLOCK: usize = 512;

fn row_stats(a: &[f32], b: &[f32], inv_t: f32) -> Stats {
    let mut s = Stats { ma: f32::NEG_INFINITY, sa: 0.0, ta: 0.0, mb: f32::NEG_INFINITY, sb: 0.0 };
    for (ca, cb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let bma = ca.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * inv_t;
        let bmb = cb.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * inv_t;
        if bma > s.ma {
            let r = (s.ma - bma).exp();
            s.sa *= r;
            s.ta *= r;
            s.ma = bma;
        }
        if bmb > s.mb {
            s.sb *= (s.mb - bmb).exp();
            s.mb = bmb;
        }
        for (&x, &y) in ca.iter().zip(cb) {
            let (xa, yb) = (x * inv_t, y * inv_t);
            let ea = (xa - s.ma).exp();
            s.sa += ea;
            s.ta += ea * (xa - yb);
            s.sb += (yb - s.mb).exp();
        }
    }
    s
}

/// k3 estimate of KL from d = logp_blind - logp_clean, clamped to [-clamp, clamp].
pub fn k3(d: f32, clamp: f32) -> f32 {
    let d = d.clamp(-clamp, clamp);
    d.exp() - 1.0 - d
}

pub fn kl_dual(clean: &[f32], blind: &[f32], tokens: &[u32], v: usize, inv_t: f32, d_clamp: f32, out: KlOut) {
    let KlOut { logp_clean, logp_blind, kl, k3: k3_out } = out;
    logp_clean
        .par_iter_mut()
        .zip(logp_blind.par_iter_mut())
        .zip(kl.par_iter_mut().zip(k3_out.par_iter_mut()))
        .enumerate()
        .for_each(|(r, ((lc, lb), (kl, k)))| {
            let (a, b) = (&clean[r * v..(r + 1) * v], &blind[r * v..(r + 1) * v]);
            let s = row_stats(a, b, inv_t);
            let (lse_a, lse_b) = (s.ma + s.sa.ln(), s.mb + s.sb.ln());
            let t = tokens[r] as usize;
            *lc = a[t] * inv_t - lse_a;
            *lb = b[t] * inv_t - lse_b;
            // Rounding can leave a tiny negative value for identical rows; KL is >= 0.
            *kl = (s.ta / s.sa - lse_a + lse_b).max(0.0);
            *k = k3(*lb - *lc, d_clamp);
        });
}
