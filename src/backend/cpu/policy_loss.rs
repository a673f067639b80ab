//! Fused clipped policy loss, forward and backward (see shaders/policy_loss.wgsl).

use super::fastmath::{expm1, k3};
use rayon::prelude::*;

/// Clipping and KL options of PGPO_METHOD.md section 4.
#[derive(Clone, Copy, Debug)]
pub struct LossConfig {
    pub clip_low: f32,
    pub clip_high: f32,
    /// Dual-clip constant for negative advantages; 0 turns it off.
    pub dual_clip: f32,
    /// Coefficient of the k3 KL to the reference policy; 0 turns it off.
    pub kl_coef: f32,
    pub temperature: f32,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { clip_low: 0.2, clip_high: 0.28, dual_clip: 3.0, kl_coef: 0.0, temperature: 1.0 }
    }
}

/// Per-token inputs, packed [N, 4]: old_logp, advantage, aggregation weight, ref_logp.
pub const TOKEN_IN: usize = 4;
/// Per-token outputs, packed [N, 4]: loss (unweighted), logp, entropy, clipped (0 or 1).
pub const TOKEN_OUT: usize = 4;

/// The token's loss and d loss / d logp, from its log-prob and inputs. A NaN log-prob, old
/// log-prob or advantage gives a NaN loss and gradient (the clamp would hide it on a GPU).
/// The reference-KL term and its gradient -(e^d - 1) are computed without cancellation.
pub fn token_loss(logp: f32, old: f32, adv: f32, reference: f32, c: &LossConfig) -> (f32, f32, bool) {
    let ratio = (logp - old).exp();
    let pg1 = -adv * ratio;
    let pg2 = -adv * ratio.clamp(1.0 - c.clip_low, 1.0 + c.clip_high);
    let clipped = pg2 > pg1;
    let (mut loss, mut grad) = if pg1 >= pg2 { (pg1, -adv * ratio) } else { (pg2, 0.0) };
    if c.dual_clip > 0.0 && adv < 0.0 {
        let pg3 = -adv * c.dual_clip;
        if pg3 < loss {
            loss = pg3;
            grad = 0.0;
        }
    }
    if ratio.is_nan() || adv.is_nan() {
        (loss, grad) = (f32::NAN, f32::NAN);
    }
    if c.kl_coef > 0.0 {
        let d = reference - logp;
        loss += c.kl_coef * k3(d);
        grad -= c.kl_coef * expm1(d);
    }
    (loss, grad, clipped)
}

pub fn policy_loss(logits: &[f32], tokens: &[u32], tok_in: &[f32], v: usize, c: &LossConfig, dlogits: &mut [f32], tok_out: &mut [f32]) {
    let inv_t = 1.0 / c.temperature;
    dlogits.par_chunks_mut(v).zip(tok_out.par_chunks_mut(TOKEN_OUT)).enumerate().for_each(|(r, (d, o))| {
        let row = &logits[r * v..(r + 1) * v];
        // Pass 1 reads the row from memory; pass 2 re-reads it from cache (600 KB at Qwen's
        // vocabulary) and streams the gradient out without reading its lines first.
        let st = super::rowstats::lse_stats(row, inv_t);
        let (lse, s, te) = (st.lse(), st.sum, st.zsum);
        let x = &tok_in[r * TOKEN_IN..(r + 1) * TOKEN_IN];
        let (old, adv, weight, reference) = (x[0], x[1], x[2], x[3]);
        let t = tokens[r] as usize;
        let logp = row[t] * inv_t - lse;
        let (loss, grad, clipped) = token_loss(logp, old, adv, reference, c);
        o.copy_from_slice(&[loss, logp, lse - te / s, if clipped { 1.0 } else { 0.0 }]);
        // d(weight * loss) / dz_v = weight * grad * (onehot - p_v), and dz/dx = 1/T.
        let g = weight * grad * inv_t;
        if g == 0.0 {
            d.fill(0.0);
            return;
        }
        super::rowstats::exp_map_stream(row, inv_t, lse, -g, d);
        d[t] += g;
    });
}
