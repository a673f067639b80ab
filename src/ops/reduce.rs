//! row_sum and row_max over the last axis: [..., C] -> [...].

use super::fits_u32;
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

pub fn row_sum(x: &Tensor) -> Result<Tensor> {
    reduce("row_sum", x, cpu::reduce::row_sum)
}

pub fn row_max(x: &Tensor) -> Result<Tensor> {
    reduce("row_max", x, cpu::reduce::row_max)
}

fn reduce(kernel: &'static str, x: &Tensor, cpu_fn: fn(&[f32], usize, &mut [f32])) -> Result<Tensor> {
    if x.rank() == 0 {
        return Err(Error::shape(kernel, "needs at least one axis"));
    }
    let (rows, cols) = x.rows_cols();
    if cols == 0 {
        return Err(Error::shape(kernel, format!("cannot reduce an empty last axis of {:?}", x.shape())));
    }
    fits_u32(kernel, x.numel())?;
    let out_shape = &x.shape()[..x.rank() - 1];
    if let Some(v) = x.as_cpu() {
        let mut out = cpu::alloc(rows);
        cpu_fn(v, cols, &mut out);
        return Ok(Tensor::from_cpu(out, out_shape));
    }
    let out = Tensor::empty(out_shape, x.device())?;
    x.device().launch(&Launch {
        family: "reduce",
        kernel,
        bindings: &[(0, Buf::F32(x)), (2, Buf::F32(&out))],
        params: Params::new(&[word(rows), word(cols), 0, 0]),
        grid: Grid::Rows { groups: word(rows), slot: 2 },
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}
