//! Fused AdamW step, and the sum of squares behind the global gradient norm and clipping.

use super::elementwise::same_shape;
use super::{fits_u32, option, Need};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::Result;
use crate::params::{word, Params};
use crate::tensor::Tensor;

pub use crate::backend::cpu::adamw::AdamWStep;

/// Elements per partial sum in [`sum_squares`].
const BLOCK: usize = 4096;

/// Checks AdamW's hyper-parameters for `op`: an error naming the bad one.
pub(crate) fn validate_hyper(op: &'static str, lr: f32, betas: (f32, f32), eps: f32, weight_decay: f32) -> Result<()> {
    option(op, "lr", lr, Need::NonNegative)?;
    option(op, "beta1", betas.0, Need::BelowOne)?;
    option(op, "beta2", betas.1, Need::BelowOne)?;
    option(op, "eps", eps, Need::Positive)?;
    option(op, "weight_decay", weight_decay, Need::NonNegative)
}

/// One AdamW step; returns the new (param, m, v). Inputs are left untouched, so a failed
/// step never leaves a half-updated model.
pub fn adamw(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: AdamWStep) -> Result<(Tensor, Tensor, Tensor)> {
    for other in [g, m, v] {
        same_shape("adamw", p, other)?;
    }
    fits_u32("adamw", p.numel())?;
    validate_hyper("adamw", s.lr, (s.beta1, s.beta2), s.eps, s.weight_decay)?;
    option("adamw", "bias1", s.bias1, Need::Positive)?;
    option("adamw", "bias2", s.bias2, Need::Positive)?;
    option("adamw", "grad_scale", s.grad_scale, Need::Finite)?;
    if let (Some(pv), Some(gv), Some(mv), Some(vv)) = (p.as_cpu(), g.as_cpu(), m.as_cpu(), v.as_cpu()) {
        let (mut p2, mut m2, mut v2) = (cpu::alloc(pv.len()), cpu::alloc(pv.len()), cpu::alloc(pv.len()));
        cpu::adamw::adamw(pv, gv, mv, vv, s, &mut p2, &mut m2, &mut v2);
        let sh = p.shape();
        return Ok((Tensor::from_cpu(p2, sh), Tensor::from_cpu(m2, sh), Tensor::from_cpu(v2, sh)));
    }
    let dev = p.device();
    let (p2, m2, v2) = (Tensor::empty(p.shape(), dev)?, Tensor::empty(p.shape(), dev)?, Tensor::empty(p.shape(), dev)?);
    let f = |x: f32| x.to_bits();
    dev.launch(&Launch {
        family: "adamw",
        kernel: "adamw",
        bindings: &[
            (0, Buf::F32(p)),
            (1, Buf::F32(g)),
            (2, Buf::F32(&p2)),
            (4, Buf::F32(m)),
            (5, Buf::F32(v)),
            (6, Buf::F32(&m2)),
            (7, Buf::F32(&v2)),
        ],
        params: Params::new(&[
            word(p.numel()),
            0,
            f(s.lr),
            f(s.beta1),
            f(s.beta2),
            f(s.eps),
            f(s.weight_decay),
            f(s.bias1),
            f(s.bias2),
            f(s.grad_scale),
            0,
        ]),
        grid: Grid::elements(p.numel(), 1),
        constants: &[],
        threads: 256,
    })?;
    Ok((p2, m2, v2))
}

/// Sum of squares of every element, accumulated in f64 on the host from per-block partials.
pub fn sum_squares(x: &Tensor) -> Result<f64> {
    fits_u32("sum_squares", x.numel())?;
    let blocks = x.numel().div_ceil(BLOCK);
    let partials = if let Some(v) = x.as_cpu() {
        let mut out = cpu::alloc(blocks);
        cpu::adamw::sum_squares(v, BLOCK, &mut out);
        out
    } else {
        let out = Tensor::empty(&[blocks], x.device())?;
        x.device().launch(&Launch {
            family: "adamw",
            kernel: "sum_squares",
            bindings: &[(0, Buf::F32(x)), (2, Buf::F32(&out))],
            params: Params::new(&[word(x.numel()), 0, 0, 0, 0, 0, 0, 0, 0, 0, word(BLOCK)]),
            grid: Grid::Rows { groups: word(blocks), slot: 1 },
            constants: &[],
            threads: 256,
        })?;
        out.to_vec()?
    };
    Ok(partials.iter().map(|&p| f64::from(p)).sum())
}
