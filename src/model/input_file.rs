//! A batch read from a safetensors file, as `pgpo forward` and the parity tests take it:
//! `input_ids` I64 [B, T]; optionally `attention_mask` I64 [B, T] (1 token, 0 padding),
//! `pixel_values` F32 [N, patch_dim] with `image_grid_thw` I64 [n, 3], and `labels` I64
//! [B, T]. Every array is checked, and errors name the tensor and the file.

use super::config::ModelConfig;
use super::inputs::ModelInputs;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::{expect_shape, TensorFile};
use crate::tensor::Tensor;
use std::path::Path;

fn bad(f: &TensorFile, name: &str, msg: String) -> Error {
    Error::input(name, format!("{} ({})", msg, f.path().display()))
}

/// The batch in `path`, checked against `config`; pixels are skipped for the blind pass.
/// Returns the inputs and the labels, if the file holds them.
pub fn read_inputs(path: &Path, config: &ModelConfig, device: &Device, blind: bool) -> Result<(ModelInputs, Option<Vec<i64>>)> {
    let f = &TensorFile::open(path)?;
    let (shape, ids) = f.i64("input_ids", 2)?;
    let (b, t) = (shape[0], shape[1]);
    // Ids past the vocabulary are refused by ModelInputs::new; here only those no u32 holds.
    let ids = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            u32::try_from(id).map_err(|_| {
                let vocab = config.text.vocab_size;
                bad(f, "input_ids", format!("id {id} at [{}, {}] is outside the vocabulary of {vocab}", i / t, i % t))
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    let mask = match f.i64_opt("attention_mask", 2)? {
        Some((s, m)) => {
            expect_shape(f.path(), "attention_mask", &s, &shape)?;
            if let Some(i) = m.iter().position(|&x| x != 0 && x != 1) {
                return Err(bad(f, "attention_mask", format!("holds {} at [{}, {}]; it must be 0 or 1", m[i], i / t, i % t)));
            }
            Some(m.iter().map(|&x| x == 1).collect())
        }
        None => None,
    };
    // 2^16 patches a side: far past any image (PIL's limit is about 13k pixels a side).
    const MAX_GRID: i64 = 1 << 16;
    let grids = match f.i64_opt("image_grid_thw", 2)? {
        Some((s, g)) => {
            if s[1] != 3 || g.iter().any(|&x| x < 1) {
                return Err(bad(f, "image_grid_thw", format!("must be [n_images, 3] of positive (t, h, w); got shape {s:?}")));
            }
            if let Some(x) = g.iter().find(|&&x| x > MAX_GRID) {
                return Err(bad(f, "image_grid_thw", format!("holds {x}; a grid side of more than {MAX_GRID} patches is no real image")));
            }
            g.chunks(3).map(|c| [c[0] as usize, c[1] as usize, c[2] as usize]).collect()
        }
        None => Vec::new(),
    };
    let pixels = match f.f32_opt("pixel_values", 2)? {
        Some(_) if blind => None,
        Some((s, p)) => {
            if let Some(i) = p.iter().position(|x| !x.is_finite()) {
                return Err(bad(f, "pixel_values", format!("holds a non-finite value at element {i}")));
            }
            Some(Tensor::from_vec(p, &s, device)?)
        }
        None => None,
    };
    if !blind && !grids.is_empty() && pixels.is_none() {
        return Err(bad(f, "pixel_values", "is missing; image_grid_thw lists images (use --blind for the pass without them)".into()));
    }
    let labels = match f.i64_opt("labels", 2)? {
        Some((s, l)) => {
            expect_shape(f.path(), "labels", &s, &shape)?;
            Some(l)
        }
        None => None,
    };
    Ok((ModelInputs::new(config, b, t, ids, mask, pixels, grids)?, labels))
}

