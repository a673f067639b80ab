//! Fused cross-entropy for SFT: per-token loss and the logits gradient, streaming the
//! vocabulary; nothing of size [N, V] is allocated beside the logits and their gradient.

use super::{fits_u32, same_device};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

pub use crate::backend::cpu::cross_entropy::IGNORE;

fn check(op: &'static str, logits: &Tensor, targets: &[u32]) -> Result<(usize, usize)> {
    if logits.rank() != 2 || logits.shape()[0] != targets.len() || logits.shape()[1] == 0 {
        return Err(Error::shape(op, format!("logits {:?} must be [N, V] with N = {} targets", logits.shape(), targets.len())));
    }
    let (n, v) = (targets.len(), logits.shape()[1]);
    if let Some(&bad) = targets.iter().find(|&&t| t != IGNORE && t as usize >= v) {
        return Err(Error::Index { op, index: bad as usize, size: v });
    }
    fits_u32(op, logits.numel())?;
    Ok((n, v))
}

/// Returns (loss [N], lse [N]): loss = logsumexp(row) - row[target]; 0 where the target is
/// [`IGNORE`].
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<(Tensor, Tensor)> {
    let (n, v) = check("cross_entropy", logits, targets)?;
    if let Some(x) = logits.as_cpu() {
        let (mut loss, mut lse) = (cpu::alloc(n), cpu::alloc(n));
        cpu::cross_entropy::cross_entropy_forward(x, targets, v, &mut loss, &mut lse);
        return Ok((Tensor::from_cpu(loss, &[n]), Tensor::from_cpu(lse, &[n])));
    }
    let dev = logits.device();
    let t = dev.upload_u32(targets)?;
    let loss = Tensor::empty(&[n], dev)?;
    let lse = Tensor::empty(&[n], dev)?;
    dev.launch(&Launch {
        family: "cross_entropy",
        kernel: "cross_entropy_forward",
        bindings: &[(0, Buf::F32(logits)), (1, Buf::U32(&t)), (2, Buf::F32(&loss)), (4, Buf::F32(&lse))],
        params: Params::new(&[word(n), word(v), 0, 1, 1f32.to_bits()]),
        grid: Grid::Rows { groups: word(n), slot: 2 },
        constants: &[],
        threads: 256,
    })?;
    Ok((loss, lse))
}

/// dlogits = dloss[r] * scale * (softmax(row) - onehot(target)); `dloss` is [N] or [1]
/// (one upstream gradient for every row, as for a mean).
pub fn cross_entropy_backward(logits: &Tensor, targets: &[u32], lse: &Tensor, dloss: &Tensor, scale: f32) -> Result<Tensor> {
    let (n, v) = check("cross_entropy_backward", logits, targets)?;
    same_device("cross_entropy_backward", logits, lse)?;
    same_device("cross_entropy_backward", logits, dloss)?;
    if lse.numel() != n || !(dloss.numel() == n || dloss.numel() == 1) {
        return Err(Error::shape(
            "cross_entropy_backward",
            format!("lse {:?} must have {n} entries and dloss {:?} {n} or 1", lse.shape(), dloss.shape()),
        ));
    }
    if let (Some(x), Some(l), Some(g)) = (logits.as_cpu(), lse.as_cpu(), dloss.as_cpu()) {
        let mut d = cpu::alloc(x.len());
        cpu::cross_entropy::cross_entropy_backward(x, targets, l, g, scale, v, &mut d);
        return Ok(Tensor::from_cpu(d, logits.shape()));
    }
    let dev = logits.device();
    let t = dev.upload_u32(targets)?;
    let d = Tensor::empty(logits.shape(), dev)?;
    dev.launch(&Launch {
        family: "cross_entropy",
        kernel: "cross_entropy_backward",
        bindings: &[(0, Buf::F32(logits)), (1, Buf::U32(&t)), (2, Buf::F32(&d)), (4, Buf::F32(lse)), (5, Buf::F32(dloss))],
        params: Params::new(&[word(n), word(v), 0, word(dloss.numel()), scale.to_bits()]),
        grid: Grid::Rows { groups: word(n), slot: 2 },
        constants: &[],
        threads: 256,
    })?;
    Ok(d)
}
