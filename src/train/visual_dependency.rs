//! The token visual dependency of responses, as the trainer scores it: the clean and the blind
//! final hidden states of every response token from two teacher-forced passes (no grad; the
//! blind pass hides the image tokens from attention and skips the vision tower), and
//! `kl_dual_linear` of the two through the LM head (k3 and the exact KL, no [N, V] logits).
//! `pgpo tvd` runs this same code, so it can be checked against transformers.

use super::batch;
use crate::device::Device;
use crate::error::Result;
use crate::model::processor::Prompt;
use crate::model::{extend_hidden, forward_cached_hidden, lm_head, Blind, ForwardOptions, Keep, KvCache, ModelConfig, ParamVars};
use crate::ops::{self, Chunking, KlDual, KlOptions};
use crate::tensor::Tensor;
use crate::backend::transfers::Transfers;
use std::time::Instant;

/// What scoring needs besides the weights.
pub struct Scoring<'a> {
    pub config: &'a ModelConfig,
    pub device: &'a Device,
    /// Fills the left padding of the prompts and the right padding of the responses.
    pub pad_id: u32,
    /// Also hide `<|vision_start|>`/`<|vision_end|>` in the blind pass.
    pub hide_markers: bool,
    /// Clamp of d = logp_blind - logp_clean in k3.
    pub d_clamp: f32,
}

/// The scores and the seconds of the clean pass and of the blind pass with `kl_dual`.
pub struct Scored {
    pub kl: KlDual,
    pub time_clean: f64,
    pub time_blind: f64,
    /// The clean pass's host-device traffic.
    pub moved_clean: Transfers,
}

/// Scores `tails[r]`, the response to `prompts[r]`: per response token (all responses
/// concatenated), the log-probs of the token with and without the image, k3 and the exact KL.
///
/// Responses to the same prompt share its prefix: each pass runs each distinct prompt once
/// into a KV cache (the vision tower too, in the clean pass), copies that cache to the
/// prompt's responses, and scores all response tokens in one extension of it. The logits equal
/// separate full passes (tests/train_run.rs checks both against each other, on prompts that
/// share their ids but not their image).
pub fn visual_dependency(pv: &ParamVars, s: &Scoring, prompts: &[&Prompt], tails: &[&[u32]], temperature: f32) -> Result<Scored> {
    let (config, dev) = (s.config, s.device);
    let shared = batch::pack_shared(config, prompts, tails, s.pad_id, dev)?;
    let (x, l, of) = (&shared.prompts, shared.len, &shared.owner);
    // The extension rows that predict a tail token (its previous token's); those of token 0
    // are the prompts' last positions. `order` picks each token's state from [the prompts'
    // last-position states; the extension rows].
    let (mut rows, mut order) = (Vec::new(), Vec::new());
    for (r, tail) in tails.iter().enumerate() {
        for k in 0..tail.len() {
            order.push(if k == 0 { of[r] } else { (x.batch + rows.len() - 1) as u32 });
            if k + 1 < tail.len() {
                rows.push((r * l + k) as u32);
            }
        }
    }
    let (ids, mask, positions) = (&shared.ids, &shared.mask, &shared.positions);
    let owners: Vec<usize> = of.iter().map(|&o| o as usize).collect();
    let pass = |blind: Option<Blind>| -> Result<Tensor> {
        let mut cache = KvCache::new(&config.text, x.batch, x.seq + l, dev)?;
        let first = forward_cached_hidden(pv, config, x, &ForwardOptions { keep: Keep::Last, blind, ..Default::default() }, Some(&mut cache))?;
        cache.retain(&owners)?;
        let first = first.value().clone();
        let all = if rows.is_empty() {
            first
        } else {
            let rest = extend_hidden(pv, config, ids, mask, positions, l, &mut cache, Some(&rows))?;
            ops::concat(&[&first, rest.value()], 0)?
        };
        ops::gather(&all, &order)
    };
    let tokens: Vec<u32> = tails.concat();
    let clock = Instant::now();
    let moved = Transfers::now();
    let clean = pass(None)?;
    clean.device().synchronize()?;
    let (time_clean, moved_clean) = (clock.elapsed().as_secs_f64(), moved.elapsed());
    let clock = Instant::now();
    let blind = pass(Some(Blind { hide_markers: s.hide_markers }))?;
    let kl = ops::kl_dual_linear(&clean, &blind, lm_head(pv, config)?.value(), &tokens, KlOptions { temperature, d_clamp: s.d_clamp }, Chunking::Auto)?;
    kl.k3.device().synchronize()?;
    Ok(Scored { kl, time_clean, time_blind: clock.elapsed().as_secs_f64(), moved_clean })
}
