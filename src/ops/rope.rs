//! Rotary position embeddings (rotate-half convention) and the tables of Qwen2.5-VL's three
//! position schemes: plain 1-D, multimodal M-RoPE (3-D position ids, frequency bands split
//! between temporal, height and width by `mrope_section`), and the vision encoder's 2-D form.

use super::{fits_u32, same_device};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

/// cos and sin tables, [T, D] (shared over the batch) or [B, T, D].
#[derive(Clone, Debug)]
pub struct RopeTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

/// inv_freq[i] = theta^(-2i/dim), i < dim/2.
fn inv_freq(dim: usize, theta: f64) -> Vec<f64> {
    (0..dim / 2).map(|i| theta.powf(-((2 * i) as f64) / dim as f64)).collect()
}

/// Builds tables from per-position angles [rows, D] in f64, then rounds to f32.
fn tables(angles: Vec<f64>, shape: &[usize], device: &Device) -> Result<RopeTables> {
    let cos = angles.iter().map(|a| a.cos() as f32).collect();
    let sin = angles.iter().map(|a| a.sin() as f32).collect();
    Ok(RopeTables { cos: Tensor::from_vec(cos, shape, device)?, sin: Tensor::from_vec(sin, shape, device)? })
}

impl RopeTables {
    /// Plain 1-D RoPE: angle[t, c] = pos[t] * inv_freq[c mod D/2].
    pub fn one_d(positions: &[f32], head_dim: usize, theta: f64, device: &Device) -> Result<RopeTables> {
        if head_dim % 2 != 0 {
            return Err(Error::shape("rope", format!("head_dim {head_dim} must be even")));
        }
        let f = inv_freq(head_dim, theta);
        let h = head_dim / 2;
        let f = &f;
        let angles = positions.iter().flat_map(|&p| (0..head_dim).map(move |c| f64::from(p) * f[c % h])).collect::<Vec<_>>();
        tables(angles, &[positions.len(), head_dim], device)
    }

    /// Qwen2.5-VL M-RoPE. `positions` is [3, B, T] (temporal, height, width ids). The D/2
    /// frequencies are split into `mrope_section` bands (summing to D/2), repeated for both
    /// halves; band k takes its position from axis k % 3.
    pub fn multimodal(
        positions: &[f32],
        batch: usize,
        t: usize,
        head_dim: usize,
        mrope_section: &[usize],
        theta: f64,
        device: &Device,
    ) -> Result<RopeTables> {
        let h = head_dim / 2;
        if head_dim % 2 != 0 || mrope_section.iter().sum::<usize>() != h || positions.len() != 3 * batch * t {
            return Err(Error::shape(
                "rope",
                format!(
                    "M-RoPE needs even head_dim ({head_dim}), sections summing to {h} (got {mrope_section:?}) and [3, {batch}, {t}] positions ({} given)",
                    positions.len()
                ),
            ));
        }
        let f = inv_freq(head_dim, theta);
        // Axis of each of the D/2 frequencies (the same for both halves).
        let axis: Vec<usize> = mrope_section.iter().enumerate().flat_map(|(k, &n)| std::iter::repeat_n(k % 3, n)).collect();
        let mut angles = Vec::with_capacity(batch * t * head_dim);
        for b in 0..batch {
            for ti in 0..t {
                for c in 0..head_dim {
                    let i = c % h;
                    angles.push(f64::from(positions[(axis[i] * batch + b) * t + ti]) * f[i]);
                }
            }
        }
        tables(angles, &[batch, t, head_dim], device)
    }

    /// The vision encoder's 2-D rotary: the first D/4 frequencies (of a D/2-dim rotary) take
    /// the row (height) index, the next D/4 the column (width) index; then both halves repeat.
    pub fn vision(rows: &[f32], cols: &[f32], head_dim: usize, theta: f64, device: &Device) -> Result<RopeTables> {
        if head_dim % 4 != 0 || rows.len() != cols.len() {
            return Err(Error::shape("rope", format!("vision rotary needs head_dim divisible by 4 (got {head_dim}) and one (row, col) per patch")));
        }
        let f = inv_freq(head_dim / 2, theta);
        let q = head_dim / 4;
        let mut angles = Vec::with_capacity(rows.len() * head_dim);
        for (&r, &c) in rows.iter().zip(cols) {
            for k in 0..head_dim {
                let i = k % (head_dim / 2);
                angles.push(if i < q { f64::from(r) * f[i] } else { f64::from(c) * f[i - q] });
            }
        }
        tables(angles, &[rows.len(), head_dim], device)
    }
}

/// Rotates x [B, H, T, D] by the tables.
pub fn rope(x: &Tensor, t: &RopeTables) -> Result<Tensor> {
    apply("rope", x, t, 1.0)
}

/// Gradient of [`rope`]: the inverse rotation of dy.
pub fn rope_backward(dy: &Tensor, t: &RopeTables) -> Result<Tensor> {
    apply("rope_backward", dy, t, -1.0)
}

fn apply(op: &'static str, x: &Tensor, tab: &RopeTables, sign: f32) -> Result<Tensor> {
    same_device(op, x, &tab.cos)?;
    same_device(op, x, &tab.sin)?;
    let s = x.shape();
    if s.len() != 4 || s[3] % 2 != 0 || s[3] == 0 {
        return Err(Error::shape(op, format!("x must be [B, H, T, D] with even D, got {s:?}")));
    }
    let (b, heads, t, d) = (s[0], s[1], s[2], s[3]);
    let ts = tab.cos.shape();
    if tab.sin.shape() != ts || !(ts == [t, d] || ts == [b, t, d]) {
        return Err(Error::shape(op, format!("tables {ts:?} must be [{t}, {d}] or [{b}, {t}, {d}]")));
    }
    fits_u32(op, x.numel())?;
    if let (Some(xv), Some(c), Some(sn)) = (x.as_cpu(), tab.cos.as_cpu(), tab.sin.as_cpu()) {
        let mut out = cpu::alloc(xv.len());
        cpu::rope::rope(xv, c, sn, heads, t, d, sign, &mut out);
        return Ok(Tensor::from_cpu(out, s));
    }
    let out = Tensor::empty(s, x.device())?;
    x.device().launch(&Launch {
        family: "rope",
        kernel: "rope",
        bindings: &[(0, Buf::F32(x)), (1, Buf::F32(&tab.cos)), (2, Buf::F32(&out)), (4, Buf::F32(&tab.sin))],
        params: Params::new(&[word(x.numel()), word(t), word(d), word(heads), word(tab.cos.numel().max(1)), sign.to_bits(), 0]),
        grid: Grid::elements(x.numel(), 6),
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}
