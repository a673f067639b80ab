//! `cross_entropy` fused with the LM head, for SFT: from the final hidden states [N, H] and
//! the head [V, H], over row chunks, the mean cross-entropy of the targets (IGNORE rows left
//! out) and the gradients of both inputs, without ever holding [N, V] logits. It composes the
//! `matmul` and `cross_entropy` kernels on every backend (`row_chunks::over_chunks`), so it
//! has no shader of its own.

use super::row_chunks::{check_linear, over_chunks, Chunking};
use super::{cross_entropy, cross_entropy_backward, LinearGrads, IGNORE};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct CrossEntropyLinear {
    /// The mean over targets that are not IGNORE.
    pub loss: f64,
    pub dhidden: Option<Tensor>,
    pub dhead: Option<Tensor>,
}

pub fn cross_entropy_linear(hidden: &Tensor, head: &Tensor, targets: &[u32], grads: LinearGrads, chunking: Chunking) -> Result<CrossEntropyLinear> {
    const OP: &str = "cross_entropy_linear";
    let (n, v) = check_linear(OP, hidden, head, targets.len())?;
    let valid = targets.iter().filter(|&&t| t != IGNORE).count();
    if valid == 0 {
        return Err(Error::shape(OP, "every target is ignored"));
    }
    let chunk = chunking.rows(OP, hidden.device(), n, v, 2)?;
    let dloss = Tensor::full(1.0, &[1], hidden.device())?;
    let mut sum = 0.0f64;
    let (dhidden, dhead) = over_chunks(hidden, head, chunk, grads, |start, len, logits| {
        let t = &targets[start..start + len];
        let (loss, lse) = cross_entropy(logits, t)?;
        sum += loss.to_vec()?.iter().map(|&x| f64::from(x)).sum::<f64>();
        if grads.hidden || grads.head { cross_entropy_backward(logits, t, &lse, &dloss, 1.0 / valid as f32).map(Some) } else { Ok(None) }
    })?;
    Ok(CrossEntropyLinear { loss: sum / valid as f64, dhidden, dhead })
}
