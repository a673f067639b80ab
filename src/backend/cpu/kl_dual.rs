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
            let (sa, sb) = super::rowstats::kl_stats(a, b, inv_t);
            let (lse_a, lse_b) = (sa.lse(), sb.lse());
            let t = tokens[r] as usize;
            *lc = a[t] * inv_t - lse_a;
            *lb = b[t] * inv_t - lse_b;
            // Rounding can leave a tiny negative value for identical rows; KL is >= 0.
            *kl = (sa.zsum / sa.sum - lse_a + lse_b).max(0.0);
            *k = k3(*lb - *lc, d_clamp);
        });
}
