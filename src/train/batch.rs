//! Batches for the trainer: prompts (templated, with their image patches) left-padded into
//! model inputs, and prompt + response sequences with the rows of their response tokens.

use crate::device::Device;
use crate::error::Result;
use crate::model::processor::{Processor, Prompt};
use crate::model::rope_index::rope_index;
use crate::model::{ModelConfig, ModelInputs, SharedBatch};
use crate::tensor::Tensor;

/// One task item made ready for the model.
#[derive(Clone)]
pub struct Item {
    pub prompt: Prompt,
    pub answer: String,
    /// The target response's ids (ending with the stop token) and, per token, whether it is
    /// visually grounded (synthetic task; all false for real data).
    pub target: Vec<u32>,
    pub target_grounded: Vec<bool>,
}

/// Builds items: the templated prompt and the tokenized target response of each example.
pub fn item(p: &Processor, image: &crate::image::processor::RgbImage, question: &str, answer: &str, response: &str, grounded: Option<std::ops::Range<usize>>) -> Result<Item> {
    let prompt = p.prompt(std::slice::from_ref(image), question)?;
    let (mut target, offsets) = p.chat.encode_with_offsets(response)?;
    let mut target_grounded: Vec<bool> = offsets.iter().map(|&(a, b)| grounded.as_ref().is_some_and(|g| a < g.end && b > g.start)).collect();
    target.push(p.stop_ids[0]);
    target_grounded.push(false);
    Ok(Item { prompt, answer: answer.to_string(), target, target_grounded })
}

/// Sequences `seqs[i] = prompt_i ++ tail_i` as one batch: prompts left-padded to a common
/// start of the tails, tails right-padded (masked). Returns the inputs and, for each tail
/// token, its flattened position b * T + t in the batch (the row whose logits predict it is
/// one before).
pub struct Packed {
    pub inputs: ModelInputs,
    /// Per sequence, the positions of its tail tokens.
    pub tail_positions: Vec<Vec<u32>>,
}

pub fn pack(config: &ModelConfig, prompts: &[&Prompt], tails: &[&[u32]], pad: u32, device: &Device) -> Result<Packed> {
    let b = prompts.len();
    let p_len = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let t_len = tails.iter().map(|t| t.len()).max().unwrap_or(0);
    let t = p_len + t_len;
    let mut ids = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * t);
    let mut tail_positions = Vec::with_capacity(b);
    let mut pixels = Vec::new();
    let mut grids = Vec::new();
    for (i, (p, tail)) in prompts.iter().zip(tails).enumerate() {
        let lead = p_len - p.ids.len();
        ids.extend(std::iter::repeat_n(pad, lead));
        mask.extend(std::iter::repeat_n(false, lead));
        ids.extend_from_slice(&p.ids);
        mask.extend(std::iter::repeat_n(true, p.ids.len()));
        ids.extend_from_slice(tail);
        mask.extend(std::iter::repeat_n(true, tail.len()));
        ids.extend(std::iter::repeat_n(pad, t_len - tail.len()));
        mask.extend(std::iter::repeat_n(false, t_len - tail.len()));
        tail_positions.push((0..tail.len()).map(|k| (i * t + p_len + k) as u32).collect());
        pixels.extend_from_slice(&p.pixels);
        grids.extend_from_slice(&p.grids);
    }
    let width = if grids.is_empty() { 1 } else { pixels.len() / grids.iter().map(|g| g.iter().product::<usize>()).sum::<usize>() };
    let pixels = if grids.is_empty() { None } else { Some(Tensor::from_vec(pixels, &[pixels_rows(&grids), width], device)?) };
    let inputs = ModelInputs::new(config, b, t, ids, Some(mask), pixels, grids)?;
    Ok(Packed { inputs, tail_positions })
}

fn pixels_rows(grids: &[[usize; 3]]) -> usize {
    grids.iter().map(|g| g.iter().product::<usize>()).sum()
}

/// Responses after their prompts with each distinct prompt once, for the shared-prefix passes
/// (scoring's KV cache extension and the update's `forward_shared_hidden`).
pub struct SharedPack {
    /// The distinct prompts, left-padded.
    pub prompts: ModelInputs,
    /// [R]: the distinct prompt each response follows.
    pub owner: Vec<u32>,
    /// [R, len]: response tokens right-padded with the pad id, and which are real.
    pub ids: Vec<u32>,
    pub mask: Vec<bool>,
    /// [3, R, len]: M-RoPE positions continuing each prompt's.
    pub positions: Vec<f32>,
    pub len: usize,
}

impl SharedPack {
    /// The model's view of it.
    pub fn batch(&self) -> SharedBatch<'_> {
        SharedBatch { prompts: &self.prompts, owner: &self.owner, ids: &self.ids, mask: &self.mask, positions: &self.positions, len: self.len }
    }

    /// The rows of `forward_shared_hidden`'s state that predict each response token, in the
    /// order of the responses' tokens concatenated: token 0 from its prompt's last position,
    /// token k from the response's row k - 1.
    pub fn predicting_rows(&self, tails: &[&[u32]]) -> Vec<u32> {
        let (p, tp, l) = (self.prompts.batch, self.prompts.seq, self.len);
        let mut rows = Vec::new();
        for (r, tail) in tails.iter().enumerate() {
            for k in 0..tail.len() {
                rows.push(if k == 0 { (self.owner[r] as usize * tp + tp - 1) as u32 } else { (p * tp + r * l + k - 1) as u32 });
            }
        }
        rows
    }
}

pub fn pack_shared(config: &ModelConfig, prompts: &[&Prompt], tails: &[&[u32]], pad: u32, device: &Device) -> Result<SharedPack> {
    let (unique, of) = distinct(prompts);
    let no_tail: Vec<&[u32]> = vec![&[]; unique.len()];
    let x = pack(config, &unique, &no_tail, pad, device)?.inputs;
    let next = rope_index(&x, config.image_token_id, config.vision.spatial_merge_size)?.next_positions(x.batch, x.seq);
    let (b, l) = (tails.len(), tails.iter().map(|t| t.len()).max().unwrap_or(0));
    let (mut ids, mut mask, mut positions) = (vec![pad; b * l], vec![false; b * l], vec![0f32; 3 * b * l]);
    for (r, tail) in tails.iter().enumerate() {
        for (k, &tok) in tail.iter().enumerate() {
            ids[r * l + k] = tok;
            mask[r * l + k] = true;
            for a in 0..3 {
                positions[(a * b + r) * l + k] = (next[of[r]] + k as i64) as f32;
            }
        }
    }
    Ok(SharedPack { prompts: x, owner: of.iter().map(|&o| o as u32).collect(), ids, mask, positions, len: l })
}

/// Distinct prompts (by `Prompt::same_as`) and the index of each prompt among them.
pub fn distinct<'p>(prompts: &[&'p Prompt]) -> (Vec<&'p Prompt>, Vec<usize>) {
    let mut unique: Vec<&Prompt> = Vec::new();
    let of = prompts
        .iter()
        .map(|p| match unique.iter().position(|u| u.same_as(p)) {
            Some(i) => i,
            None => {
                unique.push(p);
                unique.len() - 1
            }
        })
        .collect();
    (unique, of)
}

/// The logits rows that predict each tail token (one position earlier), flattened.
pub fn predicting_rows(tail_positions: &[Vec<u32>]) -> Vec<u32> {
    tail_positions.iter().flatten().map(|&p| p - 1).collect()
}
