//! RMSNorm with a weight over the last axis, and its backward.

use super::{fits_u32, option, same_device, Need};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

fn check(op: &'static str, x: &Tensor, w: &Tensor) -> Result<(usize, usize)> {
    same_device(op, x, w)?;
    let (rows, d) = x.rows_cols();
    if w.shape() != [d] || d == 0 {
        return Err(Error::shape(op, format!("weight {:?} must be [{d}] for input {:?}", w.shape(), x.shape())));
    }
    fits_u32(op, x.numel())?;
    Ok((rows, d))
}

/// y = x * rstd * w with rstd = 1/sqrt(mean(x^2) + eps) per row; returns (y, rstd [rows]).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    let (rows, d) = check("rms_norm", x, w)?;
    option("rms_norm", "eps", eps, Need::NonNegative)?;
    let rstd_shape = &x.shape()[..x.rank() - 1];
    if let (Some(xv), Some(wv)) = (x.as_cpu(), w.as_cpu()) {
        let (mut y, mut r) = (cpu::alloc(xv.len()), cpu::alloc(rows));
        cpu::rms_norm::rms_norm(xv, wv, eps, &mut y, &mut r);
        return Ok((Tensor::from_cpu(y, x.shape()), Tensor::from_cpu(r, rstd_shape)));
    }
    let y = Tensor::empty(x.shape(), x.device())?;
    let r = Tensor::empty(rstd_shape, x.device())?;
    x.device().launch(&Launch {
        family: "rms_norm",
        kernel: "rms_norm",
        bindings: &[(0, Buf::F32(x)), (1, Buf::F32(w)), (2, Buf::F32(&y)), (4, Buf::F32(&r))],
        params: Params::new(&[word(rows), word(d), eps.to_bits(), 0]),
        grid: Grid::Rows { groups: word(rows), slot: 3 },
        constants: &[],
        threads: 256,
    })?;
    Ok((y, r))
}

/// Rows per partial sum of the GPU weight gradient (the CHUNK of shaders/rms_norm.wgsl).
const DW_CHUNK: usize = 1024;

/// Gradients (dx, dw) from the forward's input, weight and rstd.
pub fn rms_norm_backward(x: &Tensor, w: &Tensor, rstd: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor)> {
    let (rows, d) = check("rms_norm_backward", x, w)?;
    if dy.shape() != x.shape() || rstd.numel() != rows {
        return Err(Error::shape(
            "rms_norm_backward",
            format!("dy {:?} and rstd {:?} must match x {:?}", dy.shape(), rstd.shape(), x.shape()),
        ));
    }
    if let (Some(xv), Some(wv), Some(rv), Some(g)) = (x.as_cpu(), w.as_cpu(), rstd.as_cpu(), dy.as_cpu()) {
        let (mut dx, mut dw) = (cpu::alloc(xv.len()), cpu::alloc(d));
        cpu::rms_norm::rms_norm_backward(xv, wv, rv, g, &mut dx);
        cpu::rms_norm::rms_norm_dweight(xv, rv, g, &mut dw);
        return Ok((Tensor::from_cpu(dx, x.shape()), Tensor::from_cpu(dw, &[d])));
    }
    let dev = x.device();
    let dx = Tensor::empty(x.shape(), dev)?;
    let dw = Tensor::empty(&[d], dev)?;
    // The weight gradient sums over rows in chunks of DW_CHUNK (see shaders/rms_norm.wgsl).
    let chunks = rows.div_ceil(DW_CHUNK).max(1);
    if chunks > 65_535 {
        return Err(Error::shape("rms_norm_backward", format!("{rows} rows exceed the {} the weight gradient handles", 65_535 * DW_CHUNK)));
    }
    let params = Params::new(&[word(rows), word(d), 0, 0, word(chunks)]);
    let partials = Tensor::empty(&[chunks, d], dev)?;
    dev.launch(&Launch {
        family: "rms_norm",
        kernel: "rms_norm_backward",
        bindings: &[(0, Buf::F32(x)), (1, Buf::F32(w)), (2, Buf::F32(&dx)), (4, Buf::F32(rstd)), (5, Buf::F32(dy))],
        params,
        grid: Grid::Rows { groups: word(rows), slot: 3 },
        constants: &[],
        threads: 256,
    })?;
    dev.launch(&Launch {
        family: "rms_norm",
        kernel: "rms_norm_dweight_partial",
        bindings: &[(0, Buf::F32(x)), (2, Buf::F32(&partials)), (4, Buf::F32(rstd)), (5, Buf::F32(dy))],
        params,
        grid: Grid::Xyz(word(d.div_ceil(256)), word(chunks), 1),
        constants: &[],
        threads: 256,
    })?;
    dev.launch(&Launch {
        family: "rms_norm",
        kernel: "rms_norm_dweight",
        bindings: &[(2, Buf::F32(&dw)), (6, Buf::F32(&partials))],
        params,
        grid: Grid::elements(d, 3),
        constants: &[],
        threads: 256,
    })?;
    Ok((dx, dw))
}
