//! The trainer's peak memory, estimated before the first step from the config, the model and
//! the data's sequence lengths, and checked against what the device has. A configuration that
//! cannot fit is refused with the knob to turn, instead of dying hours in with an
//! out-of-memory error. The arithmetic follows what the code holds at each phase's peak:
//!
//! - always: the trained weights (f32), AdamW's two moments, and the reference policy's copy
//!   when the loss has a KL term (in the checkpoint's dtype: half the bytes for bf16);
//! - during an update: one gradient and one new value per parameter;
//! - SFT: the tape's activations for `sft.batch` prompt+answer sequences, and one row chunk
//!   of their logits and its gradient (`cross_entropy_linear`);
//! - rollouts: the KV cache of `rl.prompts * rl.group` sequences, and one layer's prefill;
//! - RL scoring: the responses' KV cache, clean and blind final hidden states of every
//!   response token, and one row chunk of both logits at a time (`kl_dual_linear`);
//! - RL update: the tape's activations for `rl.mini_batch` sequences (only each block's input
//!   with `recompute = "layer"`, plus one block's activations while it is recomputed), and
//!   one row chunk of logits and their gradient (`policy_loss_linear`).

use super::config::TrainConfig;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::{ModelConfig, Recompute};

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

/// `params` counts the trained values (f32 master copies); `stored_bytes` is the size of the
/// weights in the checkpoint's dtype, which the frozen reference policy takes.
pub fn estimate(cfg: &TrainConfig, c: &ModelConfig, params: u64, stored_bytes: u64, n: Lengths) -> Estimate {
    // In f64: products of large counts must saturate, not wrap (casts to u64 saturate).
    let f = |x: usize| x as f64;
    let t = &c.text;
    let (layers, vocab, hidden) = (f(t.num_hidden_layers), f(t.vocab_size), f(t.hidden_size));
    let kv = f(t.num_key_value_heads * t.head_dim());
    let (prompt, target, patches, new) = (f(n.prompt), f(n.target), f(n.patches), f(cfg.rl.max_new_tokens));
    let (per_token, per_patch) = (decoder_values_per_token(c) as f64, vision_values_per_patch(c) as f64);
    let bytes = |values: f64| (F32 as f64 * values) as u64;
    // Activations of a batch on the tape: every decoder layer, plus the vision tower when
    // it trains (else one block at a time, freed as it goes). Recomputed, each block keeps
    // its input and one block's activations exist at a time.
    let layered = cfg.recompute_for(params as f64) == Recompute::Layer;
    let activations = |batch: f64, seq: f64, vision_trains: bool| -> f64 {
        let depth = if vision_trains { f(c.vision.depth) } else { 1.0 };
        let (text, vision) = if layered {
            (layers * hidden + per_token, depth * f(c.vision.hidden_size) + per_patch)
        } else {
            (layers * per_token, depth * per_patch)
        };
        batch * seq * (text + 2.0 * hidden) + batch * patches * vision
    };
    // The fused-linear losses hold one chunk of [rows, V] logits and their gradient (or the
    // clean and blind logits), at most 1 GiB (`ops::Chunking::Auto`).
    let chunk = |rows: f64| (2.0 * rows * vocab).min(f64::from(1u32 << 30) / F32 as f64);
    let params = params as f64;
    // The frozen reference policy of the KL term is a second copy of the weights, stored.
    let reference = if cfg.rl.kl_coef > 0.0 { stored_bytes } else { 0 };
    let (state, update) = (bytes(3.0 * params).saturating_add(reference), bytes(2.0 * params));
    let (sft_batch, mini_batch) = (f(cfg.sft.batch), f(cfg.rl.mini_batch));
    let sft_rows = sft_batch * target;
    let sft = bytes(activations(sft_batch, prompt + target, cfg.sft.train_vision) + chunk(sft_rows) + sft_rows * hidden);
    let rollouts = f(cfg.rl.prompts) * f(cfg.rl.group);
    let cache = bytes(rollouts * (prompt + new) * layers * 2.0 * kv + rollouts * prompt * per_token);
    // Scoring runs each distinct prompt once into a KV cache, copies it to the prompt's
    // responses and extends them all in one pass (no grad: one layer's values at a time);
    // the clean and blind hidden states of every response token wait for `kl_dual_linear`.
    let (distinct, per_seq_kv) = (f(cfg.rl.prompts), (prompt + new) * layers * 2.0 * kv);
    let one_layer = (distinct * prompt).max(rollouts * new) * per_token;
    let scoring = bytes((rollouts + distinct) * per_seq_kv + one_layer + rollouts * new * hidden * 2.0 + chunk(rollouts * new));
    let rows = mini_batch.min(rollouts) * new;
    let rl_update = bytes(activations(mini_batch.min(rollouts), prompt + new, cfg.rl.train_vision) + chunk(rows) + rows * hidden);
    let parts = vec![
        ("weights, AdamW moments (and the reference policy when rl.kl_coef > 0)", state, "the model size"),
        ("gradients and updated values", update, "the model size"),
        ("SFT activations and one chunk of logits", sft, "sft.batch"),
        ("rollout KV cache and prefill", cache, "rl.prompts, rl.group or rl.max_new_tokens"),
        ("scoring: KV cache, clean and blind hidden states, one chunk of logits", scoring, "rl.prompts, rl.group or rl.max_new_tokens"),
        ("RL update activations and one chunk of logits", rl_update, "rl.mini_batch or rl.max_new_tokens (or recompute = \"layer\")"),
    ];
    // Phases do not overlap: the peak is the standing state plus the largest phase.
    let phase = [update.saturating_add(sft), cache, scoring, update.saturating_add(rl_update)].into_iter().max().unwrap_or(0);
    let peak = state.saturating_add(phase);
    let largest = [
        (bytes(vocab * hidden), "the embedding table", "the model size"),
        (bytes(rollouts * (prompt + new) * kv), "one layer's KV cache", "rl.prompts, rl.group or rl.max_new_tokens"),
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
            let hint = if bytes.saturating_mul(2) < self.peak { "the model itself does not fit: use a smaller checkpoint or a device with more memory".to_string() } else { format!("lower {turn}") };
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
