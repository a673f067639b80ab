//! LoRA dropout: the mask is a function of (seed, element), the same on every backend, so
//! the backward and a recomputed block redraw it without storing it. Checked: the kept
//! fraction and scale, equal masks across backends and different ones across seeds, adapter
//! gradients under recomputation equal to those without (the same masks), and no dropout in
//! forwards that do not record (rollouts, scoring, evaluation).

mod common;

use pgpo::autograd::Tape;
use pgpo::model::input_file::read_inputs;
use pgpo::model::lora::is_adapter;
use pgpo::model::{forward, lm_loss, ForwardOptions, ParamVars, Recompute, Weights};
use pgpo::tensor::Tensor;
use pgpo::Device;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen")
}

/// Catches a mask that ignores the seed or the index, a wrong threshold (kept fraction) or
/// scale, and a GPU kernel whose hash differs from the CPU's.
#[test]
fn dropout_keeps_one_minus_p_scaled_and_every_backend_draws_the_same_mask() {
    let n = 100_003;
    let ones = vec![1.0f32; n];
    let cpu = pgpo::ops::dropout(&Tensor::from_slice(&ones, &[n], &Device::Cpu).unwrap(), 0.25, 42).unwrap().to_vec().unwrap();
    let kept = cpu.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
    assert!(cpu.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    let other = pgpo::ops::dropout(&Tensor::from_slice(&ones, &[n], &Device::Cpu).unwrap(), 0.25, 43).unwrap().to_vec().unwrap();
    let differ = cpu.iter().zip(&other).filter(|(a, b)| a != b).count();
    assert!(differ > n / 4, "seeds 42 and 43 share most of the mask ({differ} differ)");
    for kind in ["wgpu", "cuda", "cuda-emu"] {
        if let Some(dev) = common::backend(kind) {
            let got = pgpo::ops::dropout(&Tensor::from_slice(&ones, &[n], &dev).unwrap(), 0.25, 42).unwrap().to_vec().unwrap();
            assert_eq!(got, cpu, "{kind}: another mask than the CPU's");
        }
    }
}

/// Catches a recomputed block that draws other masks than the forward did (its gradients
/// would belong to another model), dropout that leaks into a forward that records nothing,
/// and dropout that does nothing.
#[test]
fn recomputed_blocks_redraw_the_same_masks_and_inference_drops_nothing() {
    let dev = Device::Cpu;
    let mut w = Weights::load(&dir().join("base"), &dev).unwrap();
    w.load_adapter(&dir().join("lora_list")).unwrap();
    let path = dir().join("lora_list.safetensors");
    let (inputs, labels) = read_inputs(&path, &w.config, &dev, false).unwrap();
    let labels = labels.unwrap();
    let run = |p: f32, recompute: Recompute| {
        let tape = Tape::new();
        let pv = ParamVars::new(&tape, &w, is_adapter).with_lora_dropout(p, 9);
        let logits = forward(&pv, &w.config, &inputs, &ForwardOptions { recompute, ..Default::default() }).unwrap();
        let loss = lm_loss(&logits, &labels, inputs.batch, inputs.seq).unwrap();
        let grads: Vec<Vec<f32>> = pv.gradients(&tape.backward(&loss).unwrap()).into_iter().map(|(_, g)| g.to_vec().unwrap()).collect();
        (loss.value().to_vec().unwrap()[0], grads)
    };
    let (plain_loss, plain) = run(0.0, Recompute::None);
    let (loss, dropped) = run(0.5, Recompute::None);
    let (again_loss, recomputed) = run(0.5, Recompute::Layer);
    assert_eq!(dropped.len(), 48);
    assert!((loss - plain_loss).abs() > 1e-3, "dropout 0.5 left the loss at {loss}");
    assert!((loss - again_loss).abs() <= 1e-5 * loss.abs(), "{loss} vs {again_loss} with recomputation");
    for (a, b) in dropped.iter().zip(&recomputed) {
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(scale > 0.0 && err <= 1e-4 * scale, "recomputed gradient off by {err} of {scale}");
    }
    assert_ne!(dropped, plain);
    // A forward that records nothing (rollouts, scoring) has no dropout.
    let frozen = |p: f32| {
        let tape = Tape::new();
        let pv = ParamVars::frozen(&tape, &w).with_lora_dropout(p, 9);
        forward(&pv, &w.config, &inputs, &ForwardOptions::default()).unwrap().value().to_vec().unwrap()
    };
    assert_eq!(frozen(0.5), frozen(0.0));
}
