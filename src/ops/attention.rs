//! Fused attention (flash-style) and its backward.
//! q [B, Hq, Tq, D], k and v [B, Hkv, Tk, D] with Hq a multiple of Hkv (grouped-query).

use super::{option, same_device, Need};
use crate::backend::cpu::attention::{AttnDims, AttnMasks};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

/// Largest head_dim the GPU kernels hold in registers.
pub const MAX_HEAD_DIM: usize = 128;

/// Masking and scaling. Masks are host data (they come from token layouts).
#[derive(Clone, Debug, Default)]
pub struct AttnOptions {
    /// Query i (absolute position i + Tk - Tq) sees keys up to its own position.
    pub causal: bool,
    /// Score scale; default 1/sqrt(D).
    pub scale: Option<f32>,
    /// [B, Tk], 0 hides a key from every query: left padding, and the visual tokens in the
    /// blind pass. Multiply several masks together to combine them.
    pub key_mask: Option<Vec<f32>>,
    /// [B, T] segment ids (Tq = Tk): a query sees only keys of its own segment, which gives
    /// the block-diagonal attention of cu_seqlens (vision windows, several images).
    pub segments: Option<Vec<u32>>,
}

const HIDDEN: u32 = 0x8000_0000;

fn dims(q: &Tensor, k: &Tensor, v: &Tensor, o: &AttnOptions) -> Result<AttnDims> {
    same_device("attention", q, k)?;
    same_device("attention", q, v)?;
    let (sq, sk) = (q.shape(), k.shape());
    let bad = |msg: String| Err(Error::shape("attention", msg));
    if sq.len() != 4 || sk.len() != 4 || v.shape() != sk {
        return bad(format!("q {sq:?} must be [B, Hq, Tq, D], k and v [B, Hkv, Tk, D]; got k {sk:?}, v {:?}", v.shape()));
    }
    let (b, hq, tq, d) = (sq[0], sq[1], sq[2], sq[3]);
    let (hkv, tk) = (sk[1], sk[2]);
    if sk[0] != b || sk[3] != d || hkv == 0 || hq % hkv != 0 {
        return bad(format!("q {sq:?} and k {sk:?} disagree on batch or head_dim, or Hq is not a multiple of Hkv"));
    }
    if d == 0 || (d > MAX_HEAD_DIM && !matches!(q.device(), Device::Cpu)) {
        return bad(format!("head_dim {d} must be in 1..={MAX_HEAD_DIM}"));
    }
    if o.causal && tq > tk {
        return bad(format!("causal attention needs Tq <= Tk, got {tq} > {tk}"));
    }
    if let Some(m) = &o.key_mask
        && m.len() != b * tk
    {
        return bad(format!("key_mask has {} entries, expected B * Tk = {}", m.len(), b * tk));
    }
    if let Some(s) = &o.segments {
        if tq != tk || s.len() != b * tk {
            return bad(format!("segments need Tq = Tk and B * T = {} ids, got {} (Tq {tq}, Tk {tk})", b * tk, s.len()));
        }
        if s.iter().any(|&id| id >= HIDDEN) {
            return bad("segment ids must be below 2^31".into());
        }
    }
    super::fits_u32("attention", q.numel().max(k.numel()))?;
    if let Some(scale) = o.scale {
        option("attention", "scale", scale, Need::Finite)?;
    }
    Ok(AttnDims { b, hq, hkv, tq, tk, d, causal: o.causal, scale: o.scale.unwrap_or(1.0 / (d as f32).sqrt()) })
}

/// Per-key words for the GPU kernels: segment id in the low 31 bits, HIDDEN on top.
fn keyinfo(s: &AttnDims, o: &AttnOptions) -> Vec<u32> {
    (0..s.b * s.tk)
        .map(|i| {
            let seg = o.segments.as_ref().map_or(0, |v| v[i]);
            let hidden = o.key_mask.as_ref().is_some_and(|m| m[i] == 0.0);
            seg | if hidden { HIDDEN } else { 0 }
        })
        .collect()
}

fn masks(o: &AttnOptions) -> AttnMasks<'_> {
    AttnMasks { key_mask: o.key_mask.as_deref(), segments: o.segments.as_deref() }
}

fn params(s: &AttnDims, o: &AttnOptions, rows: usize) -> Params {
    Params::new(&[
        word(s.b),
        word(s.hq),
        word(s.hkv),
        word(s.tq),
        word(s.tk),
        word(s.d),
        u32::from(s.causal),
        s.scale.to_bits(),
        u32::from(o.segments.is_some()),
        f32::NEG_INFINITY.to_bits(),
        word(rows),
        0,
    ])
}

#[derive(Clone, Copy)]
enum Pass {
    Forward,
    Dq,
    Dkv,
}

/// How the row kernels are launched. WGSL: one thread per row, 64 rows per workgroup. CUDA:
/// 8 threads per row, 32 rows per block, the kernel instantiated for the smallest head size
/// bucket (32, 64, 80, 128) that holds `d`, so each lane's share of a row is a register
/// array of fixed length (cuda/attention.cu).
struct Geometry {
    rows: usize,
    threads: u32,
    bucket: Option<usize>,
}

impl Geometry {
    fn of(dev: &Device, d: usize) -> Geometry {
        if matches!(dev.kind(), "cuda" | "cuda-emu") {
            let bucket = [32, 64, 80, 128].into_iter().find(|&b| d <= b).unwrap_or(128);
            Geometry { rows: 32, threads: 256, bucket: Some(bucket) }
        } else {
            Geometry { rows: 64, threads: 64, bucket: None }
        }
    }

    fn kernel(&self, pass: Pass) -> &'static str {
        match (pass, self.bucket) {
            (Pass::Forward, None) => "attention_forward",
            (Pass::Forward, Some(32)) => "attention_forward_d32",
            (Pass::Forward, Some(64)) => "attention_forward_d64",
            (Pass::Forward, Some(80)) => "attention_forward_d80",
            (Pass::Forward, Some(_)) => "attention_forward_d128",
            (Pass::Dq, None) => "attention_backward_dq",
            (Pass::Dq, Some(32)) => "attention_backward_dq_d32",
            (Pass::Dq, Some(64)) => "attention_backward_dq_d64",
            (Pass::Dq, Some(80)) => "attention_backward_dq_d80",
            (Pass::Dq, Some(_)) => "attention_backward_dq_d128",
            (Pass::Dkv, None) => "attention_backward_dkv",
            (Pass::Dkv, Some(32)) => "attention_backward_dkv_d32",
            (Pass::Dkv, Some(64)) => "attention_backward_dkv_d64",
            (Pass::Dkv, Some(80)) => "attention_backward_dkv_d80",
            (Pass::Dkv, Some(_)) => "attention_backward_dkv_d128",
        }
    }
}

/// Returns (o [B, Hq, Tq, D], lse [B, Hq, Tq]); lse is -inf for a row that sees no key
/// (its output is 0).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<(Tensor, Tensor)> {
    let s = dims(q, k, v, opts)?;
    let lse_shape = [s.b, s.hq, s.tq];
    if let (Some(qv), Some(kv), Some(vv)) = (q.as_cpu(), k.as_cpu(), v.as_cpu()) {
        let (mut o, mut lse) = (cpu::alloc(q.numel()), cpu::alloc(s.b * s.hq * s.tq));
        cpu::attention::attention_forward(qv, kv, vv, s, masks(opts), &mut o, &mut lse);
        return Ok((Tensor::from_cpu(o, q.shape()), Tensor::from_cpu(lse, &lse_shape)));
    }
    let dev = q.device();
    let info = dev.upload_u32(&keyinfo(&s, opts))?;
    let o = Tensor::empty(q.shape(), dev)?;
    let lse = Tensor::empty(&lse_shape, dev)?;
    let g = Geometry::of(dev, s.d);
    dev.launch(&Launch {
        family: "attention",
        kernel: g.kernel(Pass::Forward),
        bindings: &[
            (0, Buf::F32(q)),
            (1, Buf::F32(k)),
            (2, Buf::F32(&o)),
            (4, Buf::F32(v)),
            (5, Buf::F32(&lse)),
            (6, Buf::U32(&info)),
        ],
        params: params(&s, opts, 0),
        grid: Grid::Xyz(word(s.tq.div_ceil(g.rows)), word(s.hq), word(s.b)),
        constants: &[],
        threads: g.threads,
    })?;
    Ok((o, lse))
}

/// Gradients (dq, dk, dv) from the forward's inputs, output, lse and the output gradient.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    opts: &AttnOptions,
) -> Result<(Tensor, Tensor, Tensor)> {
    let s = dims(q, k, v, opts)?;
    let rows = s.b * s.hq * s.tq;
    if o.shape() != q.shape() || dout.shape() != q.shape() || lse.numel() != rows {
        return Err(Error::shape(
            "attention_backward",
            format!("o {:?}, dout {:?} must match q {:?} and lse {:?} be [B, Hq, Tq]", o.shape(), dout.shape(), q.shape(), lse.shape()),
        ));
    }
    if let (Some(qv), Some(kv), Some(vv), Some(ov), Some(l), Some(g)) =
        (q.as_cpu(), k.as_cpu(), v.as_cpu(), o.as_cpu(), lse.as_cpu(), dout.as_cpu())
    {
        let mut delta = vec![0.0; rows];
        cpu::attention::attention_delta(ov, g, s.d, &mut delta);
        let (mut dq, mut dk, mut dv) = (cpu::alloc(q.numel()), cpu::alloc(k.numel()), cpu::alloc(v.numel()));
        let x = cpu::attention::BackwardInputs { q: qv, k: kv, v: vv, lse: l, delta: &delta, dout: g };
        cpu::attention::attention_backward(x, s, masks(opts), &mut dq, &mut dk, &mut dv);
        return Ok((Tensor::from_cpu(dq, q.shape()), Tensor::from_cpu(dk, k.shape()), Tensor::from_cpu(dv, v.shape())));
    }
    let dev = q.device();
    let info = dev.upload_u32(&keyinfo(&s, opts))?;
    let p = params(&s, opts, rows);
    let g = Geometry::of(dev, s.d);
    let stats = Tensor::empty(&[rows, 2], dev)?;
    dev.launch(&Launch {
        family: "attention",
        kernel: "attention_delta",
        bindings: &[(0, Buf::F32(o)), (2, Buf::F32(&stats)), (5, Buf::F32(lse)), (7, Buf::F32(dout))],
        params: p,
        grid: Grid::Rows { groups: word(rows.div_ceil(64)), slot: 11 },
        constants: &[],
        threads: 64,
    })?;
    let dq = Tensor::empty(q.shape(), dev)?;
    dev.launch(&Launch {
        family: "attention",
        kernel: g.kernel(Pass::Dq),
        bindings: &[
            (0, Buf::F32(q)),
            (1, Buf::F32(k)),
            (2, Buf::F32(&dq)),
            (4, Buf::F32(v)),
            (6, Buf::U32(&info)),
            (7, Buf::F32(dout)),
            (8, Buf::F32(&stats)),
        ],
        params: p,
        grid: Grid::Xyz(word(s.tq.div_ceil(g.rows)), word(s.hq), word(s.b)),
        constants: &[],
        threads: g.threads,
    })?;
    let dk = Tensor::empty(k.shape(), dev)?;
    let dv = Tensor::empty(v.shape(), dev)?;
    dev.launch(&Launch {
        family: "attention",
        kernel: g.kernel(Pass::Dkv),
        bindings: &[
            (0, Buf::F32(q)),
            (1, Buf::F32(k)),
            (2, Buf::F32(&dk)),
            (4, Buf::F32(v)),
            (6, Buf::U32(&info)),
            (7, Buf::F32(dout)),
            (8, Buf::F32(&stats)),
            (9, Buf::F32(&dv)),
        ],
        params: p,
        grid: Grid::Xyz(word(s.tk.div_ceil(g.rows)), word(s.hkv), word(s.b)),
        constants: &[],
        threads: g.threads,
    })?;
    Ok((dq, dk, dv))
}
