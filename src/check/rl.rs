//! Checks of the PGPO kernels: the fused dual KL, the token weights and the policy loss.

use super::cases::{f64s, up};
use super::reference as r;
use super::{Inputs, KernelCheck};
use crate::device::Device;
use crate::error::Result;
use crate::ops::{self, KlOptions, LossConfig, TokenInputs, Variant, WeightConfig};
use crate::rng::Rng;
use crate::tensor::Tensor;

// ---- kl_dual: shape [N, V] ----

/// [66000, 3] takes the folded grid (more workgroups than one axis holds).
const KL: &[&[usize]] = &[&[1, 1], &[3, 7], &[5, 1000], &[2, 5000], &[70, 300], &[66000, 3]];
pub(super) const TEMP: f32 = 0.7;
/// Small enough that the rows built to exceed it reach the clamp.
pub(super) const D_CLAMP: f32 = 4.0;

pub(super) fn kl_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (n, v) = (s[0], s[1]);
    let mut clean = rng.vec(n * v, -4.0, 4.0);
    // The blind row is the clean row perturbed: small KL on some rows, large on others.
    let mut blind: Vec<f32> = clean.iter().enumerate().map(|(i, &x)| x + rng.range(-1.0, 1.0) * ((i / v) % 3) as f32).collect();
    let tokens: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    // Every fourth row moves the sampled token far enough for |d| to pass D_CLAMP, both ways.
    for (r, &t) in tokens.iter().enumerate().filter(|(r, _)| r % 4 == 3 && v > 1) {
        let shift = if r % 8 == 3 { 9.0 } else { -9.0 };
        blind[r * v + t as usize] += shift;
        clean[r * v + t as usize] -= shift / 2.0;
    }
    Inputs { f: vec![clean, blind], ids: tokens }
}

fn kl_run(d: &Device, s: &[usize], x: &Inputs) -> Result<Vec<Tensor>> {
    let o = ops::kl_dual(&up(d, &x.f[0], s)?, &up(d, &x.f[1], s)?, &x.ids, KlOptions { temperature: TEMP, d_clamp: D_CLAMP })?;
    Ok(vec![o.logp_clean, o.logp_blind, o.kl, o.k3])
}

fn kl_ref(s: &[usize], x: &Inputs) -> Vec<Vec<f64>> {
    r::kl_dual(&f64s(&x.f[0]), &f64s(&x.f[1]), &x.ids, s[1], f64::from(TEMP), f64::from(D_CLAMP)).to_vec()
}

// ---- pgpo_weights: shape [B, L]; row 0 is degenerate (constant scores) ----

const WEIGHTS: &[&[usize]] = &[&[1, 1], &[3, 5], &[4, 300], &[2, 1000], &[66000, 3]];

fn weight_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (b, l) = (s[0], s[1]);
    let mut tvd = Vec::with_capacity(b * l);
    let mut mask = Vec::with_capacity(b * l);
    for row in 0..b {
        let pad = if row % 2 == 1 { l / 5 } else { 0 };
        for i in 0..l {
            // Long-tailed scores, as TVD is: most near 0, a few large. On a grid of 1/16, so
            // two scores tie exactly or differ enough that the min-max normalisation and the
            // quantile threshold stay well-conditioned in f32 (nearly equal scores amplify
            // rounding by 1 / (max - min), in every implementation alike).
            let u = rng.uniform();
            tvd.push(if row == 0 && b > 1 { 0.25 } else { ((u * u * u * u) * 80.0).round() / 16.0 });
            mask.push(if i < pad { 0.0 } else { 1.0 });
        }
    }
    Inputs { f: vec![tvd, mask], ids: vec![] }
}

fn weight_config(variant: Variant) -> WeightConfig {
    WeightConfig { variant, ..WeightConfig::default() }
}

fn weight_ref(s: &[usize], x: &Inputs, name: &str) -> Vec<Vec<f64>> {
    let l = s[1];
    let c = WeightConfig::default();
    let (tvd, mask) = (f64s(&x.f[0]), &x.f[1]);
    let mut out = Vec::new();
    for row in 0..s[0] {
        let valid: Vec<bool> = mask[row * l..(row + 1) * l].iter().map(|&m| m > 0.0).collect();
        let (tau, beta, eps, floor) = (f64::from(c.tau), f64::from(c.beta), f64::from(c.eps), f64::from(c.floor));
        out.extend(r::pgpo_response(&tvd[row * l..(row + 1) * l], &valid, tau, beta, eps, name, floor));
    }
    vec![out]
}

// ---- policy_loss: shape [N, V] ----

const POLICY: &[&[usize]] = &[&[1, 2], &[7, 33], &[5, 1000], &[3, 5000], &[12, 77], &[66000, 3]];

/// The reference's options, written out rather than taken from `LossConfig::default()`, so
/// a changed default cannot move kernel and reference together.
const CLIP_LOW: f64 = 0.2;
const CLIP_HIGH: f64 = 0.28;
const DUAL_CLIP: f64 = 3.0;
const KL_COEF: f64 = 0.05;
const POLICY_TEMP: f64 = 0.9;

/// f[0] logits, f[1] packed per token (old_logp, adv, weight, ref_logp).
pub(super) fn policy_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (n, v) = (s[0], s[1]);
    let logits = rng.vec(n * v, -3.0, 3.0);
    let tokens: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let per = policy_token_inputs(&f64s(&logits), &tokens, v, rng);
    Inputs { f: vec![logits, per], ids: tokens }
}

/// Per token (old_logp, adv, weight, ref_logp), packed, for the given logits [N, V].
pub(super) fn policy_token_inputs(logits: &[f64], tokens: &[u32], v: usize, rng: &mut Rng) -> Vec<f32> {
    let mut per = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        let row: Vec<f64> = logits[i * v..(i + 1) * v].iter().map(|&x| x / POLICY_TEMP).collect();
        let logp = row[t as usize] - r::logsumexp(&row);
        // Ratios from 0.5 to 1.6 (inside and outside both clip bounds); every fifth token
        // from 3.3 to 12 with a negative advantage, where the dual clip decides.
        let (old, adv) = if i % 5 == 4 {
            (logp as f32 - rng.range(1.2, 2.5), -rng.range(0.1, 2.0))
        } else {
            (logp as f32 - rng.range(-0.7, 0.47), if i % 3 == 0 { -rng.range(0.1, 2.0) } else { rng.range(-2.0, 2.0) })
        };
        let weight = if i % 4 == 3 { 0.0 } else { rng.range(0.1, 1.0) };
        per.extend([old, adv, weight, logp as f32 + rng.range(-0.5, 0.5)]);
    }
    per
}

pub(super) fn policy_config(kl: bool) -> LossConfig {
    LossConfig {
        clip_low: CLIP_LOW as f32,
        clip_high: CLIP_HIGH as f32,
        dual_clip: DUAL_CLIP as f32,
        kl_coef: if kl { KL_COEF as f32 } else { 0.0 },
        temperature: POLICY_TEMP as f32,
    }
}

/// Outputs: dlogits, then per token logp, loss, entropy and the clip flag, then the
/// aggregates (weighted loss, clip fraction, approximate KL, mean entropy).
fn policy_run(d: &Device, s: &[usize], x: &Inputs, kl: bool) -> Result<Vec<Tensor>> {
    let col = |k: usize| x.f[1].iter().skip(k).step_by(4).copied().collect::<Vec<f32>>();
    let (old, adv, w, rf) = (col(0), col(1), col(2), col(3));
    let inputs = TokenInputs { tokens: &x.ids, old_logp: &old, adv: &adv, weight: &w, ref_logp: Some(&rf) };
    let out = ops::policy_loss(&up(d, &x.f[0], s)?, &inputs, &policy_config(kl))?;
    let host = |v: Vec<f32>| Tensor::from_vec(v.clone(), &[v.len()], &Device::Cpu);
    let aggregates = vec![out.loss as f32, out.clip_frac as f32, out.approx_kl as f32, out.entropy as f32];
    let t = out.tokens;
    Ok(vec![out.dlogits, host(t.logp)?, host(t.token_loss)?, host(t.token_entropy)?, host(t.token_clipped)?, host(aggregates)?])
}

/// Per token (loss, logp, entropy, clipped) in f64 from one row of logits.
fn policy_token_ref(row: &[f64], t: usize, p: &[f32], kl: bool) -> (f64, f64, f64, bool) {
    let z: Vec<f64> = row.iter().map(|x| x / POLICY_TEMP).collect();
    let lse = r::logsumexp(&z);
    let logp = z[t] - lse;
    let entropy = lse - z.iter().map(|&zi| { let q = (zi - lse).exp(); if q == 0.0 { 0.0 } else { q * zi } }).sum::<f64>();
    let (old, adv) = (f64::from(p[0]), f64::from(p[1]));
    let ratio = (logp - old).exp();
    let clipped = -adv * ratio.clamp(1.0 - CLIP_LOW, 1.0 + CLIP_HIGH) > -adv * ratio;
    let kl_coef = if kl { KL_COEF } else { 0.0 };
    let loss = r::token_policy_loss(logp, old, adv, f64::from(p[3]), (CLIP_LOW, CLIP_HIGH), DUAL_CLIP, kl_coef);
    (loss, logp, entropy, clipped)
}

/// The loss in f64, and its gradient by central differences row by row (a token's loss
/// depends only on its own row of logits).
pub(super) fn policy_ref(s: &[usize], x: &Inputs, kl: bool) -> Vec<Vec<f64>> {
    policy_ref_on(&f64s(&x.f[0]), &x.f[1], &x.ids, s[1], kl)
}

/// `policy_ref` from logits [N, V] in f64 and the packed per-token inputs.
pub(super) fn policy_ref_on(logits: &[f64], per: &[f32], ids: &[u32], v: usize, kl: bool) -> Vec<Vec<f64>> {
    let n = ids.len();
    let mut cols: [Vec<f64>; 5] = Default::default();
    let (mut total, mut counted, mut clipped, mut approx_kl, mut entropy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        let p = &per[i * 4..i * 4 + 4];
        let (t, weight) = (ids[i] as usize, f64::from(p[2]));
        let row = logits[i * v..(i + 1) * v].to_vec();
        let (loss, logp, ent, clip) = policy_token_ref(&row, t, p, kl);
        let grad = r::finite_difference(|xs| vec![weight * policy_token_ref(&xs[0], t, p, kl).0], &[row], &[1.0], &[0]);
        cols[0].extend(&grad[0]);
        for (c, value) in cols[1..].iter_mut().zip([logp, loss, ent, if clip { 1.0 } else { 0.0 }]) {
            c.push(value);
        }
        total += weight * loss;
        if weight > 0.0 {
            counted += 1.0;
            clipped += if clip { 1.0 } else { 0.0 };
            approx_kl += f64::from(p[0]) - logp;
            entropy += ent;
        }
    }
    let mean = |x: f64| if counted > 0.0 { x / counted } else { 0.0 };
    let mut out = cols.to_vec();
    out.push(vec![total, mean(clipped), mean(approx_kl), mean(entropy)]);
    out
}

macro_rules! policy_check {
    ($name:literal, $kl:expr) => {
        KernelCheck {
            name: $name,
            // dlogits, logp, token loss, entropy, clip flag (exact), aggregates.
            tols: &[(5e-7, 5e-5), (1e-6, 1e-6), (1e-6, 2e-6), (2e-6, 2e-6), (0.0, 0.0), (2e-6, 2e-6)],
            shapes: POLICY,
            extra_shapes: &[],
            inputs: policy_inputs,
            run: |d, s, x| policy_run(d, s, x, $kl),
            reference: |s, x| policy_ref(s, x, $kl),
        }
    };
}

macro_rules! weights_check {
    ($name:literal, $variant:expr, $key:literal) => {
        KernelCheck {
            name: $name,
            tols: &[(1e-5, 1e-4)],
            shapes: WEIGHTS,
            extra_shapes: &[],
            inputs: weight_inputs,
            run: |d, s, x| Ok(vec![ops::pgpo_weights(&up(d, &x.f[0], s)?, &up(d, &x.f[1], s)?, &weight_config($variant))?]),
            reference: |s, x| weight_ref(s, x, $key),
        }
    };
}

pub fn all() -> Vec<KernelCheck> {
    vec![
        KernelCheck {
            name: "kl_dual",
            // logp_clean, logp_blind, exact KL, k3.
            tols: &[(5e-6, 5e-6), (5e-6, 5e-6), (5e-6, 1e-4), (1e-6, 1e-5)],
            shapes: KL,
            extra_shapes: &[],
            inputs: kl_inputs,
            run: kl_run,
            reference: kl_ref,
        },
        weights_check!("pgpo_weights", Variant::Paper, "paper"),
        weights_check!("pgpo_weights_quantile", Variant::Quantile, "quantile"),
        weights_check!("pgpo_weights_floor", Variant::Floor, "floor"),
        weights_check!("pgpo_weights_no_norm", Variant::NoNorm, "no-norm"),
        policy_check!("policy_loss", false),
        policy_check!("policy_loss_ref_kl", true),
    ]
}
