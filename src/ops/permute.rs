//! permute (and transpose, its two-axis case): a copy into the permuted layout.

use super::fits_u32;
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

/// Axes the GPU kernels handle; more is refused with an error.
pub const MAX_AXES: usize = 6;

/// out axis i = x axis perm[i].
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let shape = x.shape();
    let r = shape.len();
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
        return Err(Error::shape("permute", format!("{perm:?} is not a permutation of the {r} axes of {shape:?}")));
    }
    if r > MAX_AXES {
        return Err(Error::shape("permute", format!("at most {MAX_AXES} axes, got {r}")));
    }
    fits_u32("permute", x.numel())?;
    let mut strides = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let dims: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    if let Some(v) = x.as_cpu() {
        let mut out = cpu::alloc(v.len());
        cpu::permute::permute(v, &dims, &src, &mut out);
        return Ok(Tensor::from_cpu(out, &dims));
    }
    // Pad to six axes with leading size-1 axes.
    let pad = MAX_AXES - r;
    let mut words = vec![word(x.numel()), 0];
    words.extend((0..MAX_AXES).map(|i| if i < pad { 1 } else { word(dims[i - pad]) }));
    words.extend((0..MAX_AXES).map(|i| if i < pad { 0 } else { word(src[i - pad]) }));
    let out = Tensor::empty(&dims, x.device())?;
    x.device().launch(&Launch {
        family: "permute",
        kernel: "permute",
        bindings: &[(0, Buf::F32(x)), (2, Buf::F32(&out))],
        params: Params::new(&words),
        grid: Grid::elements(x.numel(), 1),
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}

/// Swaps two axes.
pub fn transpose(x: &Tensor, a: usize, b: usize) -> Result<Tensor> {
    if a >= x.rank() || b >= x.rank() {
        return Err(Error::shape("transpose", format!("axes {a}, {b} out of range for {:?}", x.shape())));
    }
    let mut perm: Vec<usize> = (0..x.rank()).collect();
    perm.swap(a, b);
    permute(x, &perm)
}
