//! `pgpo advantages` and `pgpo policy-loss`: the PGPO computations on safetensors files, for
//! cross-checking against other RL frameworks (EasyR1, TRL).

use pgpo::io::{expect_shape, write_f32, TensorFile};
use pgpo::ops::{self, LossConfig, TokenInputs, Variant, WeightConfig};
use pgpo::rl::advantages::token_advantages;
use pgpo::rl::policy::{aggregation_weights, Aggregation};
use pgpo::{Device, Error, Result, Tensor};
use std::path::Path;

fn invalid(msg: String) -> Error {
    Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg))
}

pub struct AdvantageArgs<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub tau: f32,
    pub beta: f32,
    pub variant: &'a str,
    pub d_clamp: f32,
}

pub fn advantages(a: &AdvantageArgs) -> Result<()> {
    let variant = Variant::parse(a.variant)
        .ok_or_else(|| invalid(format!("--variant {:?}: use paper, quantile, floor or no-norm", a.variant)))?;
    let f = TensorFile::open(a.input)?;
    let (rs, rewards) = f.f32("rewards", 1)?;
    let b = rs[0];
    let (gs, group) = f.i64("group", 1)?;
    expect_shape(f.path(), "group", &gs, &[b])?;
    let (cs, logp_clean) = f.f32("logp_clean", 2)?;
    if cs[0] != b {
        return Err(invalid(format!("{}: tensor `logp_clean` has shape {cs:?}, expected [{b}, L]", f.path().display())));
    }
    let l = cs[1];
    let (bs, logp_blind) = f.f32("logp_blind", 2)?;
    expect_shape(f.path(), "logp_blind", &bs, &cs)?;
    let (ms, mask) = f.f32("mask", 2)?;
    expect_shape(f.path(), "mask", &ms, &cs)?;
    let c = WeightConfig { tau: a.tau, beta: a.beta, variant, ..WeightConfig::default() };
    let t = token_advantages(&rewards, &group, &logp_clean, &logp_blind, &mask, l, &c, a.d_clamp)?;
    write_f32(
        a.output,
        &[("adv", vec![b], &t.adv), ("tvd", cs.clone(), &t.tvd), ("weights", cs.clone(), &t.weights), ("token_adv", cs, &t.token_adv)],
    )
}

pub struct PolicyLossArgs<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub config: LossConfig,
    pub agg: &'a str,
    pub device: Device,
}

pub fn policy_loss(a: &PolicyLossArgs) -> Result<(f64, pgpo::ops::PolicyLoss)> {
    let agg = Aggregation::parse(a.agg)
        .ok_or_else(|| invalid(format!("--agg {:?}: use token-mean, seq-mean-token-mean or seq-mean-token-sum", a.agg)))?;
    let f = TensorFile::open(a.input)?;
    let (ls, logits) = f.f32("logits", 2)?;
    let (n, v) = (ls[0], ls[1]);
    let (ts, tokens) = f.i64("tokens", 1)?;
    expect_shape(f.path(), "tokens", &ts, &[n])?;
    let tokens: Vec<u32> = tokens
        .iter()
        .map(|&t| u32::try_from(t).ok().filter(|&t| (t as usize) < v))
        .collect::<Option<_>>()
        .ok_or_else(|| invalid(format!("{}: tensor `tokens` holds an id outside [0, {v})", f.path().display())))?;
    let (os, old) = f.f32("old_logp", 1)?;
    expect_shape(f.path(), "old_logp", &os, &[n])?;
    let (advs, adv) = f.f32("adv", 1)?;
    expect_shape(f.path(), "adv", &advs, &[n])?;
    let mask = match f.f32_opt("mask", 1)? {
        Some((s, m)) => {
            expect_shape(f.path(), "mask", &s, &[n])?;
            m
        }
        None => vec![1.0; n],
    };
    let seq = match f.i64_opt("seq", 1)? {
        Some((s, q)) => {
            expect_shape(f.path(), "seq", &s, &[n])?;
            Some(q)
        }
        None => None,
    };
    let weight = aggregation_weights(&mask, seq.as_deref(), agg)?;
    let logits = Tensor::from_vec(logits, &ls, &a.device)?;
    let inputs = TokenInputs { tokens: &tokens, old_logp: &old, adv: &adv, weight: &weight, ref_logp: None };
    let out = ops::policy_loss(&logits, &inputs, &a.config)?;
    let dlogits = out.dlogits.to_vec()?;
    write_f32(a.output, &[("loss", vec![1], &[out.loss as f32]), ("dlogits", ls, &dlogits)])?;
    Ok((out.loss, out))
}
