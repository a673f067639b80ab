//! One file per kernel family: shape checks, output allocation, dispatch to the backend.

pub mod concat;
pub mod elementwise;
pub mod embedding;
pub mod matmul;
pub mod permute;
pub mod reduce;
pub mod softmax;

pub use concat::{concat, slice};
pub use elementwise::{add, gelu_erf, gelu_tanh, mul, scale, silu};
pub use embedding::{gather, scatter_add};
pub use matmul::{matmul, Transpose};
pub use permute::{permute, transpose};
pub use reduce::{row_max, row_sum};
pub use softmax::{log_softmax, softmax};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(crate) fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device().same(b.device()) {
        Ok(())
    } else {
        Err(Error::DeviceMismatch { op, a: a.device().name(), b: b.device().name() })
    }
}

/// GPU kernels index with 32-bit words; refuse anything larger with a clear error.
pub(crate) fn fits_u32(op: &'static str, n: usize) -> Result<()> {
    if n > u32::MAX as usize {
        Err(Error::shape(op, format!("{n} elements exceed the 32-bit indexing of the GPU kernels")))
    } else {
        Ok(())
    }
}
