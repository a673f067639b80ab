//! Batched matmul with transpose flags: [.., M, K] x [.., K, N] -> [.., M, N].

use super::{fits_u32, same_device};
use crate::backend::cpu::matmul::{MatmulDims, Operand};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::{numel, Dtype, Tensor};

/// Which operands are used transposed: `Transpose::NT` computes A · Bᵀ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transpose {
    pub a: bool,
    pub b: bool,
}

impl Transpose {
    pub const NN: Transpose = Transpose { a: false, b: false };
    pub const NT: Transpose = Transpose { a: false, b: true };
    pub const TN: Transpose = Transpose { a: true, b: false };
    pub const TT: Transpose = Transpose { a: true, b: true };
}

/// Batched product op(A) · op(B), in f32; either operand may be bf16 or f16 (a weight in its
/// stored dtype), widened exactly as it is read. Leading axes are the batch; an operand whose leading
/// axes multiply to 1 is broadcast over the other's batch (a shared weight matrix).
pub fn matmul(a: &Tensor, b: &Tensor, t: Transpose) -> Result<Tensor> {
    same_device("matmul", a, b)?;
    let d = dims(a.shape(), b.shape(), t)?;
    let (lead_a, lead_b) = (&a.shape()[..a.rank() - 2], &b.shape()[..b.rank() - 2]);
    // The leading axes of the operand that sets the batch (an empty one makes an empty
    // product: [0, 2, 3] x [3, 4] is [0, 2, 4]).
    let batch_shape = if numel(lead_a) == d.batch { lead_a } else { lead_b };
    let out_shape: Vec<usize> = batch_shape.iter().copied().chain([d.m, d.n]).collect();
    fits_u32("matmul", a.numel().max(b.numel()).max(d.batch * d.m * d.n))?;
    if let (Some(x), Some(y)) = (cpu_operand(a), cpu_operand(b)) {
        // SAFETY: dims checked x and y against d; the product writes all batch * m * n.
        let out = unsafe { cpu::alloc_written(d.batch * d.m * d.n, |o| cpu::matmul::matmul_into(x, y, d, o)) };
        return Ok(Tensor::from_cpu(out, &out_shape));
    }
    let out = Tensor::empty(&out_shape, a.device())?;
    launch(a, b, t, &d, &out, false)?;
    Ok(out)
}

/// c += op(A) · op(B), in place: sums products (a gradient over row chunks) without a second
/// buffer of c's size. `c` must have the product's shape and be held by nothing else.
pub fn matmul_acc(c: &mut Tensor, a: &Tensor, b: &Tensor, t: Transpose) -> Result<()> {
    same_device("matmul_acc", a, b)?;
    same_device("matmul_acc", a, c)?;
    let d = dims(a.shape(), b.shape(), t)?;
    if c.numel() != d.batch * d.m * d.n || c.shape().last() != Some(&d.n) {
        return Err(Error::shape("matmul_acc", format!("the sum {:?} does not have the product's shape ({} x [{}, {}])", c.shape(), d.batch, d.m, d.n)));
    }
    if c.is_shared() {
        return Err(Error::shape("matmul_acc", "the sum is shared with another tensor and cannot change in place"));
    }
    fits_u32("matmul_acc", a.numel().max(b.numel()).max(c.numel()))?;
    if c.dtype() != Dtype::F32 {
        return Err(Error::shape("matmul_acc", format!("the sum is {}; it must be f32", c.dtype())));
    }
    if let (Some(x), Some(y)) = (cpu_operand(a), cpu_operand(b)) {
        let o = c.cpu_mut().ok_or_else(|| Error::shape("matmul_acc", "the sum is not writable"))?;
        // SAFETY: dims checked x and y against d, and o holds batch * m * n values.
        unsafe { cpu::matmul::matmul_acc(x, y, d, o.as_mut_ptr()) };
        return Ok(());
    }
    launch(a, b, t, &d, c, true)
}

/// A CPU tensor's values for the CPU product, in their stored dtype.
fn cpu_operand(t: &Tensor) -> Option<Operand<'_>> {
    match t.as_cpu() {
        Some(x) => Some(Operand::F32(x)),
        None => t.as_cpu_half().map(|(bits, dt)| Operand::Half(bits, dt)),
    }
}

fn launch(a: &Tensor, b: &Tensor, t: Transpose, d: &MatmulDims, out: &Tensor, accumulate: bool) -> Result<()> {
    // f32 products on CUDA go to cuBLAS where it loads (backend::cuda::blas).
    #[cfg(feature = "cuda")]
    if let (crate::device::Device::Cuda(dev), crate::tensor::Storage::Cuda(x), crate::tensor::Storage::Cuda(y), crate::tensor::Storage::Cuda(o)) = (a.device(), a.storage(), b.storage(), out.storage())
        && a.dtype() == Dtype::F32
        && b.dtype() == Dtype::F32
        && dev.sgemm(x, y, o, d, accumulate)?
    {
        return Ok(());
    }
    a.device().launch(&Launch {
        family: "matmul",
        kernel: "matmul",
        bindings: &[(0, Buf::Any(a)), (1, Buf::Any(b)), (2, Buf::F32(out))],
        params: Params::new(&[
            word(d.m),
            word(d.n),
            word(d.k),
            word(d.a_stride),
            word(d.b_stride),
            u32::from(t.a),
            u32::from(t.b),
            u32::from(accumulate),
            a.dtype().code(),
            b.dtype().code(),
        ]),
        grid: Grid::Xyz(word(d.n.div_ceil(64)), word(d.m.div_ceil(64)), word(d.batch)),
        constants: &[
            ("TRANS_A", f64::from(u8::from(t.a))),
            ("TRANS_B", f64::from(u8::from(t.b))),
            ("A_DTYPE", f64::from(a.dtype().code())),
            ("B_DTYPE", f64::from(b.dtype().code())),
        ],
        threads: 256,
    })
}

/// Checks the operand shapes and derives the product's sizes and batch strides.
pub fn dims(sa: &[usize], sb: &[usize], t: Transpose) -> Result<MatmulDims> {
    if sa.len() < 2 || sb.len() < 2 {
        return Err(Error::shape("matmul", format!("operands need at least 2 axes, got {sa:?} and {sb:?}")));
    }
    let (ra, ca) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (rb, cb) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    let (m, k) = if t.a { (ca, ra) } else { (ra, ca) };
    let (kb, n) = if t.b { (cb, rb) } else { (rb, cb) };
    if k != kb {
        return Err(Error::shape(
            "matmul",
            format!("inner sizes differ: op(A) of {sa:?} is [{m}, {k}], op(B) of {sb:?} is [{kb}, {n}] (transpose {t:?})"),
        ));
    }
    let ba: usize = sa[..sa.len() - 2].iter().product();
    let bb: usize = sb[..sb.len() - 2].iter().product();
    if ba != bb && ba != 1 && bb != 1 {
        return Err(Error::shape("matmul", format!("batch sizes {ba} and {bb} differ ({sa:?} x {sb:?})")));
    }
    let batch = if ba == 0 || bb == 0 { 0 } else { ba.max(bb) };
    Ok(MatmulDims {
        batch,
        m,
        n,
        k,
        trans_a: t.a,
        trans_b: t.b,
        a_stride: if ba == 1 { 0 } else { m * k },
        b_stride: if bb == 1 { 0 } else { k * n },
    })
}
