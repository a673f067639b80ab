//! One batch for the model: token ids [B, T], the attention mask (0 at left padding), and
//! optionally the images' patches and grids. Built only through `ModelInputs::new`, which
//! refuses inconsistent inputs with an error naming the tensor.

use super::config::ModelConfig;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct ModelInputs {
    pub batch: usize,
    pub seq: usize,
    /// [B * T].
    pub ids: Vec<u32>,
    /// [B * T]: true for a token, false for padding.
    pub mask: Vec<bool>,
    /// [N_patches, channels * temporal * patch * patch], images in order of appearance.
    pub pixels: Option<Tensor>,
    /// (t, h, w) in patches, one per image, in order of appearance.
    pub grids: Vec<[usize; 3]>,
}

/// The runs of image-pad tokens of one sequence: (start, length), valid tokens only.
pub(crate) fn image_runs(ids: &[u32], mask: &[bool], image_token: u32) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut prev_image = false;
    for (i, (&id, &m)) in ids.iter().zip(mask).enumerate() {
        let image = m && id == image_token;
        match (image, prev_image, runs.last_mut()) {
            (true, true, Some(run)) => run.1 += 1,
            (true, _, _) => runs.push((i, 1)),
            _ => {}
        }
        if m {
            prev_image = image;
        }
    }
    runs
}

/// How many images a sequence of valid tokens holds: one per run of image-pad tokens.
pub fn count_images(ids: &[u32], image_token: u32) -> usize {
    image_runs(ids, &vec![true; ids.len()], image_token).len()
}

impl ModelInputs {
    /// Checks every input against the config: ids inside the vocabulary, a mask of the
    /// ids' shape holding 0 or 1, patches of the config's width whose count matches the
    /// grids, grids divisible by the merge size, and one run of image-pad tokens per image
    /// with as many tokens as its merged grid. `pixels` may be absent when `blind` (the blind
    /// pass never runs the vision tower), but the grids are still needed for the positions.
    pub fn new(
        config: &ModelConfig,
        batch: usize,
        seq: usize,
        ids: Vec<u32>,
        mask: Option<Vec<bool>>,
        pixels: Option<Tensor>,
        grids: Vec<[usize; 3]>,
    ) -> Result<ModelInputs> {
        if batch == 0 || seq == 0 || ids.len() != batch * seq {
            return Err(Error::input("input_ids", format!("must be [B, T] with B, T >= 1; got {} ids for [{batch}, {seq}]", ids.len())));
        }
        let vocab = config.text.vocab_size;
        if let Some((i, &id)) = ids.iter().enumerate().find(|(_, id)| **id as usize >= vocab) {
            return Err(Error::input("input_ids", format!("id {id} at [{}, {}] is outside the vocabulary of {vocab}", i / seq, i % seq)));
        }
        let mask = mask.unwrap_or_else(|| vec![true; ids.len()]);
        if mask.len() != ids.len() {
            return Err(Error::input("attention_mask", format!("has {} entries, input_ids [{batch}, {seq}] needs {}", mask.len(), ids.len())));
        }
        if let Some(b) = (0..batch).find(|&b| !mask[b * seq..(b + 1) * seq].iter().any(|&m| m)) {
            return Err(Error::input("attention_mask", format!("sequence {b} has no token (its mask is all 0)")));
        }
        let v = &config.vision;
        let m = v.spatial_merge_size;
        for (i, g) in grids.iter().enumerate() {
            if g.iter().any(|&x| x == 0) || g[1] % m != 0 || g[2] % m != 0 {
                return Err(Error::input("image_grid_thw", format!("image {i} has grid {g:?}; t, h and w must be >= 1 and h, w multiples of the merge size {m}")));
            }
        }
        // Checked: a corrupt grid must not wrap into a small, plausible patch count.
        let patches = grids
            .iter()
            .try_fold(0usize, |acc, g| g[0].checked_mul(g[1])?.checked_mul(g[2])?.checked_add(acc))
            .ok_or_else(|| Error::input("image_grid_thw", format!("{grids:?} holds more patches than can be counted")))?;
        if let Some(p) = &pixels {
            let want = [patches, v.patch_dim()];
            if p.shape() != want {
                return Err(Error::input(
                    "pixel_values",
                    format!("has shape {:?}; the grids hold {patches} patches of {} values (channels {} x temporal {} x patch {}²), so it must be {want:?}", p.shape(), v.patch_dim(), v.in_channels, v.temporal_patch_size, v.patch_size),
                ));
            }
        }
        let (image, video) = (config.image_token_id, config.video_token_id);
        if let Some(i) = ids.iter().zip(&mask).position(|(&id, &m)| m && id == video) {
            return Err(Error::input("input_ids", format!("video token {video} at [{}, {}]: videos are not supported", i / seq, i % seq)));
        }
        if let Some(i) = ids.iter().zip(&mask).position(|(&id, &m)| !m && id == image) {
            return Err(Error::input("input_ids", format!("image-pad token {image} at [{}, {}] sits in padding (attention_mask 0)", i / seq, i % seq)));
        }
        let mut runs = Vec::new();
        for b in 0..batch {
            let r = b * seq..(b + 1) * seq;
            runs.extend(image_runs(&ids[r.clone()], &mask[r], image).into_iter().map(|(s, n)| (b, s, n)));
        }
        if runs.len() != grids.len() {
            return Err(Error::input(
                "image_grid_thw",
                format!("lists {} images but input_ids hold {} runs of image-pad tokens ({image})", grids.len(), runs.len()),
            ));
        }
        for (i, (&(b, s, n), g)) in runs.iter().zip(&grids).enumerate() {
            let want = g[0] * g[1] * g[2] / (m * m);
            if n != want {
                return Err(Error::input(
                    "input_ids",
                    format!("image {i} (sequence {b}, from position {s}) has {n} image-pad tokens; its grid {g:?} merges to {want}"),
                ));
            }
        }
        Ok(ModelInputs { batch, seq, ids, mask, pixels, grids })
    }
}
