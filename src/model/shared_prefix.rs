//! The training forward of responses that share prompts: each distinct prompt (vision tower
//! included) runs once, and its responses extend it. In every layer the responses' queries
//! attend to their prompt's keys and values, gathered per response, followed by their own
//! (causal, as a KV cache would give), and the gather's backward sums the responses'
//! gradients into the shared prefix. So G responses to one prompt cost one prompt pass and
//! G response passes instead of G full passes, with the gradients of the full passes.
//!
//! The layer state is one [P * Tp + R * L, H] matrix, prompt rows then response rows, so a
//! layer stays one block for recomputation (`recompute = "layer"`).

use super::config::{ModelConfig, TextConfig};
use super::decoder::{self, Context};
use super::forward::{embed_inputs, final_hidden};
use super::inputs::ModelInputs;
use super::params::ParamVars;
use super::recompute::{recomputed, Recompute};
use super::rope_index::rope_index;
use crate::autograd::{ops as ag, Var};
use crate::error::{Error, Result};
use crate::ops::{AttnOptions, RopeTables};

/// Responses after shared prompts.
pub struct SharedBatch<'a> {
    /// The P distinct prompts, left-padded to Tp (`train::batch::pack` with empty tails).
    pub prompts: &'a ModelInputs,
    /// [R]: the prompt each response extends.
    pub owner: &'a [u32],
    /// [R, L]: the response tokens, right-padded to L.
    pub ids: &'a [u32],
    /// [R, L]: true for a real token.
    pub mask: &'a [bool],
    /// [3, R, L]: the M-RoPE positions, continuing each prompt's (`RopeIndex::next_positions`).
    pub positions: &'a [f32],
    pub len: usize,
}

/// What every layer needs besides its input, owned, so a recomputed layer can keep it.
#[derive(Clone)]
struct Plan {
    prompts: usize,
    prompt_len: usize,
    responses: usize,
    len: usize,
    owner: Vec<u32>,
    prompt_tables: RopeTables,
    prompt_attention: AttnOptions,
    tail_tables: RopeTables,
    tail_attention: AttnOptions,
}

/// The final hidden states [rows.len(), H] at `rows` of the state: prompt p's position t is
/// row p * Tp + t, response r's token k is row P * Tp + r * L + k.
pub fn forward_shared_hidden(pv: &ParamVars, c: &ModelConfig, s: &SharedBatch, rows: &[u32], recompute: Recompute) -> Result<Var> {
    let x = s.prompts;
    let (p, tp, r, l) = (x.batch, x.seq, s.owner.len(), s.len);
    if s.ids.len() != r * l || s.mask.len() != r * l || s.positions.len() != 3 * r * l {
        return Err(Error::shape("forward_shared", format!("{} ids, {} mask entries and {} positions for {r} responses of {l} tokens", s.ids.len(), s.mask.len(), s.positions.len())));
    }
    if let Some(&o) = s.owner.iter().find(|&&o| o as usize >= p) {
        return Err(Error::input("owner", format!("prompt {o} is not among the {p} prompts")));
    }
    if let Some(&row) = rows.iter().find(|&&row| row as usize >= p * tp + r * l) {
        return Err(Error::input("rows", format!("row {row} is outside the {p} x {tp} prompt and {r} x {l} response positions")));
    }
    let tc = &c.text;
    let dev = pv.get("model.embed_tokens.weight")?.value().device().clone();
    let index = rope_index(x, c.image_token_id, c.vision.spatial_merge_size)?;
    let prompt_positions: Vec<f32> = index.positions.iter().map(|&v| v as f32).collect();
    let prompt_mask: Vec<f32> = x.mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    // A response sees its prompt's real tokens, then its own up to itself (causal with the
    // last query on the last key: Tk = Tp + L).
    let tail_mask: Vec<f32> = (0..r)
        .flat_map(|i| {
            let o = s.owner[i] as usize;
            prompt_mask[o * tp..(o + 1) * tp].iter().copied().chain(s.mask[i * l..(i + 1) * l].iter().map(|&m| if m { 1.0 } else { 0.0 }))
        })
        .collect();
    let plan = Plan {
        prompts: p,
        prompt_len: tp,
        responses: r,
        len: l,
        owner: s.owner.to_vec(),
        prompt_tables: RopeTables::multimodal(&prompt_positions, p, tp, tc.head_dim(), &tc.mrope_section, tc.rope_theta, &dev)?,
        prompt_attention: AttnOptions { causal: true, key_mask: Some(prompt_mask), ..Default::default() },
        tail_tables: RopeTables::multimodal(s.positions, r, l, tc.head_dim(), &tc.mrope_section, tc.rope_theta, &dev)?,
        tail_attention: AttnOptions { causal: true, key_mask: Some(tail_mask), ..Default::default() },
    };
    let prompt_h = embed_inputs(pv, c, x, false, recompute)?;
    let tail_h = ag::embedding(pv.get("model.embed_tokens.weight")?, s.ids)?;
    let mut h = ag::concat(&[&prompt_h, &tail_h], 0)?;
    let recompute = recompute == Recompute::Layer && h.tape().is_recording();
    for i in 0..tc.num_hidden_layers {
        h = if recompute {
            let (tc, plan) = (tc.clone(), plan.clone());
            recomputed(&h, pv, &format!("model.layers.{i}."), move |x, pv| shared_layer(x, pv, i, &tc, &plan))?
        } else {
            shared_layer(&h, pv, i, tc, &plan)?
        };
    }
    final_hidden(&h, pv, c, Some(rows))
}

/// One decoder layer over the prompt rows and the response rows of the state.
fn shared_layer(h: &Var, pv: &ParamVars, i: usize, tc: &TextConfig, plan: &Plan) -> Result<Var> {
    let (p, tp, r, l) = (plan.prompts, plan.prompt_len, plan.responses, plan.len);
    let (prompt_h, tail_h) = (ag::slice(h, 0, 0, p * tp)?, ag::slice(h, 0, p * tp, r * l)?);
    let pcx = Context { batch: p, seq: tp, tables: &plan.prompt_tables, attention: &plan.prompt_attention };
    let (q, k, v) = decoder::queries_keys_values(&prompt_h, pv, i, tc, &pcx)?;
    let prompt_out = decoder::finish(&prompt_h, &ag::attention(&q, &k, &v, &plan.prompt_attention)?, pv, i, tc, &pcx)?;
    let tcx = Context { batch: r, seq: l, tables: &plan.tail_tables, attention: &plan.tail_attention };
    let (tq, tk, tv) = decoder::queries_keys_values(&tail_h, pv, i, tc, &tcx)?;
    // Each response's copy of its prompt's keys and values [R, Hkv, Tp, D], then its own.
    let per_response = |x: &Var| -> Result<Var> {
        let s = x.shape().to_vec();
        let rows = ag::embedding(&ag::reshape(x, &[p, s[1] * s[2] * s[3]])?, &plan.owner)?;
        ag::reshape(&rows, &[r, s[1], s[2], s[3]])
    };
    let keys = ag::concat(&[&per_response(&k)?, &tk], 2)?;
    let values = ag::concat(&[&per_response(&v)?, &tv], 2)?;
    let tail_out = decoder::finish(&tail_h, &ag::attention(&tq, &keys, &values, &plan.tail_attention)?, pv, i, tc, &tcx)?;
    ag::concat(&[&prompt_out, &tail_out], 0)
}
