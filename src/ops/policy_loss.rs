//! The fused clipped policy loss: per-token loss and statistics, and the logits gradient
//! written straight into dlogits [N, V]; no other [N, V] buffer is allocated.

use super::{fits_u32, option, Need};
use crate::backend::cpu::policy_loss::{TOKEN_IN, TOKEN_OUT};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

pub use crate::backend::cpu::policy_loss::LossConfig;

/// Per-token inputs (host data, O(N)).
#[derive(Clone, Debug)]
pub struct TokenInputs<'a> {
    pub tokens: &'a [u32],
    pub old_logp: &'a [f32],
    pub adv: &'a [f32],
    /// The aggregation weight of each token (0 on masked tokens): the loss is
    /// sum_t weight_t * loss_t. See `rl::policy::aggregation_weights`.
    pub weight: &'a [f32],
    /// Reference-policy log-probs, used when `kl_coef > 0`.
    pub ref_logp: Option<&'a [f32]>,
}

impl<'a> TokenInputs<'a> {
    /// The inputs of tokens [start, start + len).
    pub fn rows(&self, start: usize, len: usize) -> TokenInputs<'a> {
        let r = start..start + len;
        TokenInputs {
            tokens: &self.tokens[r.clone()],
            old_logp: &self.old_logp[r.clone()],
            adv: &self.adv[r.clone()],
            weight: &self.weight[r.clone()],
            ref_logp: self.ref_logp.map(|x| &x[r]),
        }
    }
}

/// What the loss reports per token, and its aggregates over the weighted tokens.
#[derive(Clone, Debug, Default)]
pub struct TokenOutputs {
    /// sum_t weight_t * loss_t.
    pub loss: f64,
    /// Per-token log-prob of the sampled token under the current policy.
    pub logp: Vec<f32>,
    /// Per-token loss before the aggregation weight.
    pub token_loss: Vec<f32>,
    /// Per-token entropy of the current policy.
    pub token_entropy: Vec<f32>,
    /// Per token, 1 where the clipped branch was taken, else 0.
    pub token_clipped: Vec<f32>,
    /// Fraction of weighted tokens where the clipped branch was taken.
    pub clip_frac: f64,
    /// Mean over weighted tokens of (old_logp - logp), the approximate KL to the old policy.
    pub approx_kl: f64,
    /// Mean entropy of the current policy over weighted tokens.
    pub entropy: f64,
}

/// Results of one fused pass: the logits gradient, and what the loss reports per token
/// (read through to `TokenOutputs`: `out.loss`, `out.logp`, ...).
#[derive(Clone, Debug)]
pub struct PolicyLoss {
    /// d loss / d logits, [N, V].
    pub dlogits: Tensor,
    pub tokens: TokenOutputs,
}

impl std::ops::Deref for PolicyLoss {
    type Target = TokenOutputs;
    fn deref(&self) -> &TokenOutputs {
        &self.tokens
    }
}

pub fn policy_loss(logits: &Tensor, x: &TokenInputs, c: &LossConfig) -> Result<PolicyLoss> {
    let (dlogits, tok_out) = policy_loss_rows(logits, x, c)?;
    Ok(PolicyLoss { dlogits, tokens: summarize(x, &tok_out) })
}

/// The kernel's dlogits [N, V] and its packed per-token outputs [N, TOKEN_OUT] (host).
pub(crate) fn policy_loss_rows(logits: &Tensor, x: &TokenInputs, c: &LossConfig) -> Result<(Tensor, Vec<f32>)> {
    let n = x.tokens.len();
    if logits.rank() != 2 || logits.shape()[0] != n || logits.shape()[1] == 0 {
        return Err(Error::shape("policy_loss", format!("logits {:?} must be [N, V] with N = {n} tokens", logits.shape())));
    }
    let v = logits.shape()[1];
    for (name, len) in [("old_logp", x.old_logp.len()), ("adv", x.adv.len()), ("weight", x.weight.len())] {
        if len != n {
            return Err(Error::shape("policy_loss", format!("{name} has {len} entries for {n} tokens")));
        }
    }
    if let Some(r) = x.ref_logp
        && r.len() != n
    {
        return Err(Error::shape("policy_loss", format!("ref_logp has {} entries for {n} tokens", r.len())));
    }
    if c.kl_coef > 0.0 && x.ref_logp.is_none() {
        return Err(Error::shape("policy_loss", "kl_coef > 0 needs ref_logp"));
    }
    option("policy_loss", "temperature", c.temperature, Need::Positive)?;
    option("policy_loss", "clip_low", c.clip_low, Need::BelowOne)?;
    option("policy_loss", "clip_high", c.clip_high, Need::NonNegative)?;
    option("policy_loss", "dual_clip", c.dual_clip, Need::OffOrAboveOne)?;
    option("policy_loss", "kl_coef", c.kl_coef, Need::NonNegative)?;
    if let Some(&bad) = x.tokens.iter().find(|&&t| t as usize >= v) {
        return Err(Error::Index { op: "policy_loss", index: bad as usize, size: v });
    }
    fits_u32("policy_loss", logits.numel())?;
    let mut tok_in = Vec::with_capacity(n * TOKEN_IN);
    for i in 0..n {
        tok_in.extend([x.old_logp[i], x.adv[i], x.weight[i], x.ref_logp.map_or(0.0, |r| r[i])]);
    }
    let (dlogits, tok_out) = if let Some(l) = logits.as_cpu() {
        let (mut d, mut o) = (cpu::alloc(l.len()), cpu::alloc(n * TOKEN_OUT));
        cpu::policy_loss::policy_loss(l, x.tokens, &tok_in, v, c, &mut d, &mut o);
        (Tensor::from_cpu(d, logits.shape()), o)
    } else {
        let dev = logits.device();
        let toks = dev.upload_u32(x.tokens)?;
        let tin = Tensor::from_vec(tok_in, &[n, TOKEN_IN], dev)?;
        let d = Tensor::empty(logits.shape(), dev)?;
        let o = Tensor::empty(&[n, TOKEN_OUT], dev)?;
        dev.launch(&Launch {
            family: "policy_loss",
            kernel: "policy_loss",
            bindings: &[(0, Buf::F32(logits)), (1, Buf::U32(&toks)), (2, Buf::F32(&d)), (4, Buf::F32(&tin)), (5, Buf::F32(&o))],
            params: Params::new(&[
                word(n),
                word(v),
                (1.0 / c.temperature).to_bits(),
                c.clip_low.to_bits(),
                c.clip_high.to_bits(),
                c.dual_clip.to_bits(),
                c.kl_coef.to_bits(),
                0,
            ]),
            grid: Grid::Rows { groups: word(n), slot: 7 },
            constants: &[],
            threads: 256,
        })?;
        (d, o.to_vec()?)
    };
    Ok((dlogits, tok_out))
}

/// Splits the packed per-token outputs of `tokens.len()` tokens (in order) and aggregates them.
pub(crate) fn summarize(x: &TokenInputs, tok_out: &[f32]) -> TokenOutputs {
    let n = x.tokens.len();
    let (mut loss, mut wsum, mut clipped, mut kl, mut ent) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let column = |k: usize| tok_out.iter().skip(k).step_by(TOKEN_OUT).copied().collect::<Vec<f32>>();
    let (token_loss, logp, token_entropy, token_clipped) = (column(0), column(1), column(2), column(3));
    for i in 0..n {
        let w = f64::from(x.weight[i]);
        loss += w * f64::from(token_loss[i]);
        if w > 0.0 {
            wsum += 1.0;
            clipped += f64::from(token_clipped[i]);
            kl += f64::from(x.old_logp[i] - logp[i]);
            ent += f64::from(token_entropy[i]);
        }
    }
    let mean = |s: f64| if wsum > 0.0 { s / wsum } else { 0.0 };
    TokenOutputs {
        loss,
        logp,
        token_loss,
        token_entropy,
        token_clipped,
        clip_frac: mean(clipped),
        approx_kl: mean(kl),
        entropy: mean(ent),
    }
}
