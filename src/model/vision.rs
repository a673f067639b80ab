//! The vision tower of Qwen2.5-VL: patch embedding (the Conv3d over [temporal, patch, patch]
//! is a linear map of each flattened patch), 2-D rotary, blocks of RMSNorm + attention +
//! gated MLP that attend within windows (or over the whole image in `fullatt_block_indexes`),
//! and the 2x2 patch merger.
//!
//! Windows: transformers reorders the merged units (2x2 patch blocks) window by window,
//! runs every block in that order, and restores the order after the merger. Here the patches
//! are reordered on the host before the embedding (no gradient flows into pixels), windows
//! and images become attention segments, and the decoder reads each image token from its
//! row in window order, so no reordering kernel runs at all.

use super::config::VisionConfig;
use super::params::ParamVars;
use super::recompute::{recomputed, Recompute};
use crate::autograd::{ops as ag, Var};
use crate::error::Result;
use crate::ops::{AttnOptions, RopeTables, Transpose};
use crate::tensor::Tensor;

/// theta of the vision rotary (fixed in transformers).
const THETA: f64 = 10_000.0;
const EPS: f32 = 1e-6;

/// The order of patches and the attention segments for a set of images.
pub struct VisionPlan {
    /// For each position in window order, the patch's row in `pixel_values`.
    pub patch_order: Vec<u32>,
    /// Per patch in window order: its window, and its frame (full attention).
    pub window_segments: Vec<u32>,
    pub frame_segments: Vec<u32>,
    /// Per patch in window order: its row and column in the image's patch grid.
    pub rows: Vec<f32>,
    pub cols: Vec<f32>,
    /// For each merged unit in the images' own order, its row in window order.
    pub unit_row: Vec<u32>,
}

impl VisionPlan {
    pub fn new(c: &VisionConfig, grids: &[[usize; 3]]) -> VisionPlan {
        let m = c.spatial_merge_size;
        let unit = m * m;
        let ws = (c.window_size / m / c.patch_size).max(1);
        let mut p = VisionPlan {
            patch_order: vec![],
            window_segments: vec![],
            frame_segments: vec![],
            rows: vec![],
            cols: vec![],
            unit_row: vec![],
        };
        let mut window_units: Vec<u32> = Vec::new();
        let (mut base_unit, mut base_patch, mut window, mut frame) = (0usize, 0usize, 0u32, 0u32);
        for &[t, h, w] in grids {
            let (lh, lw) = (h / m, w / m);
            for ti in 0..t {
                for wh in 0..lh.div_ceil(ws) {
                    for ww in 0..lw.div_ceil(ws) {
                        for r in wh * ws..((wh + 1) * ws).min(lh) {
                            for col in ww * ws..((ww + 1) * ws).min(lw) {
                                let u = ti * lh * lw + r * lw + col;
                                window_units.push((base_unit + u) as u32);
                                for j in 0..unit {
                                    p.patch_order.push((base_patch + u * unit + j) as u32);
                                    p.window_segments.push(window);
                                    p.frame_segments.push(frame + ti as u32);
                                    p.rows.push((r * m + j / m) as f32);
                                    p.cols.push((col * m + j % m) as f32);
                                }
                            }
                        }
                        window += 1;
                    }
                }
            }
            base_unit += t * lh * lw;
            base_patch += t * h * w;
            frame += t as u32;
        }
        p.unit_row = vec![0; window_units.len()];
        for (row, &u) in window_units.iter().enumerate() {
            p.unit_row[u as usize] = row as u32;
        }
        p
    }
}

fn block(x: &Var, pv: &ParamVars, i: usize, c: &VisionConfig, tables: &RopeTables, segments: &[u32]) -> Result<Var> {
    let b = format!("visual.blocks.{i}");
    let p = |s: &str| pv.get(&format!("{b}.{s}"));
    let (n, e, heads) = (x.shape()[0], c.hidden_size, c.num_heads);
    let hd = e / heads;
    let h = ag::rms_norm(x, p("norm1.weight")?, EPS)?;
    let qkv = pv.linear(&h, &format!("{b}.attn.qkv"), true)?;
    let qkv = ag::permute(&ag::reshape(&qkv, &[n, 3, heads, hd])?, &[1, 2, 0, 3])?;
    let part = |k: usize| ag::reshape(&ag::slice(&qkv, 0, k, 1)?, &[1, heads, n, hd]);
    let (q, k, v) = (ag::rope(&part(0)?, tables)?, ag::rope(&part(1)?, tables)?, part(2)?);
    let opts = AttnOptions { causal: false, segments: Some(segments.to_vec()), ..Default::default() };
    let o = ag::permute(&ag::attention(&q, &k, &v, &opts)?, &[0, 2, 1, 3])?;
    let o = pv.linear(&ag::reshape(&o, &[n, e])?, &format!("{b}.attn.proj"), true)?;
    let x = ag::add(x, &o)?;
    let h = ag::rms_norm(&x, p("norm2.weight")?, EPS)?;
    let gate = pv.linear(&h, &format!("{b}.mlp.gate_proj"), true)?;
    let up = pv.linear(&h, &format!("{b}.mlp.up_proj"), true)?;
    let mlp = pv.linear(&ag::swiglu(&gate, &up)?, &format!("{b}.mlp.down_proj"), true)?;
    ag::add(&x, &mlp)
}

/// Image features [units, out_hidden] in window order (see `VisionPlan::unit_row`), from
/// `pixels` [N_patches, patch_dim] in the images' own order, on any device: they are
/// reordered on the host and uploaded once, to the weights' device.
pub fn encode(pv: &ParamVars, c: &VisionConfig, plan: &VisionPlan, pixels: &Tensor, recompute: Recompute) -> Result<Var> {
    let patch = pv.get("visual.patch_embed.proj.weight")?;
    let dev = patch.value().device();
    let (n, pd) = (pixels.shape()[0], c.patch_dim());
    let host = pixels.to_vec()?;
    let mut ordered = Vec::with_capacity(host.len());
    for &r in &plan.patch_order {
        ordered.extend_from_slice(&host[r as usize * pd..(r as usize + 1) * pd]);
    }
    let x = patch.tape().constant(Tensor::from_vec(ordered, &[n, pd], dev)?);
    let w = ag::reshape(patch, &[c.hidden_size, pd])?;
    let mut x = ag::matmul(&x, &w, Transpose::NT)?;
    let hd = c.hidden_size / c.num_heads;
    let tables = RopeTables::vision(&plan.rows, &plan.cols, hd, THETA, dev)?;
    for i in 0..c.depth {
        let full = c.fullatt_block_indexes.contains(&i);
        let segments = if full { &plan.frame_segments } else { &plan.window_segments };
        x = if recompute == Recompute::Layer && x.tape().is_recording() {
            let (c, tables, segments) = (c.clone(), tables.clone(), segments.clone());
            recomputed(&x, pv, &format!("visual.blocks.{i}."), move |x, p| block(x, p, i, &c, &tables, &segments))?
        } else {
            block(&x, pv, i, c, &tables, segments)?
        };
    }
    let m = c.hidden_size * c.spatial_merge_size * c.spatial_merge_size;
    let x = ag::rms_norm(&x, pv.get("visual.merger.ln_q.weight")?, EPS)?;
    let x = ag::reshape(&x, &[n / (c.spatial_merge_size * c.spatial_merge_size), m])?;
    let x = pv.linear(&x, "visual.merger.mlp.0", true)?;
    pv.linear(&ag::gelu_erf(&x)?, "visual.merger.mlp.2", true)
}
