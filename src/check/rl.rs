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

const KL: &[&[usize]] = &[&[1, 1], &[3, 7], &[5, 1000], &[2, 5000], &[70, 300]];
const TEMP: f32 = 0.7;

fn kl_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (n, v) = (s[0], s[1]);
    let clean = rng.vec(n * v, -4.0, 4.0);
    // The blind row is the clean row perturbed: small KL on some rows, large on others.
    let blind = clean.iter().enumerate().map(|(i, &x)| x + rng.range(-1.0, 1.0) * ((i / v) % 3) as f32).collect();
    Inputs { f: vec![clean, blind], ids: (0..n).map(|_| rng.below(v) as u32).collect() }
}

// ---- pgpo_weights: shape [B, L]; row 0 is degenerate (constant scores) ----

const WEIGHTS: &[&[usize]] = &[&[1, 1], &[3, 5], &[4, 300], &[2, 1000]];

fn weight_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (b, l) = (s[0], s[1]);
    let mut tvd = Vec::with_capacity(b * l);
    let mut mask = Vec::with_capacity(b * l);
    for row in 0..b {
        let pad = if row % 2 == 1 { l / 5 } else { 0 };
        for i in 0..l {
            // Long-tailed scores, as TVD is: most near 0, a few large.
            let u = rng.uniform();
            tvd.push(if row == 0 && b > 1 { 0.25 } else { (u * u * u * u) * 5.0 });
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

const POLICY: &[&[usize]] = &[&[1, 2], &[7, 33], &[5, 1000], &[3, 5000]];

/// f[0] logits, f[1] packed per token (old_logp, adv, weight, ref_logp).
fn policy_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (n, v) = (s[0], s[1]);
    let logits = rng.vec(n * v, -3.0, 3.0);
    let tokens: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let mut per = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        let row: Vec<f64> = logits[i * v..(i + 1) * v].iter().map(|&x| f64::from(x)).collect();
        let logp = f64::from(logits[i * v + t as usize]) - r::logsumexp(&row);
        // Ratios from 0.5 to 1.6: inside and outside both clip bounds.
        let old = logp as f32 - rng.range(-0.7, 0.47);
        let adv = if i % 3 == 0 { -rng.range(0.1, 2.0) } else { rng.range(-2.0, 2.0) };
        let weight = if i % 4 == 3 { 0.0 } else { rng.range(0.1, 1.0) };
        per.extend([old, adv, weight, logp as f32 + rng.range(-0.5, 0.5)]);
    }
    Inputs { f: vec![logits, per], ids: tokens }
}

fn policy_config(kl: bool) -> LossConfig {
    LossConfig { kl_coef: if kl { 0.05 } else { 0.0 }, temperature: 0.9, ..LossConfig::default() }
}

fn policy_run(d: &Device, s: &[usize], x: &Inputs, kl: bool) -> Result<Vec<Tensor>> {
    let col = |k: usize| x.f[1].iter().skip(k).step_by(4).copied().collect::<Vec<f32>>();
    let (old, adv, w, rf) = (col(0), col(1), col(2), col(3));
    let inputs = TokenInputs { tokens: &x.ids, old_logp: &old, adv: &adv, weight: &w, ref_logp: Some(&rf) };
    let out = ops::policy_loss(&up(d, &x.f[0], s)?, &inputs, &policy_config(kl))?;
    Ok(vec![
        out.dlogits,
        Tensor::from_vec(out.logp, &[s[0]], &Device::Cpu)?,
        Tensor::from_vec(vec![out.loss as f32], &[1], &Device::Cpu)?,
    ])
}

/// The loss in f64, and its gradient by central differences row by row (a token's loss
/// depends only on its own row of logits).
fn policy_ref(s: &[usize], x: &Inputs, kl: bool) -> Vec<Vec<f64>> {
    let (n, v) = (s[0], s[1]);
    let c = policy_config(kl);
    let t = f64::from(c.temperature);
    let row_loss = |i: usize, row: &[f64]| -> (f64, f64) {
        let z: Vec<f64> = row.iter().map(|x| x / t).collect();
        let logp = z[x.ids[i] as usize] - r::logsumexp(&z);
        let p = &x.f[1][i * 4..i * 4 + 4];
        let l = r::token_policy_loss(
            logp,
            f64::from(p[0]),
            f64::from(p[1]),
            f64::from(p[3]),
            (f64::from(c.clip_low), f64::from(c.clip_high)),
            f64::from(c.dual_clip),
            f64::from(c.kl_coef),
        );
        (f64::from(p[2]) * l, logp)
    };
    let (mut grad, mut logps, mut total) = (Vec::new(), Vec::new(), 0.0);
    for i in 0..n {
        let row = f64s(&x.f[0][i * v..(i + 1) * v]);
        let (l, logp) = row_loss(i, &row);
        total += l;
        logps.push(logp);
        grad.extend(r::finite_difference(|xs| vec![row_loss(i, &xs[0]).0], &[row], &[1.0], &[0]).remove(0));
    }
    vec![grad, logps, vec![total]]
}

macro_rules! weights_check {
    ($name:literal, $variant:expr, $key:literal) => {
        KernelCheck {
            name: $name,
            atol: 1e-5,
            rtol: 1e-4,
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
            atol: 1e-5,
            rtol: 1e-4,
            shapes: KL,
            extra_shapes: &[],
            inputs: kl_inputs,
            run: |d, s, x| {
                let o = ops::kl_dual(&up(d, &x.f[0], s)?, &up(d, &x.f[1], s)?, &x.ids, KlOptions { temperature: TEMP, d_clamp: 20.0 })?;
                Ok(vec![o.logp_clean, o.logp_blind, o.kl, o.k3])
            },
            reference: |s, x| r::kl_dual(&f64s(&x.f[0]), &f64s(&x.f[1]), &x.ids, s[1], f64::from(TEMP), 20.0).to_vec(),
        },
        weights_check!("pgpo_weights", Variant::Paper, "paper"),
        weights_check!("pgpo_weights_quantile", Variant::Quantile, "quantile"),
        weights_check!("pgpo_weights_floor", Variant::Floor, "floor"),
        weights_check!("pgpo_weights_no_norm", Variant::NoNorm, "no-norm"),
        KernelCheck {
            name: "policy_loss",
            atol: 1e-5,
            rtol: 1e-3,
            shapes: POLICY,
            extra_shapes: &[],
            inputs: policy_inputs,
            run: |d, s, x| policy_run(d, s, x, false),
            reference: |s, x| policy_ref(s, x, false),
        },
        KernelCheck {
            name: "policy_loss_ref_kl",
            atol: 1e-5,
            rtol: 1e-3,
            shapes: POLICY,
            extra_shapes: &[],
            inputs: policy_inputs,
            run: |d, s, x| policy_run(d, s, x, true),
            reference: |s, x| policy_ref(s, x, true),
        },
    ]
}
