//! Qwen2.5-VL's 3-D position ids (transformers' `get_rope_index`). Over each sequence's
//! valid tokens: a text token takes (p, p, p) and advances p by 1; an image of merged grid
//! (t, h', w') takes (p + t_i, p + h_i, p + w_i) for each of its tokens, then p advances by
//! max(h', w'). Padding gets 0. The delta (largest position + 1 - valid length) lets
//! generation continue the positions of later tokens.

use super::inputs::ModelInputs;
use crate::error::{Error, Result};

pub struct RopeIndex {
    /// [3, B, T]: temporal, height, width.
    pub positions: Vec<i64>,
    /// [B].
    pub deltas: Vec<i64>,
}

impl RopeIndex {
    /// The position of the token after each of the `batch` sequences of `seq`: its largest
    /// position on any axis + 1 (transformers' `rope_deltas` continuation).
    pub fn next_positions(&self, batch: usize, seq: usize) -> Vec<i64> {
        (0..batch)
            .map(|b| (0..3).flat_map(|a| (0..seq).map(move |t| (a * batch + b) * seq + t)).map(|i| self.positions[i]).max().unwrap_or(-1) + 1)
            .collect()
    }
}

pub fn rope_index(inputs: &ModelInputs, image_token: u32, merge: usize) -> Result<RopeIndex> {
    let (b_n, t_n) = (inputs.batch, inputs.seq);
    let mut pos = vec![0i64; 3 * b_n * t_n];
    let mut deltas = Vec::with_capacity(b_n);
    let mut grids = inputs.grids.iter();
    for b in 0..b_n {
        let row = b * t_n;
        let valid: Vec<usize> = (0..t_n).filter(|&t| inputs.mask[row + t]).collect();
        let (mut p, mut k, mut max) = (0i64, 0usize, -1i64);
        let mut set = |t: usize, xyz: [i64; 3], max: &mut i64| {
            for (axis, v) in xyz.into_iter().enumerate() {
                pos[(axis * b_n + b) * t_n + t] = v;
                *max = (*max).max(v);
            }
        };
        while k < valid.len() {
            if inputs.ids[row + valid[k]] != image_token {
                set(valid[k], [p; 3], &mut max);
                p += 1;
                k += 1;
                continue;
            }
            // ModelInputs::new checked that this run matches the next grid's token count.
            let Some(g) = grids.next() else {
                return Err(Error::input("image_grid_thw", format!("row {b} has more image-pad runs than grids")));
            };
            let (gt, gh, gw) = (g[0], g[1] / merge, g[2] / merge);
            for ti in 0..gt {
                for hi in 0..gh {
                    for wi in 0..gw {
                        set(valid[k], [p + ti as i64, p + hi as i64, p + wi as i64], &mut max);
                        k += 1;
                    }
                }
            }
            p += gh.max(gw) as i64;
        }
        deltas.push(max + 1 - valid.len() as i64);
    }
    Ok(RopeIndex { positions: pos, deltas })
}
