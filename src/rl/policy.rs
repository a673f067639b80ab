//! How per-token losses are aggregated into the policy loss.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// Mean over every valid token of the mini-batch (DAPO; the default).
    TokenMean,
    /// Mean over responses of each response's token mean (plain GRPO).
    SeqMeanTokenMean,
    /// Mean over responses of each response's token sum.
    SeqMeanTokenSum,
}

impl Aggregation {
    pub fn parse(s: &str) -> Option<Aggregation> {
        Some(match s {
            "token-mean" => Aggregation::TokenMean,
            "seq-mean-token-mean" => Aggregation::SeqMeanTokenMean,
            "seq-mean-token-sum" => Aggregation::SeqMeanTokenSum,
            _ => return None,
        })
    }
}

/// The weight of each token in the loss (0 where `mask` is 0), so that the loss is
/// sum_t weight_t * loss_t. `seq` gives each token's response; the sequence modes need it.
pub fn aggregation_weights(mask: &[f32], seq: Option<&[i64]>, agg: Aggregation) -> Result<Vec<f32>> {
    let valid: f64 = mask.iter().map(|&m| f64::from(m)).sum();
    if agg == Aggregation::TokenMean {
        return Ok(mask.iter().map(|&m| if valid > 0.0 { (f64::from(m) / valid) as f32 } else { 0.0 }).collect());
    }
    let seq = seq.ok_or_else(|| Error::shape("aggregation", "the sequence modes need `seq`, the response of each token"))?;
    if seq.len() != mask.len() {
        return Err(Error::shape("aggregation", format!("seq has {} entries for {} tokens", seq.len(), mask.len())));
    }
    let mut len: BTreeMap<i64, f64> = BTreeMap::new();
    for (&s, &m) in seq.iter().zip(mask) {
        *len.entry(s).or_default() += f64::from(m);
    }
    let n_seq = len.values().filter(|&&l| l > 0.0).count() as f64;
    Ok(seq
        .iter()
        .zip(mask)
        .map(|(s, &m)| {
            let per = match agg {
                Aggregation::SeqMeanTokenMean => len[s],
                _ => 1.0,
            };
            if m > 0.0 { (f64::from(m) / per / n_seq) as f32 } else { 0.0 }
        })
        .collect())
}
