//! One file per kernel family: shape checks, output allocation, dispatch to the backend.

pub mod adamw;
pub mod attention;
pub mod concat;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod kl_dual;
pub mod matmul;
pub mod permute;
pub mod pgpo_weights;
pub mod policy_loss;
pub mod reduce;
pub mod rms_norm;
pub mod rope;
pub mod softmax;

pub use concat::{concat, slice};
pub use adamw::{adamw, sum_squares, AdamWStep};
pub use attention::{attention, attention_backward, AttnOptions};
pub use cross_entropy::{cross_entropy, cross_entropy_backward, IGNORE};
pub use elementwise::{
    add, gelu_erf, gelu_erf_backward, gelu_tanh, gelu_tanh_backward, mul, scale, silu, silu_backward, swiglu,
    swiglu_backward,
};
pub use rms_norm::{rms_norm, rms_norm_backward};
pub use rope::{rope, rope_backward, RopeTables};
pub use embedding::{gather, scatter_add};
pub use kl_dual::{kl_dual, KlDual, KlOptions};
pub use matmul::{matmul, Transpose};
pub use permute::{permute, transpose};
pub use pgpo_weights::{pgpo_weights, Variant, WeightConfig};
pub use policy_loss::{policy_loss, LossConfig, PolicyLoss, TokenInputs};
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
