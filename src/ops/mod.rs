//! One file per kernel family: shape checks, output allocation, dispatch to the backend.

pub mod adamw;
pub mod attention;
pub mod concat;
pub mod cross_entropy;
pub mod cross_entropy_linear;
pub mod elementwise;
pub mod embedding;
pub mod kl_dual;
pub mod kl_dual_linear;
pub mod matmul;
pub mod permute;
pub mod pgpo_weights;
pub mod policy_loss;
pub mod policy_loss_linear;
pub mod reduce;
pub mod rms_norm;
pub mod rope;
pub mod row_chunks;
pub mod softmax;

pub use concat::{concat, slice, write_slice};
pub use adamw::{adamw, sum_squares, AdamWStep};
pub use attention::{attention, attention_backward, AttnOptions};
pub use cross_entropy::{cross_entropy, cross_entropy_backward, IGNORE};
pub use elementwise::{
    add, add_into, dropout, gelu_erf, gelu_erf_backward, gelu_tanh, gelu_tanh_backward, mul, scale, silu, silu_backward, swiglu,
    swiglu_backward,
};
pub use rms_norm::{rms_norm, rms_norm_backward};
pub use rope::{rope, rope_backward, RopeTables};
pub use embedding::{gather, scatter_add};
pub use kl_dual::{kl_dual, KlDual, KlOptions};
pub use matmul::{matmul, matmul_acc, Transpose};
pub use permute::{permute, transpose};
pub use pgpo_weights::{pgpo_weights, Variant, WeightConfig};
pub use policy_loss::{policy_loss, LossConfig, PolicyLoss, TokenInputs, TokenOutputs};
pub use policy_loss_linear::{logp_linear, policy_loss_linear, LinearGrads, PolicyLossLinear};
pub use kl_dual_linear::kl_dual_linear;
pub use cross_entropy_linear::{cross_entropy_linear, CrossEntropyLinear};
pub use row_chunks::Chunking;
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

/// The allowed values of a float option.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    /// > 0 and finite.
    Positive,
    /// >= 0 and finite.
    NonNegative,
    /// In [0, 1].
    Unit,
    /// In [0, 1).
    BelowOne,
    /// > 0, +inf allowed (a bound that is off).
    PositiveOrInf,
    /// Finite.
    Finite,
    /// 0 (off) or finite and > 1.
    OffOrAboveOne,
}

/// Validates one float option of `op`: an error naming it, never a panic or a silent NaN.
pub(crate) fn option(op: &'static str, name: &'static str, value: f32, need: Need) -> Result<()> {
    let (ok, text) = match need {
        Need::Positive => (value > 0.0 && value.is_finite(), "a finite number > 0"),
        Need::NonNegative => (value >= 0.0 && value.is_finite(), "a finite number >= 0"),
        Need::Unit => ((0.0..=1.0).contains(&value), "in [0, 1]"),
        Need::BelowOne => ((0.0..1.0).contains(&value), "in [0, 1)"),
        Need::PositiveOrInf => (value > 0.0, "a number > 0 (inf turns it off)"),
        Need::Finite => (value.is_finite(), "finite"),
        Need::OffOrAboveOne => (value == 0.0 || (value > 1.0 && value.is_finite()), "0 (off) or a finite number > 1"),
    };
    if ok { Ok(()) } else { Err(Error::Option { op, name, value: f64::from(value), need: text }) }
}

/// GPU kernels index with 32-bit words; refuse anything larger with a clear error.
pub(crate) fn fits_u32(op: &'static str, n: usize) -> Result<()> {
    if n > u32::MAX as usize {
        Err(Error::shape(op, format!("{n} elements exceed the 32-bit indexing of the GPU kernels")))
    } else {
        Ok(())
    }
}
