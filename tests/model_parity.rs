//! The Qwen2.5-VL model against transformers (tests/fixtures/qwen, made by
//! scripts/make_hf_fixtures.py): clean, blind and marker-hiding blind logits at every valid
//! position, the 3-D position ids, the loss, and every parameter's gradient (vision tower
//! included), on every backend present.

mod common;

use pgpo::autograd::Tape;
use pgpo::io::TensorFile;
use pgpo::model::input_file::read_inputs;
use pgpo::model::rope_index::rope_index;
use pgpo::model::{forward, lm_loss, Blind, ForwardOptions, Keep, ParamVars, Weights};
use pgpo::Device;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen")
}

/// (case, checkpoint) from cases.json.
fn cases() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir().join("cases.json")).expect("cases.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("cases.json is JSON");
    json.as_array()
        .expect("a list")
        .iter()
        .map(|c| (c["case"].as_str().unwrap().to_string(), c["checkpoint"].as_str().unwrap().to_string()))
        .collect()
}

/// Largest |a - b| over the rows (positions) where `valid` is 1; rows are `v` wide.
fn max_diff(a: &[f32], b: &[f32], valid: &[i64], v: usize) -> f32 {
    let mut worst = 0f32;
    for (row, &ok) in valid.iter().enumerate() {
        if ok == 1 {
            for i in row * v..(row + 1) * v {
                let d = (a[i] - b[i]).abs();
                assert!(d.is_finite(), "non-finite logit at row {row}: {} vs {}", a[i], b[i]);
                worst = worst.max(d);
            }
        }
    }
    worst
}

fn logits_match(dev: &Device, tol: f32) {
    for (case, ckpt) in cases() {
        let w = Weights::load(&dir().join(&ckpt), dev).unwrap();
        // The bf16 checkpoint is read in bf16 (the half-precision matmul and gather), against
        // transformers on the same values widened to f32.
        assert_eq!(w.tensors().iter().any(|t| t.dtype() == pgpo::tensor::Dtype::BF16), ckpt == "flat_bf16", "{ckpt}");
        let path = dir().join(format!("{case}.safetensors"));
        let f = TensorFile::open(&path).unwrap();
        let v = w.config.text.vocab_size;
        let (_, valid) = f.i64("valid", 2).unwrap();
        let (_, blind_valid) = f.i64("blind_valid", 2).unwrap();
        assert!(valid.iter().sum::<i64>() > 0 && blind_valid.iter().sum::<i64>() > 0);
        let passes = [("logits", None, &valid), ("blind_logits", Some(Blind { hide_markers: false }), &blind_valid), ("blind_marker_logits", Some(Blind { hide_markers: true }), &blind_valid)];
        for (key, blind, mask) in passes {
            let (inputs, _) = read_inputs(&path, &w.config, dev, blind.is_some()).unwrap();
            let tape = Tape::new();
            let pv = ParamVars::frozen(&tape, &w);
            let logits = forward(&pv, &w.config, &inputs, &ForwardOptions { blind, keep: Keep::All, ..Default::default() }).unwrap();
            assert_eq!(tape.len(), 0, "a frozen forward records nothing");
            let got = logits.value().to_vec().unwrap();
            let (_, want) = f.f32(key, 3).unwrap();
            let d = max_diff(&got, &want, mask, v);
            println!("{case} {key} on {}: max |dlogit| {d:.2e}", dev.name());
            assert!(d <= tol, "{case} {key} on {}: max |dlogit| {d} > {tol}", dev.name());
        }
    }
}

fn loss_and_gradients_match(dev: &Device, loss_tol: f32, grad_tol: f32) {
    for (case, ckpt) in cases() {
        let w = Weights::load(&dir().join(&ckpt), dev).unwrap();
        assert_eq!(w.tensors().iter().any(|t| t.dtype() == pgpo::tensor::Dtype::BF16), ckpt == "flat_bf16", "{ckpt}");
        let path = dir().join(format!("{case}.safetensors"));
        let f = TensorFile::open(&path).unwrap();
        let (inputs, labels) = read_inputs(&path, &w.config, dev, false).unwrap();
        let tape = Tape::new();
        let pv = ParamVars::trainable(&tape, &w);
        let logits = forward(&pv, &w.config, &inputs, &ForwardOptions::default()).unwrap();
        let loss = lm_loss(&logits, &labels.unwrap(), inputs.batch, inputs.seq).unwrap();
        let grads = tape.backward(&loss).unwrap();
        let got_loss = loss.value().to_vec().unwrap()[0];
        let (_, want_loss) = f.f32("loss", 1).unwrap();
        assert!((got_loss - want_loss[0]).abs() <= loss_tol, "{case}: loss {got_loss} vs {}", want_loss[0]);
        let ours: std::collections::HashMap<String, Vec<f32>> =
            pv.gradients(&grads).into_iter().map(|(n, g)| (n, g.to_vec().unwrap())).collect();
        let mut worst = (0f32, String::new());
        for name in w.names() {
            let file_name = w.layout.naming.to_file(name);
            let (_, want) = f.f32_opt(&format!("grad.{file_name}"), w.get(name).unwrap().rank()).unwrap().unwrap_or_else(|| panic!("{case}: fixture lacks grad.{file_name}"));
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            // A parameter the loss does not reach (the vision tower of a text-only batch) has
            // no gradient here and a zero one in torch.
            let got = ours.get(name).cloned().unwrap_or_else(|| vec![0.0; want.len()]);
            let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let rel = if scale > 0.0 { err / scale } else { err };
            assert!(rel.is_finite(), "{case}: {name} gradient is not finite");
            if rel > worst.0 {
                worst = (rel, name.clone());
            }
        }
        println!("{case} on {}: loss {got_loss:.6} (torch {:.6}), worst gradient {:.2e} ({})", dev.name(), want_loss[0], worst.0, worst.1);
        assert!(worst.0 <= grad_tol, "{case} on {}: gradient of {} off by {:.2e} of its largest entry", dev.name(), worst.1, worst.0);
    }
}

#[test]
fn rope_index_matches_transformers_get_rope_index() {
    for (case, ckpt) in cases() {
        let w = Weights::load(&dir().join(&ckpt), &Device::Cpu).unwrap();
        let path = dir().join(format!("{case}.safetensors"));
        let (inputs, _) = read_inputs(&path, &w.config, &Device::Cpu, true).unwrap();
        let (_, want) = TensorFile::open(&path).unwrap().i64("position_ids", 3).unwrap();
        let got = rope_index(&inputs, w.config.image_token_id, w.config.vision.spatial_merge_size).unwrap();
        assert_eq!(got.positions, want, "{case}");
    }
}

#[test]
fn cpu_logits_match_transformers_clean_and_blind() {
    logits_match(&Device::Cpu, 1e-4);
}

#[test]
fn cpu_loss_and_every_gradient_match_torch_autograd() {
    loss_and_gradients_match(&Device::Cpu, 1e-5, 1e-3);
}

#[test]
fn wgpu_logits_match_transformers_clean_and_blind() {
    if let Some(dev) = common::backend("wgpu") {
        logits_match(&dev, 1e-3);
    }
}

#[test]
fn wgpu_loss_and_every_gradient_match_torch_autograd() {
    if let Some(dev) = common::backend("wgpu") {
        loss_and_gradients_match(&dev, 1e-5, 1e-3);
    }
}

#[test]
fn cuda_logits_and_gradients_match_transformers() {
    if let Some(dev) = common::backend("cuda") {
        logits_match(&dev, 1e-3);
        loss_and_gradients_match(&dev, 1e-5, 1e-3);
    }
}

/// Logits at chosen rows equal the same rows of the full forward.
#[test]
fn logits_at_kept_rows_equal_those_rows_of_the_full_forward() {
    let w = Weights::load(&dir().join("base"), &Device::Cpu).unwrap();
    let path = dir().join("padded_batch.safetensors");
    let (inputs, _) = read_inputs(&path, &w.config, &Device::Cpu, false).unwrap();
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, &w);
    let full = forward(&pv, &w.config, &inputs, &ForwardOptions::default()).unwrap().value().to_vec().unwrap();
    let v = w.config.text.vocab_size;
    let rows = vec![inputs.seq + 3, 5, 2 * inputs.seq - 1];
    let keep = Keep::Rows(rows.iter().map(|&r| r as u32).collect());
    let some = forward(&pv, &w.config, &inputs, &ForwardOptions { keep, ..Default::default() }).unwrap();
    assert_eq!(some.shape(), [3, v]);
    let some = some.value().to_vec().unwrap();
    for (i, &r) in rows.iter().enumerate() {
        for j in 0..v {
            assert!((some[i * v + j] - full[r * v + j]).abs() <= 1e-5, "row {r}, column {j}");
        }
    }
    let last = forward(&pv, &w.config, &inputs, &ForwardOptions { keep: Keep::Last, ..Default::default() }).unwrap();
    assert_eq!(last.shape(), [inputs.batch, v]);
}

/// The CUDA kernels, on the CPU emulation of the CUDA execution model, run the whole model.
#[test]
fn cuda_emu_logits_and_gradients_match_transformers() {
    if let Some(dev) = common::backend("cuda-emu") {
        logits_match(&dev, 1e-3);
        loss_and_gradients_match(&dev, 1e-5, 1e-3);
    }
}
