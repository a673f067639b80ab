//! Qwen2_5_VLForConditionalGeneration's forward on the tape: image features scattered into
//! the image-pad positions, M-RoPE positions from `rope_index`, the decoder, the final norm,
//! and the LM head at the positions asked for. The blind pass is the same forward with every
//! image-pad token hidden from attention and the vision tower skipped.

use super::config::{ModelConfig, TextConfig};
use super::kv_cache::KvCache;
use super::decoder::{self, Context};
use super::inputs::ModelInputs;
use super::params::ParamVars;
use super::recompute::{recomputed, Recompute};
use super::rope_index::rope_index;
use super::vision::{self, VisionPlan};
use crate::autograd::{ops as ag, Var};
use crate::error::{Error, Result};
use crate::ops::{AttnOptions, RopeTables, IGNORE};

/// Which positions get logits. Computing [B, T, V] for a long prompt only to drop most of it
/// is the largest waste of a VLM forward; `Rows` computes only what is used.
#[derive(Clone, Debug, Default)]
pub enum Keep {
    /// Every position: [B * T, V].
    #[default]
    All,
    /// The given flattened positions b * T + t, in the given order: [rows.len(), V].
    Rows(Vec<u32>),
    /// The last position of every sequence: [B, V].
    Last,
}

/// The blind pass (PGPO's second forward).
#[derive(Clone, Copy, Debug, Default)]
pub struct Blind {
    /// Also hide `<|vision_start|>` and `<|vision_end|>`.
    pub hide_markers: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ForwardOptions {
    pub keep: Keep,
    /// Some: the blind pass; the vision tower does not run and pixels are not needed.
    pub blind: Option<Blind>,
    /// Whether a recorded forward keeps each block's activations or recomputes them.
    pub recompute: Recompute,
}

/// Logits [rows, V] of the positions `opts.keep` selects.
pub fn forward(pv: &ParamVars, c: &ModelConfig, x: &ModelInputs, opts: &ForwardOptions) -> Result<Var> {
    forward_cached(pv, c, x, opts, None)
}

/// The final hidden states [rows, H] (after the final norm) of the positions `opts.keep`
/// selects, for the fused-linear losses that apply the LM head (`lm_head`) chunk by chunk.
pub fn forward_hidden(pv: &ParamVars, c: &ModelConfig, x: &ModelInputs, opts: &ForwardOptions) -> Result<Var> {
    forward_cached_hidden(pv, c, x, opts, None)
}

/// The prompt's forward that also fills `cache` (empty, of x's batch) with every layer's keys
/// and values: generation's prefill.
pub fn forward_cached(pv: &ParamVars, c: &ModelConfig, x: &ModelInputs, opts: &ForwardOptions, cache: Option<&mut KvCache>) -> Result<Var> {
    ag::linear(&forward_cached_hidden(pv, c, x, opts, cache)?, lm_head(pv, c)?, None)
}

/// [`forward_cached`] up to the final hidden states.
pub fn forward_cached_hidden(pv: &ParamVars, c: &ModelConfig, x: &ModelInputs, opts: &ForwardOptions, mut cache: Option<&mut KvCache>) -> Result<Var> {
    let (b, t) = (x.batch, x.seq);
    let tc = &c.text;
    let index = rope_index(x, c.image_token_id, c.vision.spatial_merge_size)?;
    let positions: Vec<f32> = index.positions.iter().map(|&p| p as f32).collect();
    let embed = pv.get("model.embed_tokens.weight")?;
    let tables = RopeTables::multimodal(&positions, b, t, tc.head_dim(), &tc.mrope_section, tc.rope_theta, embed.value().device())?;

    let hidden = |id: u32| match opts.blind {
        Some(bl) => id == c.image_token_id || (bl.hide_markers && (id == c.vision_start_token_id || id == c.vision_end_token_id)),
        None => false,
    };
    let key_mask: Vec<f32> = x.ids.iter().zip(&x.mask).map(|(&id, &m)| if m && !hidden(id) { 1.0 } else { 0.0 }).collect();
    let attention = AttnOptions { causal: true, key_mask: Some(key_mask), ..Default::default() };
    if let Some(kv) = cache.as_deref_mut() {
        if !kv.is_empty() || kv.batch() != b {
            return Err(Error::shape("forward", format!("the prefill needs an empty cache of {b} sequences")));
        }
        let visible: Vec<bool> = x.ids.iter().zip(&x.mask).map(|(&id, &m)| m && !hidden(id)).collect();
        kv.begin(t, &visible)?;
    }

    let h = embed_inputs(pv, c, x, opts.blind.is_some(), opts.recompute)?;
    let cx = Context { batch: b, seq: t, tables: &tables, attention: &attention };
    let h = layers(h, pv, tc, &cx, cache, opts.recompute)?;
    let rows = match &opts.keep {
        Keep::All => None,
        Keep::Rows(rows) => {
            if let Some(&r) = rows.iter().find(|&&r| r as usize >= b * t) {
                return Err(Error::input("keep", format!("position {r} is outside the batch of {b} x {t}")));
            }
            Some(rows.clone())
        }
        Keep::Last => Some((0..b).map(|i| (i * t + t - 1) as u32).collect()),
    };
    final_hidden(&h, pv, c, rows.as_deref())
}

/// The decoder's input [B * T, H]: token embeddings, with the vision tower's features at the
/// image-pad positions unless the pass is blind.
pub(super) fn embed_inputs(pv: &ParamVars, c: &ModelConfig, x: &ModelInputs, blind: bool, recompute: Recompute) -> Result<Var> {
    let (b, t) = (x.batch, x.seq);
    let embed = pv.get("model.embed_tokens.weight")?;
    let mut h = ag::embedding(embed, &x.ids)?;
    if !blind && !x.grids.is_empty() {
        let pixels = x.pixels.as_ref().ok_or_else(|| Error::input("pixel_values", "is required for a forward with images (only the blind pass runs without it)"))?;
        let plan = VisionPlan::new(&c.vision, &x.grids);
        let features = vision::encode(pv, &c.vision, &plan, pixels, recompute)?;
        // Row of every position in [text embeddings; image features in window order].
        let mut k = 0;
        let rows: Vec<u32> = (0..b * t)
            .map(|i| {
                if x.mask[i] && x.ids[i] == c.image_token_id {
                    k += 1;
                    (b * t) as u32 + plan.unit_row[k - 1]
                } else {
                    i as u32
                }
            })
            .collect();
        h = ag::embedding(&ag::concat(&[&h, &features], 0)?, &rows)?;
    }
    Ok(h)
}

/// One generation step: the next token of each sequence in `cache` (`ids` [B]) at its 3-D
/// position (`positions` [3, B], the same value on every axis past the prompt); logits [B, V].
pub fn decode_step(pv: &ParamVars, c: &ModelConfig, ids: &[u32], positions: &[f32], cache: &mut KvCache) -> Result<Var> {
    let b = cache.batch();
    extend(pv, c, ids, &vec![true; b], positions, 1, cache, None)
}

/// `t` more tokens per cached sequence in one pass (`ids` and `mask` [B, t], `positions`
/// [3, B, t]), each attending to the cache and causally to the earlier new ones; logits at
/// `rows` of the [B * t] new positions (all when None). With t > 1 the cache must have
/// exactly `t` free slots, so that the new tokens end it. Teacher-forced scoring of responses
/// after a shared prompt prefix uses it; a decode step is the case t = 1.
#[allow(clippy::too_many_arguments)]
pub fn extend(pv: &ParamVars, c: &ModelConfig, ids: &[u32], mask: &[bool], positions: &[f32], t: usize, cache: &mut KvCache, rows: Option<&[u32]>) -> Result<Var> {
    ag::linear(&extend_hidden(pv, c, ids, mask, positions, t, cache, rows)?, lm_head(pv, c)?, None)
}

/// [`extend`] up to the final hidden states.
#[allow(clippy::too_many_arguments)]
pub fn extend_hidden(pv: &ParamVars, c: &ModelConfig, ids: &[u32], mask: &[bool], positions: &[f32], t: usize, cache: &mut KvCache, rows: Option<&[u32]>) -> Result<Var> {
    let b = cache.batch();
    if t == 0 || ids.len() != b * t || mask.len() != b * t || positions.len() != 3 * b * t {
        return Err(Error::shape("extend", format!("{} ids, {} mask entries and {} positions for {b} sequences of {t} tokens", ids.len(), mask.len(), positions.len())));
    }
    let tc = &c.text;
    let embed = pv.get("model.embed_tokens.weight")?;
    let tables = RopeTables::multimodal(positions, b, t, tc.head_dim(), &tc.mrope_section, tc.rope_theta, embed.value().device())?;
    let attention = cache.begin(t, mask)?;
    let cx = Context { batch: b, seq: t, tables: &tables, attention: &attention };
    let h = layers(ag::embedding(embed, ids)?, pv, tc, &cx, Some(cache), Recompute::None)?;
    final_hidden(&h, pv, c, rows)
}

fn layers(mut h: Var, pv: &ParamVars, tc: &TextConfig, cx: &Context, mut cache: Option<&mut KvCache>, recompute: Recompute) -> Result<Var> {
    // Recomputation only pays where a backward will run (a recorded pass without a cache).
    let recompute = recompute == Recompute::Layer && cache.is_none() && h.tape().is_recording();
    for i in 0..tc.num_hidden_layers {
        h = if recompute {
            let (tc, tables, attention, (batch, seq)) = (tc.clone(), cx.tables.clone(), cx.attention.clone(), (cx.batch, cx.seq));
            recomputed(&h, pv, &format!("model.layers.{i}."), move |x, p| {
                decoder::layer(x, p, i, &tc, &Context { batch, seq, tables: &tables, attention: &attention }, None)
            })?
        } else {
            decoder::layer(&h, pv, i, tc, cx, cache.as_deref_mut())?
        };
    }
    if let Some(kv) = cache {
        kv.commit(cx.seq);
    }
    Ok(h)
}

/// The final norm, at the given rows of h (all rows when None).
pub(super) fn final_hidden(h: &Var, pv: &ParamVars, c: &ModelConfig, rows: Option<&[u32]>) -> Result<Var> {
    let h = ag::rms_norm(h, pv.get("model.norm.weight")?, c.text.rms_norm_eps as f32)?;
    match rows {
        Some(rows) => ag::embedding(&h, rows),
        None => Ok(h),
    }
}

/// The LM head [V, H]: the embedding table when the two are tied.
pub fn lm_head<'p>(pv: &'p ParamVars, c: &ModelConfig) -> Result<&'p Var> {
    pv.get(if c.tie_word_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" })
}

/// transformers' causal-LM loss from logits of every position [B * T, V]: the mean
/// cross-entropy of labels shifted by one (position t predicts labels[t + 1]), ignoring -100.
pub fn lm_loss(logits: &Var, labels: &[i64], batch: usize, seq: usize) -> Result<Var> {
    if labels.len() != batch * seq || logits.shape()[0] != batch * seq {
        return Err(Error::input("labels", format!("must be [B, T] = [{batch}, {seq}] like input_ids, with logits at every position")));
    }
    let vocab = logits.shape()[1];
    let mut targets = vec![IGNORE; batch * seq];
    for b in 0..batch {
        for t in 0..seq - 1 {
            let l = labels[b * seq + t + 1];
            if l == -100 {
                continue;
            }
            if l < 0 || l as usize >= vocab {
                return Err(Error::input("labels", format!("label {l} at [{b}, {}] is neither -100 nor a token id below {vocab}", t + 1)));
            }
            targets[b * seq + t] = l as u32;
        }
    }
    ag::cross_entropy_mean(logits, &targets)
}
