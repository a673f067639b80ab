//! The trainer's peak memory, estimated before the first step from the config, the model and
//! the data's sequence lengths, and checked against what the device has. A configuration that
//! cannot fit is refused with the knob to turn, instead of dying hours in with an
//! out-of-memory error. The arithmetic follows what the code holds at each phase's peak:
//!
//! - always: weights, and AdamW's two moments;
//! - during an update: one gradient and one new value per parameter;
//! - SFT: the tape's activations for `sft.batch` prompt+answer sequences, and their logits;
//! - rollouts: the KV cache of `rl.prompts * rl.group` sequences, and one layer's prefill;
//! - RL scoring: clean and blind logits of every response token, held together for `kl_dual`;
//! - RL update: the tape's activations for `rl.mini_batch` sequences, and their logits.

use super::config::TrainConfig;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::ModelConfig;

/// Sequence sizes measured on the data.
#[derive(Clone, Copy, Debug)]
pub struct Lengths {
    /// Longest prompt, in tokens (image pads included).
    pub prompt: usize,
    /// Longest SFT target response, in tokens.
    pub target: usize,
    /// Most image patches in one prompt (before the 2x2 merge).
    pub patches: usize,
}

#[derive(Clone, Debug)]
pub struct Estimate {
    /// (what, bytes, the knobs that set it), largest phase last.
    pub parts: Vec<(&'static str, u64, &'static str)>,
    /// The largest single tensor, in bytes, and what it is.
    pub largest: (u64, &'static str, &'static str),
    pub peak: u64,
}

const F32: u64 = 4;

/// f32 values the tape keeps per token and decoder layer: the residual input, the two norm
/// outputs, q, k, v and their rotated copies, the attention output, o_proj, the MLP's gate,
/// up, SiLU-product and down outputs, and the two residual sums.
fn decoder_values_per_token(c: &ModelConfig) -> u64 {
    let t = &c.text;
    let kv = (t.num_key_value_heads * t.head_dim()) as u64;
    let (h, i) = (t.hidden_size as u64, t.intermediate_size as u64);
    9 * h + 4 * kv + 3 * i
}

fn vision_values_per_patch(c: &ModelConfig) -> u64 {
    let v = &c.vision;
    let (h, i) = (v.hidden_size as u64, v.intermediate_size as u64);
    12 * h + 3 * i
}

pub fn estimate(cfg: &TrainConfig, c: &ModelConfig, params: u64, n: Lengths) -> Estimate {
    let t = &c.text;
    let (layers, vocab, hidden) = (t.num_hidden_layers as u64, t.vocab_size as u64, t.hidden_size as u64);
    let kv = (t.num_key_value_heads * t.head_dim()) as u64;
    let (prompt, target, patches, new) = (n.prompt as u64, n.target as u64, n.patches as u64, cfg.rl.max_new_tokens as u64);
    let vision_layers = c.vision.depth as u64;
    // Activations of a batch on the tape: every decoder layer, plus the vision tower when
    // it trains (else one block at a time, freed as it goes).
    let tape = |batch: u64, seq: u64, rows: u64, vision_trains: bool| -> u64 {
        let vision = batch * patches * vision_values_per_patch(c) * if vision_trains { vision_layers } else { 1 };
        F32 * (batch * seq * (layers * decoder_values_per_token(c) + 2 * hidden) + vision + 3 * rows * vocab)
    };
    let state = F32 * params * 3;
    let update = F32 * params * 2;
    let sft = tape(cfg.sft.batch as u64, prompt + target, cfg.sft.batch as u64 * target, cfg.sft.train_vision);
    let rollouts = (cfg.rl.prompts * cfg.rl.group) as u64;
    let cache = F32 * rollouts * (prompt + new) * layers * 2 * kv;
    let prefill = F32 * rollouts * prompt * (decoder_values_per_token(c) + vocab.min(1));
    let scoring = F32 * rollouts * new * vocab * 2;
    let rl_update = tape(cfg.rl.mini_batch.min(cfg.rl.prompts * cfg.rl.group) as u64, prompt + new, cfg.rl.mini_batch as u64 * new, cfg.rl.train_vision);
    let parts = vec![
        ("weights and AdamW moments", state, "the model size"),
        ("gradients and updated values", update, "the model size"),
        ("SFT activations and logits", sft, "sft.batch"),
        ("rollout KV cache and prefill", cache + prefill, "rl.prompts, rl.group or rl.max_new_tokens"),
        ("clean and blind logits of every response token", scoring, "rl.prompts, rl.group or rl.max_new_tokens"),
        ("RL update activations and logits", rl_update, "rl.mini_batch or rl.max_new_tokens"),
    ];
    // Phases do not overlap: the peak is the standing state plus the largest phase.
    let phase = [update + sft, cache + prefill, scoring, update + rl_update].into_iter().max().unwrap_or(0);
    let peak = state + phase;
    let largest = [
        (F32 * rollouts * new * vocab, "the clean (or blind) logits of every response token", "rl.prompts, rl.group or rl.max_new_tokens"),
        (F32 * cfg.rl.mini_batch as u64 * new * vocab, "one RL mini-batch's logits", "rl.mini_batch"),
        (F32 * cfg.sft.batch as u64 * target * vocab, "one SFT batch's logits", "sft.batch"),
        (F32 * vocab * hidden, "the embedding table", "the model size"),
        (F32 * rollouts * (prompt + new) * kv, "one layer's KV cache", "rl.prompts, rl.group or rl.max_new_tokens"),
    ]
    .into_iter()
    .max_by_key(|x| x.0)
    .unwrap_or((0, "", ""));
    Estimate { parts, largest, peak }
}

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

impl Estimate {
    /// One line per part, for the log.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.parts.iter().map(|(what, b, _)| format!("{what} {}", gb(*b))).collect();
        format!("estimated peak memory {} ({})", gb(self.peak), parts.join(", "))
    }

    /// Refuses a run that cannot fit `device` (or `limit_gb`, when set), naming the knob.
    pub fn check(&self, device: &Device, limit_gb: f64) -> Result<()> {
        let budget = if limit_gb > 0.0 { Some(((limit_gb * 1e9) as u64, "memory_gb in the config")) } else { device.memory_budget() };
        let knob = |p: &[(&'static str, u64, &'static str)]| {
            p.iter().skip(2).max_by_key(|x| x.1).map(|x| (x.0, x.1, x.2)).unwrap_or(("", 0, ""))
        };
        if let Some((have, what)) = budget
            && self.peak > have
        {
            let (part, bytes, turn) = knob(&self.parts);
            let hint = if bytes * 2 < self.peak { "the model itself does not fit: use a smaller checkpoint or a device with more memory".to_string() } else { format!("lower {turn}") };
            return Err(Error::Config {
                file: "the trainer config".into(),
                field: String::new(),
                msg: format!("needs about {} at its peak but the device has {} ({what}); the largest part is {part} ({}): {hint}", gb(self.peak), gb(have), gb(bytes)),
            });
        }
        if let Some((limit, name)) = device.max_binding()
            && self.largest.0 > limit
        {
            let (bytes, what, turn) = self.largest;
            return Err(Error::Config {
                file: "the trainer config".into(),
                field: String::new(),
                msg: format!("{what} would be one buffer of {bytes} bytes, over the adapter limit {name} = {limit} bytes: lower {turn}"),
            });
        }
        Ok(())
    }
}
