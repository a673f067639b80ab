//! The fused-linear losses against the unfused ops they replace, on every backend present:
//! `policy_loss_linear` on the tape against `linear` (the LM head) then `policy_loss`,
//! `cross_entropy_linear` against `linear` then `cross_entropy_mean`, and `kl_dual_linear`
//! against the head's logits then `kl_dual`. Odd sizes and chunks that do
//! not divide N. Catches a chunk written to the wrong rows, a head gradient accumulated over
//! one chunk only, and a loss that does not scale its gradients by the incoming one.

mod common;

use pgpo::autograd::{ops as ag, Tape};
use pgpo::ops::{self, Chunking, KlOptions, LossConfig, TokenInputs};
use pgpo::rng::Rng;
use pgpo::{Device, Tensor};

const N: usize = 23;
const H: usize = 11;
const V: usize = 97;

struct Data {
    hidden: Vec<f32>,
    blind: Vec<f32>,
    head: Vec<f32>,
    tokens: Vec<u32>,
    old: Vec<f32>,
    adv: Vec<f32>,
    weight: Vec<f32>,
    reference: Vec<f32>,
}

fn data() -> Data {
    let mut rng = Rng::new(7);
    let hidden = rng.vec(N * H, -1.0, 1.0);
    let blind = rng.vec(N * H, -1.0, 1.0);
    let head: Vec<f32> = rng.vec(V * H, -1.0, 1.0).into_iter().map(|x| x * 0.9).collect();
    let tokens: Vec<u32> = (0..N).map(|_| rng.below(V) as u32).collect();
    // Old log-probs around log(1/V): ratios inside and outside the clip range.
    let old: Vec<f32> = (0..N).map(|_| -(V as f32).ln() + rng.range(-1.0, 1.0)).collect();
    let adv: Vec<f32> = (0..N).map(|i| if i % 3 == 0 { -rng.range(0.2, 1.5) } else { rng.range(-1.0, 1.5) }).collect();
    let weight: Vec<f32> = (0..N).map(|i| if i % 5 == 4 { 0.0 } else { rng.range(0.1, 1.0) }).collect();
    let reference: Vec<f32> = (0..N).map(|_| -(V as f32).ln() + rng.range(-0.5, 0.5)).collect();
    Data { hidden, blind, head, tokens, old, adv, weight, reference }
}

fn close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: fused {g}, unfused {w}");
    }
}

fn policy_matches_unfused(kind: &str) {
    let Some(dev) = common::backend(kind) else { return };
    let d = data();
    let c = LossConfig { kl_coef: 0.05, temperature: 0.8, ..LossConfig::default() };
    let x = TokenInputs { tokens: &d.tokens, old_logp: &d.old, adv: &d.adv, weight: &d.weight, ref_logp: Some(&d.reference) };
    let up = |v: &[f32], s: &[usize]| Tensor::from_slice(v, s, &dev).unwrap();
    // Each loss is scaled by 1.5 before the backward, so the node's gradient scaling counts.
    let run = |fused: Option<Chunking>| {
        let tape = Tape::new();
        let (h, w) = (tape.var(up(&d.hidden, &[N, H])), tape.var(up(&d.head, &[V, H])));
        let (loss, logp, clipped) = match fused {
            Some(chunking) => {
                let (loss, out) = ag::policy_loss_linear(&h, &w, &x, &c, chunking).unwrap();
                (loss, out.out.logp, out.out.token_clipped)
            }
            None => {
                let logits = ag::linear(&h, &w, None).unwrap();
                let (loss, out) = ag::policy_loss(&logits, &x, &c).unwrap();
                (loss, out.tokens.logp, out.tokens.token_clipped)
            }
        };
        let value = loss.value().to_vec().unwrap()[0];
        let grads = tape.backward(&ag::scale(&loss, 1.5).unwrap()).unwrap();
        let g = |v| grads.get(v).expect("a gradient").to_vec().unwrap();
        (value, g(&h), g(&w), logp, clipped)
    };
    let want = run(None);
    // The signal: gradients that are not zero, tokens on both sides of the clip.
    assert!(want.1.iter().any(|&g| g.abs() > 1e-3) && want.2.iter().any(|&g| g.abs() > 1e-3), "{kind}: zero gradients");
    let clipped = want.4.iter().filter(|&&f| f > 0.0).count();
    assert!(clipped > 0 && clipped < N, "{kind}: {clipped} of {N} tokens clipped");
    for chunk in [Chunking::Rows(1), Chunking::Rows(4), Chunking::Rows(N), Chunking::Auto] {
        let got = run(Some(chunk));
        let what = format!("{kind}, {chunk:?}");
        close(&[got.0], &[want.0], 1e-5, 1e-5, &format!("{what} loss"));
        close(&got.1, &want.1, 1e-6, 1e-4, &format!("{what} dhidden"));
        close(&got.2, &want.2, 1e-6, 1e-4, &format!("{what} dhead"));
        close(&got.3, &want.3, 1e-5, 1e-5, &format!("{what} logp"));
        assert_eq!(got.4, want.4, "{what}: clip flags");
    }
}

/// SFT's loss: `cross_entropy_linear` on the tape against `linear` then `cross_entropy_mean`,
/// with ignored targets.
fn cross_entropy_matches_unfused(kind: &str) {
    let Some(dev) = common::backend(kind) else { return };
    let d = data();
    let targets: Vec<u32> = d.tokens.iter().enumerate().map(|(i, &t)| if i % 4 == 1 { ops::IGNORE } else { t }).collect();
    let up = |v: &[f32], s: &[usize]| Tensor::from_slice(v, s, &dev).unwrap();
    let run = |fused: Option<Chunking>| {
        let tape = Tape::new();
        let (h, w) = (tape.var(up(&d.hidden, &[N, H])), tape.var(up(&d.head, &[V, H])));
        let loss = match fused {
            Some(chunking) => ag::cross_entropy_linear(&h, &w, &targets, chunking).unwrap(),
            None => ag::cross_entropy_mean(&ag::linear(&h, &w, None).unwrap(), &targets).unwrap(),
        };
        let value = loss.value().to_vec().unwrap()[0];
        let grads = tape.backward(&ag::scale(&loss, 0.5).unwrap()).unwrap();
        let g = |v| grads.get(v).expect("a gradient").to_vec().unwrap();
        (value, g(&h), g(&w))
    };
    let want = run(None);
    assert!(want.1.iter().any(|&g| g.abs() > 1e-4) && want.2.iter().any(|&g| g.abs() > 1e-4), "{kind}: zero gradients");
    for chunk in [Chunking::Rows(1), Chunking::Rows(5), Chunking::Auto] {
        let got = run(Some(chunk));
        let what = format!("{kind}, {chunk:?}");
        close(&[got.0], &[want.0], 1e-5, 1e-5, &format!("{what} loss"));
        close(&got.1, &want.1, 1e-6, 1e-4, &format!("{what} dhidden"));
        close(&got.2, &want.2, 1e-6, 1e-4, &format!("{what} dhead"));
    }
}

/// A frozen head (a constant on the tape) gets no gradient and none is formed for it.
#[test]
fn frozen_head_gets_no_gradient() {
    let d = data();
    let dev = Device::Cpu;
    let x = TokenInputs { tokens: &d.tokens, old_logp: &d.old, adv: &d.adv, weight: &d.weight, ref_logp: None };
    let tape = Tape::new();
    let h = tape.var(Tensor::from_slice(&d.hidden, &[N, H], &dev).unwrap());
    let w = tape.constant(Tensor::from_slice(&d.head, &[V, H], &dev).unwrap());
    let (loss, out) = ag::policy_loss_linear(&h, &w, &x, &LossConfig::default(), Chunking::Rows(5)).unwrap();
    assert!(out.dhead.is_none() && out.dhidden.is_some());
    let grads = tape.backward(&loss).unwrap();
    assert!(grads.get(&w).is_none() && grads.get(&h).is_some());
}

fn kl_matches_unfused(kind: &str) {
    let Some(dev) = common::backend(kind) else { return };
    let d = data();
    let up = |v: &[f32], s: &[usize]| Tensor::from_slice(v, s, &dev).unwrap();
    let (clean, blind, head) = (up(&d.hidden, &[N, H]), up(&d.blind, &[N, H]), up(&d.head, &[V, H]));
    let o = KlOptions { temperature: 0.7, d_clamp: 20.0 };
    let logits = |h: &Tensor| ops::matmul(h, &head, ops::Transpose::NT).unwrap();
    let want = ops::kl_dual(&logits(&clean), &logits(&blind), &d.tokens, o).unwrap();
    let kl = want.kl.to_vec().unwrap();
    assert!(kl.iter().all(|&k| k > 1e-3), "{kind}: the clean and blind rows must differ");
    for chunk in [Chunking::Rows(1), Chunking::Rows(6), Chunking::Auto] {
        let got = ops::kl_dual_linear(&clean, &blind, &head, &d.tokens, o, chunk).unwrap();
        let what = format!("{kind}, {chunk:?}");
        for (name, g, w) in [("logp_clean", &got.logp_clean, &want.logp_clean), ("logp_blind", &got.logp_blind, &want.logp_blind), ("kl", &got.kl, &want.kl), ("k3", &got.k3, &want.k3)] {
            close(&g.to_vec().unwrap(), &w.to_vec().unwrap(), 1e-5, 1e-4, &format!("{what} {name}"));
        }
    }
}

macro_rules! on_every_backend {
    ($($kind:literal => $policy:ident, $kl:ident, $ce:ident;)*) => {$(
        #[test]
        fn $policy() {
            policy_matches_unfused($kind);
        }
        #[test]
        fn $ce() {
            cross_entropy_matches_unfused($kind);
        }
        #[test]
        fn $kl() {
            kl_matches_unfused($kind);
        }
    )*};
}

on_every_backend! {
    "cpu" => policy_loss_linear_matches_unfused_on_cpu, kl_dual_linear_matches_unfused_on_cpu, cross_entropy_linear_matches_unfused_on_cpu;
    "wgpu" => policy_loss_linear_matches_unfused_on_wgpu, kl_dual_linear_matches_unfused_on_wgpu, cross_entropy_linear_matches_unfused_on_wgpu;
    "cuda" => policy_loss_linear_matches_unfused_on_cuda, kl_dual_linear_matches_unfused_on_cuda, cross_entropy_linear_matches_unfused_on_cuda;
    "cuda-emu" => policy_loss_linear_matches_unfused_on_cuda_emu, kl_dual_linear_matches_unfused_on_cuda_emu, cross_entropy_linear_matches_unfused_on_cuda_emu;
}
