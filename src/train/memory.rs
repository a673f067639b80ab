//! The trainer's peak memory, estimated before the first step from the config, the model and
//! the data's sequence lengths, and checked against what the device has. A configuration that
//! cannot fit is refused with the knob to turn, instead of dying hours in with an
//! out-of-memory error. The arithmetic follows what the code holds at each phase's peak:
//!
//! - always: the trained weights (f32) and AdamW's two moments of them, the frozen weights
//!   in their stored dtype, and the reference policy's copy when the loss has a KL term (in
//!   the checkpoint's dtype: half the bytes for bf16);
//! - during an update: one gradient and one new value per parameter;
//! - SFT: the tape's activations for `sft.batch` prompt+answer sequences, and one row chunk
//!   of their logits and its gradient (`cross_entropy_linear`);
//! - rollouts: the KV cache of `rl.prompts * rl.group` sequences, and one layer's prefill;
//! - RL scoring: the responses' KV cache, clean and blind final hidden states of every
//!   response token, and one row chunk of both logits at a time (`kl_dual_linear`);
//! - RL update: the tape's activations for the mini-batch's distinct prompts (each runs once)
//!   and its `rl.mini_batch` responses, with each response's copy of its prompt's keys and
//!   values (only each block's input with `recompute = "layer"`, plus one block's activations
//!   while it is recomputed), and one row chunk of logits and their gradient
//!   (`policy_loss_linear`).

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
    /// Each phase's peak, the standing state included: SFT step, rollout, scoring, RL update.
    pub phases: [(&'static str, u64); 4],
    /// The largest single tensor, in bytes, and what it is.
    pub largest: (u64, &'static str, &'static str),
    pub peak: u64,
}

const F32: u64 = 4;

/// f32 values the tape keeps per token and decoder layer: the residual input, the two norm
/// outputs, q, k, v and their rotated copies, the attention output, o_proj, the MLP's gate,
/// up, SiLU-product and down outputs, and the two residual sums.
/// Values per token of one decoder layer's forward without a tape (a prefill): every
/// intermediate of the layer exists at some point, one layer at a time.
fn decoder_values_per_token_pass(c: &ModelConfig) -> u64 {
    let t = &c.text;
    let kv = (t.num_key_value_heads * t.head_dim()) as u64;
    let (h, i) = (t.hidden_size as u64, t.intermediate_size as u64);
    9 * h + 4 * kv + 3 * i
}

/// Values per token one decoder layer keeps on the tape for its backward.
/// What one decoder layer's adapters add to its tape per token: each adapter's rank-r
/// product, and with dropout the dropped copy of its input (q/k/v and gate/up share theirs
/// only without dropout).
fn lora_values_per_token(cfg: &TrainConfig, c: &ModelConfig) -> u64 {
    let Some(l) = &cfg.lora else { return 0 };
    let layer = crate::model::lora::linear_modules(c).into_iter().filter(|(m, _)| m.starts_with("model.layers.0.") && l.targets.iter().any(|t| t.selects(m)));
    layer.map(|(_, [_, inp])| (l.r + if l.dropout > 0.0 { inp } else { 0 }) as u64).sum()
}

fn decoder_values_per_token(c: &ModelConfig) -> u64 {
    let t = &c.text;
    let kv = (t.num_key_value_heads * t.head_dim()) as u64;
    let (h, i) = (t.hidden_size as u64, t.intermediate_size as u64);
    // What a layer's backward keeps per token: the two norms' inputs and outputs, q, k, v
    // and the attention output (rotated and permuted: only the inputs of the next op stay),
    // o_proj's input, and the MLP's gate, up and SwiGLU output.
    7 * h + 2 * kv + 3 * i
}

fn vision_values_per_patch(c: &ModelConfig) -> u64 {
    let v = &c.vision;
    let (h, i) = (v.hidden_size as u64, v.intermediate_size as u64);
    12 * h + 3 * i
}

/// The model's size as the trainer holds it.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Values of all parameters (what `recompute`'s default goes by).
    pub values: u64,
    /// Values of the trained parameters (f32 master copies, each with AdamW's two moments).
    pub trained: u64,
    /// Bytes of the frozen parameters, in their stored dtype (no optimizer state).
    pub frozen_bytes: u64,
    /// Bytes of all weights in the checkpoint's dtype: the frozen reference policy's copy.
    pub stored_bytes: u64,
}

/// What sets the fused losses' row chunk (`ops::Chunking::Auto`): the device's free memory
/// when the run starts and its largest binding, in bytes (None: unknown, no limit).
#[derive(Clone, Copy, Debug, Default)]
pub struct ChunkLimits {
    pub free: Option<u64>,
    pub max_binding: Option<u64>,
}

impl ChunkLimits {
    pub fn of(device: &Device) -> ChunkLimits {
        ChunkLimits { free: device.memory_budget().map(|b| b.0), max_binding: device.max_binding().map(|b| b.0) }
    }
}

pub fn estimate(cfg: &TrainConfig, c: &ModelConfig, sizes: Sizes, n: Lengths, limits: ChunkLimits) -> Estimate {
    let (params, stored_bytes) = (sizes.trained, sizes.stored_bytes);
    // In f64: products of large counts must saturate, not wrap (casts to u64 saturate).
    let f = |x: usize| x as f64;
    let t = &c.text;
    let (layers, vocab, hidden) = (f(t.num_hidden_layers), f(t.vocab_size), f(t.hidden_size));
    let kv = f(t.num_key_value_heads * t.head_dim());
    let (prompt, target, patches, new) = (f(n.prompt), f(n.target), f(n.patches), f(cfg.rl.max_new_tokens));
    let (per_token, per_patch) = ((decoder_values_per_token(c) + lora_values_per_token(cfg, c)) as f64, vision_values_per_patch(c) as f64);
    let per_token_pass = decoder_values_per_token_pass(c) as f64;
    let bytes = |values: f64| (F32 as f64 * values) as u64;
    // Activations of a batch on the tape: every decoder layer, plus the vision tower when
    // it trains (else one block at a time, freed as it goes). Recomputed, each block keeps
    // its input and one block's activations exist at a time.
    let layered = cfg.recompute_for(sizes.values as f64) == Recompute::Layer;
    // `tokens` decoder positions, `images` prompts' patches, and `copied` positions of prompt
    // keys and values gathered for the responses that extend them (the shared prompt).
    // The fused-linear losses hold one chunk of [rows, V] logits and their gradient (or the
    // clean and blind logits), as many rows as `ops::Chunking::Auto` takes.
    let chunk = |rows: f64| {
        let per = crate::ops::row_chunks::auto_rows(rows as usize, t.vocab_size, 2, limits.free, limits.max_binding);
        2.0 * f(per) * vocab
    };
    // A training forward and backward: `tokens` decoder positions, `images` prompts' patches,
    // `copied` positions of prompt keys and values gathered for the responses that extend
    // them (the shared prompt), and the loss over `rows` response tokens. Recomputed, each
    // block keeps its input, and one block's tape exists at a time, only in the backward,
    // after the loss's chunk is gone; otherwise the whole tape is alive beside the chunk. A
    // frozen vision tower runs block by block without a tape before the decoder and only its
    // output stays: its transient is over when the decoder's tape grows.
    let activations = |tokens: f64, images: f64, copied: f64, rows: f64, vision_trains: bool| -> f64 {
        let depth = if vision_trains { f(c.vision.depth) } else { 1.0 };
        let decoder = if layered {
            tokens * (layers + 2.0) * hidden + copied * 2.0 * kv + chunk(rows).max(tokens * per_token)
        } else {
            tokens * (layers * per_token + 2.0 * hidden) + copied * layers * 2.0 * kv + chunk(rows)
        };
        let vision = images * patches * if layered && vision_trains { depth * f(c.vision.hidden_size) + per_patch } else { depth * per_patch };
        if vision_trains { decoder + vision } else { decoder.max(vision) }
    };
    // A pass without a tape over `images` prompts' patches: one vision block at a time.
    let vision_pass = |images: f64| images * patches * per_patch;
    let params = params as f64;
    // The frozen reference policy of the KL term is a second copy of the weights, stored.
    let reference = if cfg.rl.kl_coef > 0.0 { stored_bytes } else { 0 };
    let (state, update) = (bytes(3.0 * params).saturating_add(sizes.frozen_bytes).saturating_add(reference), bytes(2.0 * params));
    let (sft_batch, mini_batch) = (f(cfg.sft.batch), f(cfg.rl.mini_batch));
    let sft_rows = sft_batch * target;
    // A run without SFT steps has no SFT phase.
    let sft = if cfg.sft.steps == 0 { 0 } else { bytes(activations(sft_batch * (prompt + target), sft_batch, 0.0, sft_rows, cfg.sft.train_vision) + sft_rows * hidden) };
    let rollouts = f(cfg.rl.prompts) * f(cfg.rl.group);
    // The rollout's prefill runs every row's prompt, image included (one vision block or one
    // decoder layer at a time), then decodes into the KV cache.
    let cache = bytes(rollouts * (prompt + new) * layers * 2.0 * kv + (rollouts * prompt * per_token_pass).max(vision_pass(rollouts)));
    // Scoring runs each distinct prompt once into a KV cache, copies it to the prompt's
    // responses and extends them all in one pass (no grad: one layer's values at a time);
    // the clean and blind hidden states of every response token wait for `kl_dual_linear`.
    let (distinct, per_seq_kv) = (f(cfg.rl.prompts), (prompt + new) * layers * 2.0 * kv);
    let one_layer = ((distinct * prompt).max(rollouts * new) * per_token_pass).max(vision_pass(distinct));
    let scoring = bytes((rollouts + distinct) * per_seq_kv + one_layer + rollouts * new * hidden * 2.0 + chunk(rollouts * new));
    // A mini-batch's responses come in prompt order, G to a prompt: it spans at most
    // ceil(mini_batch / G) + 1 distinct prompts.
    let responses = mini_batch.min(rollouts);
    let prompts_in = ((responses / f(cfg.rl.group.max(1))).ceil() + 1.0).min(responses).min(f(cfg.rl.prompts));
    let rows = responses * new;
    let rl_update = bytes(activations(prompts_in * prompt + rows, prompts_in, responses * prompt, rows, cfg.rl.train_vision) + rows * hidden);
    let parts = vec![
        ("weights, AdamW moments (and the reference policy when rl.kl_coef > 0)", state, "the model size"),
        ("gradients and updated values", update, "the model size"),
        ("SFT activations and one chunk of logits", sft, "sft.batch"),
        ("rollout KV cache and prefill", cache, "rl.prompts, rl.group or rl.max_new_tokens"),
        ("scoring: KV cache, clean and blind hidden states, one chunk of logits", scoring, "rl.prompts, rl.group or rl.max_new_tokens"),
        ("RL update activations and one chunk of logits", rl_update, "rl.mini_batch or rl.max_new_tokens (or recompute = \"layer\")"),
    ];
    // Phases do not overlap: the peak is the standing state plus the largest phase. A
    // training step's bound: its activations, the LM head's gradient (formed first, while
    // they are all held), and the gradients and updated values (the backward frees each
    // layer's activations as it forms that layer's gradients, so both are never whole at
    // once, but which way they trade depends on the shapes).
    // The LM head's gradient (one [V, H] f32 buffer), unless the head is frozen (LoRA).
    let head = if c.tie_word_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" };
    let head_grad = if cfg.trains(head) { bytes(vocab * hidden) } else { 0 };
    let step = |acts: u64| acts.saturating_add(head_grad).saturating_add(update);
    let phases = [
        ("SFT step", if cfg.sft.steps > 0 { state.saturating_add(step(sft)) } else { 0 }),
        ("rollout", state.saturating_add(cache)),
        ("scoring", state.saturating_add(scoring)),
        ("RL update", state.saturating_add(step(rl_update))),
    ];
    let peak = phases.iter().map(|p| p.1).max().unwrap_or(0);
    let largest = [
        (bytes(vocab * hidden), "the embedding table", "the model size"),
        (bytes(rollouts * (prompt + new) * kv), "one layer's KV cache", "rl.prompts, rl.group or rl.max_new_tokens"),
    ]
    .into_iter()
    .max_by_key(|x| x.0)
    .unwrap_or((0, "", ""));
    Estimate { parts, phases, largest, peak }
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
