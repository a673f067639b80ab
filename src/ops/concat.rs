//! concat, slice and the in-place write_slice along one axis, all through the copy_block kernel.

use super::{fits_u32, same_device};
use crate::backend::cpu::concat::AxisSpan;
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::{numel, Tensor};

/// (outer, inner): the products of the axes before and after `axis`.
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (numel(&shape[..axis]), numel(&shape[axis + 1..]))
}

/// Copies `len` rows along the axis from src to dst on a GPU device.
fn launch_copy(src: &Tensor, s: AxisSpan, dst: &Tensor, d: AxisSpan, outer: usize, len: usize, inner: usize) -> Result<()> {
    let n = outer * len * inner;
    src.device().launch(&Launch {
        family: "concat",
        kernel: "copy_block",
        bindings: &[(0, Buf::F32(src)), (2, Buf::F32(dst))],
        params: Params::new(&[word(n), word(len), word(inner), word(s.dim), word(s.off), word(d.dim), word(d.off), 0]),
        grid: Grid::elements(n, 7),
        constants: &[],
        threads: 256,
    })
}

/// Joins tensors along `axis`; all other axes must agree.
pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = xs.first().ok_or_else(|| Error::shape("concat", "no tensors given"))?;
    let r = first.rank();
    if axis >= r {
        return Err(Error::shape("concat", format!("axis {axis} out of range for {:?}", first.shape())));
    }
    for x in xs {
        same_device("concat", first, x)?;
        let ok = x.rank() == r && (0..r).all(|i| i == axis || x.shape()[i] == first.shape()[i]);
        if !ok {
            return Err(Error::shape(
                "concat",
                format!("{:?} does not match {:?} outside axis {axis}", x.shape(), first.shape()),
            ));
        }
    }
    let total: usize = xs.iter().map(|x| x.shape()[axis]).sum();
    let mut shape = first.shape().to_vec();
    shape[axis] = total;
    fits_u32("concat", numel(&shape))?;
    let (outer, inner) = outer_inner(&shape, axis);
    let on_cpu = first.as_cpu().is_some();
    let out = if on_cpu { None } else { Some(Tensor::empty(&shape, first.device())?) };
    let mut host = if on_cpu { cpu::alloc(numel(&shape)) } else { Vec::new() };
    let mut off = 0;
    for x in xs {
        let len = x.shape()[axis];
        let (s, d) = (AxisSpan { dim: len, off: 0 }, AxisSpan { dim: total, off });
        match (&out, x.as_cpu()) {
            (None, Some(v)) => cpu::concat::copy_block(v, s, &mut host, d, outer, len, inner),
            (Some(o), _) => launch_copy(x, s, o, d, outer, len, inner)?,
            (None, None) => unreachable!("same_device guarantees every input is on the CPU"),
        }
        off += len;
    }
    Ok(out.unwrap_or_else(|| Tensor::from_cpu(host, &shape)))
}

/// `len` entries of `axis` starting at `start`.
pub fn slice(x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    if axis >= x.rank() || start + len > x.shape()[axis] {
        return Err(Error::shape("slice", format!("[{start}, {}) on axis {axis} is outside {:?}", start + len, x.shape())));
    }
    fits_u32("slice", x.numel())?;
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    let (outer, inner) = outer_inner(x.shape(), axis);
    let (s, d) = (AxisSpan { dim: x.shape()[axis], off: start }, AxisSpan { dim: len, off: 0 });
    if let Some(v) = x.as_cpu() {
        let mut out = cpu::alloc(numel(&shape));
        cpu::concat::copy_block(v, s, &mut out, d, outer, len, inner);
        return Ok(Tensor::from_cpu(out, &shape));
    }
    let out = Tensor::empty(&shape, x.device())?;
    launch_copy(x, s, &out, d, outer, len, inner)?;
    Ok(out)
}

/// Writes `src` into `dst` in place at `start` along `axis` (the KV cache's append: the rest
/// of `dst` is not copied). `dst` must not be shared with another tensor.
pub fn write_slice(dst: &mut Tensor, axis: usize, start: usize, src: &Tensor) -> Result<()> {
    same_device("write_slice", dst, src)?;
    let (ds, ss) = (dst.shape(), src.shape());
    let fits = axis < ds.len() && ss.len() == ds.len() && (0..ds.len()).all(|i| i == axis || ds[i] == ss[i]);
    if !fits || start + ss[axis] > ds[axis] {
        return Err(Error::shape("write_slice", format!("{ss:?} at {start} on axis {axis} does not fit in {ds:?}")));
    }
    if dst.is_shared() {
        return Err(Error::shape("write_slice", "the destination is shared with another tensor and cannot change in place"));
    }
    fits_u32("write_slice", dst.numel())?;
    let len = ss[axis];
    let (outer, inner) = outer_inner(ds, axis);
    let (s, d) = (AxisSpan { dim: len, off: 0 }, AxisSpan { dim: ds[axis], off: start });
    if let Some(v) = src.as_cpu() {
        let out = dst.cpu_mut().ok_or_else(|| Error::shape("write_slice", "the destination is not writable"))?;
        cpu::concat::copy_block(v, s, out, d, outer, len, inner);
        return Ok(());
    }
    launch_copy(src, s, dst, d, outer, len, inner)
}
