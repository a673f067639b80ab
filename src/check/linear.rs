//! Checks of the fused-linear ops (`policy_loss_linear`, `kl_dual_linear`,
//! `cross_entropy_linear`): hidden states
//! [N, H] and an LM head [V, H] in, the reference in f64 from the exact product h · Wᵀ, and
//! for the loss the gradients of both inputs by the chain rule through the f64 logits
//! gradient (central differences, as the `policy_loss` check takes it). Each case is
//! [N, H, V, chunk]; a chunk of 0 means `Chunking::Auto`. Small chunks that do not divide N
//! cross chunk edges.

use super::cases::{f64s, rounded, up, up_as};
use super::reference as r;
use super::rl::{kl_inputs, policy_config, policy_ref_on, policy_token_inputs, D_CLAMP, TEMP};
use super::{Inputs, KernelCheck};
use crate::device::Device;
use crate::error::Result;
use crate::ops::{self, Chunking, KlOptions, LinearGrads, TokenInputs, IGNORE};
use crate::rng::Rng;
use crate::tensor::{Dtype, Tensor};

const SHAPES: &[&[usize]] = &[&[1, 1, 2, 1], &[7, 5, 33, 3], &[13, 9, 77, 4], &[37, 19, 300, 8], &[5, 16, 1000, 2], &[30, 8, 50, 0]];

fn chunking(s: &[usize]) -> Chunking {
    if s[3] == 0 { Chunking::Auto } else { Chunking::Rows(s[3]) }
}

/// h · Wᵀ in f64: [N, V].
fn logits_f64(h: &[f32], w: &[f32], n: usize, hd: usize, v: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * v];
    for i in 0..n {
        for j in 0..v {
            out[i * v + j] = (0..hd).map(|k| f64::from(h[i * hd + k]) * f64::from(w[j * hd + k])).sum();
        }
    }
    out
}

/// Hidden states and head with logits of a few units (the head is scaled by 3 / sqrt(H)).
fn hidden_and_head(s: &[usize], rng: &mut Rng, hiddens: usize) -> Vec<Vec<f32>> {
    let (n, hd, v) = (s[0], s[1], s[2]);
    let scale = 3.0 / (hd as f32).sqrt();
    let mut f: Vec<Vec<f32>> = (0..hiddens).map(|_| rng.vec(n * hd, -1.0, 1.0)).collect();
    f.push(rng.vec(v * hd, -1.0, 1.0).into_iter().map(|x| x * scale).collect());
    f
}

// ---- policy_loss_linear: f[0] hidden, f[1] head, f[2] per-token (old, adv, weight, ref) ----

fn policy_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (n, hd, v) = (s[0], s[1], s[2]);
    let mut f = hidden_and_head(s, rng, 1);
    let tokens: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let per = policy_token_inputs(&logits_f64(&f[0], &f[1], n, hd, v), &tokens, v, rng);
    f.push(per);
    Inputs { f, ids: tokens }
}

/// Outputs: dhidden, dhead, then per token logp, loss, entropy and the clip flag, then the
/// aggregates (weighted loss, clip fraction, approximate KL, mean entropy).
fn policy_run(d: &Device, s: &[usize], x: &Inputs) -> Result<Vec<Tensor>> {
    policy_run_as(d, s, x, Dtype::F32)
}

/// With the head stored as `head_dtype` (inputs rounded to it: a frozen bf16/f16 LM head).
fn policy_run_as(d: &Device, s: &[usize], x: &Inputs, head_dtype: Dtype) -> Result<Vec<Tensor>> {
    let (n, hd, v) = (s[0], s[1], s[2]);
    let col = |k: usize| x.f[2].iter().skip(k).step_by(4).copied().collect::<Vec<f32>>();
    let (old, adv, w, rf) = (col(0), col(1), col(2), col(3));
    let inputs = TokenInputs { tokens: &x.ids, old_logp: &old, adv: &adv, weight: &w, ref_logp: Some(&rf) };
    let grads = LinearGrads { hidden: true, head: true };
    let o = ops::policy_loss_linear(&up(d, &x.f[0], &[n, hd])?, &up_as(d, &x.f[1], &[v, hd], head_dtype)?, &inputs, &policy_config(true), grads, chunking(s))?;
    let host = |v: Vec<f32>| Tensor::from_vec(v.clone(), &[v.len()], &Device::Cpu);
    let t = o.out;
    let aggregates = vec![t.loss as f32, t.clip_frac as f32, t.approx_kl as f32, t.entropy as f32];
    let missing = || crate::error::Error::shape("policy_loss_linear", "a gradient asked for was not formed");
    Ok(vec![
        o.dhidden.ok_or_else(missing)?,
        o.dhead.ok_or_else(missing)?,
        host(t.logp)?,
        host(t.token_loss)?,
        host(t.token_entropy)?,
        host(t.token_clipped)?,
        host(aggregates)?,
    ])
}

fn policy_ref(s: &[usize], x: &Inputs) -> Vec<Vec<f64>> {
    let (n, hd, v) = (s[0], s[1], s[2]);
    let mut out = policy_ref_on(&logits_f64(&x.f[0], &x.f[1], n, hd, v), &x.f[2], &x.ids, v, true);
    let dlogits = out.remove(0);
    let mut all = chain(&dlogits, &x.f[0], &x.f[1], n, hd, v);
    all.extend(out);
    all
}

/// [dh, dW] from dlogits [N, V] in f64: dh = dlogits · W, dW = dlogitsᵀ · h.
fn chain(dlogits: &[f64], h: &[f32], w: &[f32], n: usize, hd: usize, v: usize) -> Vec<Vec<f64>> {
    let (h, w) = (f64s(h), f64s(w));
    let mut dh = vec![0.0; n * hd];
    let mut dw = vec![0.0; v * hd];
    for i in 0..n {
        for j in 0..v {
            let g = dlogits[i * v + j];
            for k in 0..hd {
                dh[i * hd + k] += g * w[j * hd + k];
                dw[j * hd + k] += g * h[i * hd + k];
            }
        }
    }
    vec![dh, dw]
}

// ---- cross_entropy_linear: f[0] hidden, f[1] head; every fifth target IGNORE ----

fn ce_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (n, v) = (s[0], s[2]);
    let f = hidden_and_head(s, rng, 1);
    let ids = (0..n).map(|i| if i % 5 == 3 { IGNORE } else { rng.below(v) as u32 }).collect();
    Inputs { f, ids }
}

/// Outputs: the mean loss, dhidden, dhead.
fn ce_run(d: &Device, s: &[usize], x: &Inputs) -> Result<Vec<Tensor>> {
    ce_run_as(d, s, x, Dtype::F32)
}

fn ce_run_as(d: &Device, s: &[usize], x: &Inputs, head_dtype: Dtype) -> Result<Vec<Tensor>> {
    let (n, hd, v) = (s[0], s[1], s[2]);
    let grads = LinearGrads { hidden: true, head: true };
    let o = ops::cross_entropy_linear(&up(d, &x.f[0], &[n, hd])?, &up_as(d, &x.f[1], &[v, hd], head_dtype)?, &x.ids, grads, chunking(s))?;
    let missing = || crate::error::Error::shape("cross_entropy_linear", "a gradient asked for was not formed");
    Ok(vec![Tensor::from_vec(vec![o.loss as f32], &[1], &Device::Cpu)?, o.dhidden.ok_or_else(missing)?, o.dhead.ok_or_else(missing)?])
}

fn ce_ref(s: &[usize], x: &Inputs) -> Vec<Vec<f64>> {
    let (n, hd, v) = (s[0], s[1], s[2]);
    let logits = logits_f64(&x.f[0], &x.f[1], n, hd, v);
    let valid = x.ids.iter().filter(|&&t| t != IGNORE).count() as f64;
    let (mut loss, mut dlogits) = (0.0, vec![0.0; n * v]);
    for (i, &t) in x.ids.iter().enumerate().filter(|(_, t)| **t != IGNORE) {
        let row = &logits[i * v..(i + 1) * v];
        let lse = r::logsumexp(row);
        loss += (lse - row[t as usize]) / valid;
        for j in 0..v {
            dlogits[i * v + j] = ((row[j] - lse).exp() - if j == t as usize { 1.0 } else { 0.0 }) / valid;
        }
    }
    let mut out = vec![vec![loss]];
    out.extend(chain(&dlogits, &x.f[0], &x.f[1], n, hd, v));
    out
}

// ---- kl_dual_linear: f[0] clean hidden, f[1] blind hidden, f[2] head ----

fn kl_inputs_linear(s: &[usize], rng: &mut Rng) -> Inputs {
    let (n, v) = (s[0], s[2]);
    let f = hidden_and_head(s, rng, 2);
    // Tokens as kl_dual's check draws them; its logits are not used.
    let ids = kl_inputs(&[n, v], rng).ids;
    Inputs { f, ids }
}

fn kl_run(d: &Device, s: &[usize], x: &Inputs) -> Result<Vec<Tensor>> {
    kl_run_as(d, s, x, Dtype::F32)
}

fn kl_run_as(d: &Device, s: &[usize], x: &Inputs, head_dtype: Dtype) -> Result<Vec<Tensor>> {
    let (n, hd, v) = (s[0], s[1], s[2]);
    let o = ops::kl_dual_linear(
        &up(d, &x.f[0], &[n, hd])?,
        &up(d, &x.f[1], &[n, hd])?,
        &up_as(d, &x.f[2], &[v, hd], head_dtype)?,
        &x.ids,
        KlOptions { temperature: TEMP, d_clamp: D_CLAMP },
        chunking(s),
    )?;
    Ok(vec![o.logp_clean, o.logp_blind, o.kl, o.k3])
}

fn kl_ref(s: &[usize], x: &Inputs) -> Vec<Vec<f64>> {
    let (n, hd, v) = (s[0], s[1], s[2]);
    let (clean, blind) = (logits_f64(&x.f[0], &x.f[2], n, hd, v), logits_f64(&x.f[1], &x.f[2], n, hd, v));
    r::kl_dual(&clean, &blind, &x.ids, v, f64::from(TEMP), f64::from(D_CLAMP)).to_vec()
}

pub fn all() -> Vec<KernelCheck> {
    let base = base();
    let (policy, ce, kl) = (&base[0], &base[1], &base[2]);
    // The same checks with the LM head stored in bf16 and f16, as a frozen published head.
    let half = vec![
        KernelCheck { name: "policy_loss_linear_bf16", inputs: |s, r| rounded(policy_inputs(s, r), 1, Dtype::BF16), run: |d, s, x| policy_run_as(d, s, x, Dtype::BF16), ..*policy },
        KernelCheck { name: "policy_loss_linear_f16", inputs: |s, r| rounded(policy_inputs(s, r), 1, Dtype::F16), run: |d, s, x| policy_run_as(d, s, x, Dtype::F16), ..*policy },
        KernelCheck { name: "cross_entropy_linear_bf16", inputs: |s, r| rounded(ce_inputs(s, r), 1, Dtype::BF16), run: |d, s, x| ce_run_as(d, s, x, Dtype::BF16), ..*ce },
        KernelCheck { name: "cross_entropy_linear_f16", inputs: |s, r| rounded(ce_inputs(s, r), 1, Dtype::F16), run: |d, s, x| ce_run_as(d, s, x, Dtype::F16), ..*ce },
        KernelCheck { name: "kl_dual_linear_bf16", inputs: |s, r| rounded(kl_inputs_linear(s, r), 2, Dtype::BF16), run: |d, s, x| kl_run_as(d, s, x, Dtype::BF16), ..*kl },
        KernelCheck { name: "kl_dual_linear_f16", inputs: |s, r| rounded(kl_inputs_linear(s, r), 2, Dtype::F16), run: |d, s, x| kl_run_as(d, s, x, Dtype::F16), ..*kl },
    ];
    base.into_iter().chain(half).collect()
}

fn base() -> Vec<KernelCheck> {
    vec![
        KernelCheck {
            name: "policy_loss_linear",
            // dhidden, dhead (sums over V and N of the policy_loss gradient), logp, token
            // loss, entropy, clip flag (exact), aggregates: the f32 product h · Wᵀ adds
            // about 1e-6 of rounding to each logit.
            tols: &[(2e-6, 1e-4), (2e-6, 1e-4), (1e-5, 1e-5), (1e-5, 1e-5), (1e-5, 1e-5), (0.0, 0.0), (1e-5, 1e-5)],
            shapes: SHAPES,
            extra_shapes: &[],
            inputs: policy_inputs,
            run: policy_run,
            reference: policy_ref,
        },
        KernelCheck {
            name: "cross_entropy_linear",
            // The mean loss, dhidden, dhead.
            tols: &[(1e-5, 1e-5), (1e-6, 1e-4), (1e-6, 1e-4)],
            shapes: SHAPES,
            extra_shapes: &[],
            inputs: ce_inputs,
            run: ce_run,
            reference: ce_ref,
        },
        KernelCheck {
            name: "kl_dual_linear",
            // logp_clean, logp_blind, exact KL, k3.
            tols: &[(1e-5, 1e-5), (1e-5, 1e-5), (1e-5, 1e-4), (1e-5, 1e-4)],
            shapes: SHAPES,
            extra_shapes: &[],
            inputs: kl_inputs_linear,
            run: kl_run,
            reference: kl_ref,
        },
    ]
}
