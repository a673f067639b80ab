//! Group advantages (GRPO), the DAPO dynamic-sampling filter, and PGPO token advantages.

use crate::backend::cpu::kl_dual::k3;
use crate::backend::cpu::pgpo_weights::{response_weights, WeightConfig};
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Indices of the responses of each prompt, in prompt order.
fn groups(group: &[i64]) -> BTreeMap<i64, Vec<usize>> {
    let mut g: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &k) in group.iter().enumerate() {
        g.entry(k).or_default().push(i);
    }
    g
}

/// A_i = (R_i - mean(R_group)) / (std(R_group) + 1e-6), unbiased std. A group of one
/// response has no spread: its advantage is 0.
pub fn grpo_advantages(rewards: &[f32], group: &[i64]) -> Result<Vec<f32>> {
    group_advantages(rewards, group, true)
}

/// Group advantages: R_i - mean(R_group), divided by (std(R_group) + 1e-6) when `scale_std`
/// (GRPO, DAPO) and left as they are otherwise (Dr. GRPO). A group of one has advantage 0.
pub fn group_advantages(rewards: &[f32], group: &[i64], scale_std: bool) -> Result<Vec<f32>> {
    if rewards.len() != group.len() {
        return Err(Error::shape("grpo_advantages", format!("{} rewards for {} group ids", rewards.len(), group.len())));
    }
    let mut adv = vec![0.0f32; rewards.len()];
    for idx in groups(group).values() {
        let n = idx.len() as f64;
        if idx.len() < 2 {
            continue;
        }
        let mean = idx.iter().map(|&i| f64::from(rewards[i])).sum::<f64>() / n;
        let var = idx.iter().map(|&i| (f64::from(rewards[i]) - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let scale = if scale_std { var.sqrt() + 1e-6 } else { 1.0 };
        for &i in idx {
            adv[i] = ((f64::from(rewards[i]) - mean) / scale) as f32;
        }
    }
    Ok(adv)
}

/// Which score DAPO's dynamic sampling looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterKey {
    /// The overall reward (the paper's choice).
    Reward,
    /// Accuracy alone.
    Accuracy,
}

/// DAPO dynamic sampling: keep a response only if its group's mean score is strictly
/// between 0 and 1 (a group that is all right or all wrong carries no signal).
pub fn dapo_keep(scores: &[f32], group: &[i64]) -> Vec<bool> {
    let mut keep = vec![false; scores.len()];
    for idx in groups(group).values() {
        let mean = idx.iter().map(|&i| f64::from(scores[i])).sum::<f64>() / idx.len() as f64;
        let informative = mean > 1e-9 && mean < 1.0 - 1e-9;
        for &i in idx {
            keep[i] = informative;
        }
    }
    keep
}

/// Token visual dependency from the two log-probs by k3, [B, L] (0 off the mask).
pub fn tvd_k3(logp_clean: &[f32], logp_blind: &[f32], mask: &[f32], d_clamp: f32) -> Vec<f32> {
    logp_clean
        .iter()
        .zip(logp_blind)
        .zip(mask)
        .map(|((&c, &b), &m)| if m > 0.0 { k3(b - c, d_clamp) } else { 0.0 })
        .collect()
}

/// Everything `pgpo advantages` writes.
pub struct TokenAdvantages {
    pub adv: Vec<f32>,
    pub tvd: Vec<f32>,
    pub weights: Vec<f32>,
    pub token_adv: Vec<f32>,
}

/// GRPO sequence advantages, k3 dependency, PGPO weights and token advantages A_i * wn_t for
/// B responses of length L (row-major [B, L]).
pub fn token_advantages(
    rewards: &[f32],
    group: &[i64],
    logp_clean: &[f32],
    logp_blind: &[f32],
    mask: &[f32],
    l: usize,
    c: &WeightConfig,
    d_clamp: f32,
) -> Result<TokenAdvantages> {
    let b = rewards.len();
    for (name, len) in [("logp_clean", logp_clean.len()), ("logp_blind", logp_blind.len()), ("mask", mask.len())] {
        if len != b * l {
            return Err(Error::shape("token_advantages", format!("{name} has {len} values, expected [{b}, {l}]")));
        }
    }
    crate::ops::pgpo_weights::validate(c, "token_advantages")?;
    crate::ops::option("token_advantages", "d_clamp", d_clamp, crate::ops::Need::PositiveOrInf)?;
    let adv = grpo_advantages(rewards, group)?;
    let tvd = tvd_k3(logp_clean, logp_blind, mask, d_clamp);
    let mut weights = vec![0.0; b * l];
    for r in 0..b {
        let valid: Vec<bool> = mask[r * l..(r + 1) * l].iter().map(|&m| m > 0.0).collect();
        response_weights(&tvd[r * l..(r + 1) * l], &valid, c, &mut weights[r * l..(r + 1) * l]);
    }
    let token_adv = weights.iter().enumerate().map(|(i, &w)| adv[i / l.max(1)] * w).collect();
    Ok(TokenAdvantages { adv, tvd, weights, token_adv })
}
