//! softmax and log_softmax over the last axis.

use super::fits_u32;
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

pub fn softmax(x: &Tensor) -> Result<Tensor> {
    rowwise("softmax", x, cpu::softmax::softmax)
}

pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    rowwise("log_softmax", x, cpu::softmax::log_softmax)
}

fn rowwise(kernel: &'static str, x: &Tensor, cpu_fn: fn(&[f32], usize, &mut [f32])) -> Result<Tensor> {
    if x.rank() == 0 {
        return Err(Error::shape(kernel, "needs at least one axis"));
    }
    let (rows, cols) = x.rows_cols();
    if cols == 0 {
        return Err(Error::shape(kernel, format!("empty last axis in {:?}", x.shape())));
    }
    fits_u32(kernel, x.numel())?;
    if let Some(v) = x.as_cpu() {
        let mut out = cpu::alloc(v.len());
        cpu_fn(v, cols, &mut out);
        return Ok(Tensor::from_cpu(out, x.shape()));
    }
    let out = Tensor::empty(x.shape(), x.device())?;
    x.device().launch(&Launch {
        family: "softmax",
        kernel,
        bindings: &[(0, Buf::F32(x)), (2, Buf::F32(&out))],
        params: Params::new(&[word(rows), word(cols), 0, 0]),
        grid: Grid::Rows { groups: word(rows), slot: 2 },
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}
