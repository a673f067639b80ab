//! The `3b step` row of `pgpo bench`: one PGPO step at Qwen2.5-VL-3B's exact shapes (its
//! published config.json; random bf16 weights made in the process, nothing downloaded) as a
//! 24 GB card would run it: LoRA r 64 on every decoder projection, recomputation, the
//! fused-linear losses and the shared prompt; 2 prompts of one 448 x 448 image each, G = 4,
//! 128 new tokens, every response full length (no stop id can be sampled). It reports each
//! phase's time, the process's peak resident memory over the step (`peak_rss_bytes`; the
//! weights included) and the trainer's estimate of the same step (`estimate_bytes`).
//!
//! The tokenizer and processor are the tiny default model's, and the config's special token
//! ids are set to that tokenizer's: ids are not shapes, and a random model's rewards are zero
//! whatever it says. `--quick` keeps 2 decoder layers and 2 vision blocks, to check the
//! harness in seconds.

use super::Row;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::{LoraConfig, ModelConfig, Recompute, Weights};
use crate::tensor::Dtype;
use crate::train::optimizer::{AdamW, AdamWConfig};
use crate::train::plan::QWEN2_5_VL_3B;
use crate::train::rl_step::rl_step;
use crate::train::trainer::Trainer;
use crate::train::TrainConfig;
use std::path::Path;

/// Each phase's row: its time field, and the tensor high-water mark and estimate phase
/// (`Estimate::phases`) it is held against (scoring covers log-probs and blind + TVD).
const PHASES: [(&str, &str, &str, usize); 4] = [
    ("3b step: rollout", "time_rollout", "peak_bytes_rollout", 1),
    ("3b step: log-probs", "time_logprobs", "peak_bytes_scoring", 2),
    ("3b step: blind + TVD", "time_blind_tvd", "peak_bytes_scoring", 2),
    ("3b step: update", "time_update", "peak_bytes_update", 3),
];

/// The process's resident high-water mark (VmHWM), in bytes.
fn peak_rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| Error::input("peak_rss", format!("/proc/self/status: {e}")))?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kb.map(|k| k * 1024).ok_or_else(|| Error::input("peak_rss", "no VmHWM in /proc/self/status"))
}

/// Resets the high-water mark to the current resident size (Linux 4.0+).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Four prompts' images, 448 x 448 (the synthetic task's pictures scaled up), as JSONL data:
/// two for the step, two held out.
fn data(dir: &Path) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| crate::io::bad(dir, format!("cannot create: {e}")))?;
    let mut lines = Vec::new();
    for i in 0..4 {
        let e = crate::train::synthetic::example_at(7, i);
        let (w, h, side) = (e.image.width, e.image.height, 448usize);
        let mut px = vec![0u8; side * side * 3];
        for y in 0..side {
            for x in 0..side {
                let src = ((y * h / side) * w + x * w / side) * 3;
                px[(y * side + x) * 3..(y * side + x) * 3 + 3].copy_from_slice(&e.image.data[src..src + 3]);
            }
        }
        let name = format!("{i}.png");
        image::save_buffer(dir.join(&name), &px, side as u32, side as u32, image::ExtendedColorType::Rgb8).map_err(|e| crate::io::bad(&dir.join(&name), e))?;
        lines.push(serde_json::json!({"images": [name], "problem": e.question, "answer": e.answer}).to_string());
    }
    let path = dir.join("data.jsonl");
    std::fs::write(&path, lines.join("\n")).map_err(|e| crate::io::bad(&path, e))?;
    Ok(path)
}

/// Qwen2.5-VL-3B's config.json with the special ids of the tokenizer in `tiny` (its config).
fn config_json(tiny: &Path, quick: bool) -> Result<String> {
    let read = |p: &Path| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(p).map_err(|e| crate::io::bad(p, e))?;
        serde_json::from_str(&text).map_err(|e| crate::io::bad(p, e))
    };
    let ids = read(&tiny.join("config.json"))?;
    let mut c: serde_json::Value = serde_json::from_str(QWEN2_5_VL_3B).map_err(|e| Error::input("config", e.to_string()))?;
    for key in ["bos_token_id", "eos_token_id", "vision_start_token_id", "vision_end_token_id", "vision_token_id", "image_token_id", "video_token_id"] {
        if let Some(v) = ids.get(key).or_else(|| ids.get("text_config").and_then(|t| t.get(key))) {
            c[key] = v.clone();
        }
    }
    if quick {
        c["num_hidden_layers"] = 2.into();
        c["vision_config"]["depth"] = 2.into();
        c["vision_config"]["fullatt_block_indexes"] = serde_json::json!([1]);
    }
    Ok(c.to_string())
}

pub fn rows(dev: &Device, quick: bool) -> Result<Vec<Row>> {
    let out = std::env::temp_dir().join(format!("pgpo-bench-3b-{}", std::process::id()));
    let mut cfg = TrainConfig { name: "bench-3b-step".into(), backend: dev.kind().into(), out_dir: out.clone(), ..Default::default() };
    cfg.data.jsonl = Some(data(&out.join("data"))?);
    (cfg.data.eval_size, cfg.sft.steps) = (2, 0);
    (cfg.rl.prompts, cfg.rl.group, cfg.rl.max_new_tokens, cfg.rl.mini_batch, cfg.rl.dynamic_sampling) = (2, 4, 128, 8, false);
    cfg.recompute = Some(Recompute::Layer);
    cfg.lora = Some(LoraConfig { r: 64, alpha: 64.0, ..Default::default() });
    cfg.log_timings = true;
    // The tiny default model gives the tokenizer, the processor and the data; its weights are
    // then replaced by the 3B model's.
    let mut t = Trainer::new(cfg.clone())?;
    let text = config_json(&t.model_dir, quick)?;
    let config = ModelConfig::parse(&text, "Qwen2.5-VL-3B-Instruct's config.json")?;
    t.weights = Weights::random_as(&config, &text, 1, Dtype::BF16, dev)?;
    t.weights.attach_lora(cfg.lora.as_ref().unwrap_or(&LoraConfig::default()), "random", cfg.seed)?;
    t.opt = AdamW::new(t.weights.tensors(), AdamWConfig { lr: cfg.rl.lr, max_grad_norm: Some(cfg.rl.max_grad_norm), ..Default::default() })?;
    // A steady-state step: the adapters' moments exist, as they do from the second step on
    // (the estimate is of that; a first step would be lighter by two values per adapter weight).
    let names = t.weights.names().to_vec();
    t.opt.make_moments(t.weights.tensors(), |i| crate::train::config::trained_in_phase(&names[i], false, true))?;
    // A stop id the sampler never emits (vision markers are suppressed), so every response
    // is full length.
    t.processor.stop_ids = vec![config.vision_end_token_id];
    let estimate = t.memory_estimate()?;
    let prompt = t.eval_items.first().map_or(0, |i| i.prompt.ids.len());
    reset_peak_rss();
    let clock = std::time::Instant::now();
    let stats = rl_step(&mut t, 1)?;
    dev.synchronize()?;
    let total = clock.elapsed().as_secs_f64() * 1e3;
    let rss = peak_rss()?;
    let _ = std::fs::remove_dir_all(&out);
    let c = &cfg.rl;
    let tokens = (c.prompts * c.group * c.max_new_tokens) as f64;
    let layers = if quick { "2 layers (quick)" } else { "36 layers" };
    let shape = format!("3B {layers}, LoRA r 64, {} x G {}, prompt {prompt} + {}", c.prompts, c.group, c.max_new_tokens);
    let mut rows = vec![Row { kernel: "3b step", backend: dev.name(), shape, ms: total, tokens_per_s: Some(tokens / total * 1e3), peak_rss_bytes: Some(rss), estimate_bytes: Some(estimate.peak), ..Default::default() }];
    // Per phase: the bytes tensors held at its peak (weights included; no allocator or
    // process overhead) beside the estimate of that phase.
    for (name, time, peak, phase) in PHASES {
        let ms = stats.get(time) * 1e3;
        let (peak_bytes, estimate_bytes) = (Some(stats.get(peak) as u64), Some(estimate.phases[phase].1));
        rows.push(Row { kernel: name, backend: dev.name(), shape: format!("{:.1} % of the step", 100.0 * ms / total), ms, peak_bytes, estimate_bytes, ..Default::default() });
    }
    Ok(rows)
}
