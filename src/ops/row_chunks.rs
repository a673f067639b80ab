//! What the fused-linear ops (`policy_loss_linear`, `kl_dual_linear`, `cross_entropy_linear`)
//! share: how many rows they turn into logits at once (their only temporaries are `buffers`
//! [rows, V] f32 blocks, so the chunk sets their memory, O(rows x V) and never O(N x V)), the
//! check of their hidden states against the head, and the chunk loop.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The row chunk of a fused-linear op.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Chunking {
    /// From the device's budget: a sixteenth of its free memory, at most 1 GiB of logits
    /// (about 880 rows of Qwen2.5's vocabulary in the two blocks: enough rows for the GEMMs'
    /// full speed; the CPU ran the loss at half speed with 128-row chunks), and within the
    /// largest buffer a kernel may bind.
    #[default]
    Auto,
    /// Exactly this many rows (tests use small chunks to cross chunk edges).
    Rows(usize),
}

impl Chunking {
    /// Rows per chunk for `n` rows of `v` logits, with `buffers` [rows, V] temporaries alive at once.
    pub fn rows(self, op: &'static str, dev: &Device, n: usize, v: usize, buffers: usize) -> Result<usize> {
        match self {
            Chunking::Rows(0) => Err(Error::shape(op, "a chunk of 0 rows")),
            Chunking::Rows(r) => Ok(r.min(n.max(1))),
            Chunking::Auto => Ok(auto_rows(n, v, buffers, dev.memory_budget().map(|b| b.0), dev.max_binding().map(|b| b.0))),
        }
    }
}

/// `Chunking::Auto`'s rows per chunk for `n` rows of `v` logits with `buffers` [rows, V]
/// temporaries, on a device with `free` bytes (None: unknown) and a largest binding of
/// `max_binding` bytes (None: no limit). The memory estimate uses it too.
pub fn auto_rows(n: usize, v: usize, buffers: usize, free: Option<u64>, max_binding: Option<u64>) -> usize {
    let row = (v.max(1) * 4) as u64;
    let mut rows = auto_bytes(free) / (row * buffers.max(1) as u64);
    if let Some(bind) = max_binding {
        rows = rows.min(bind / row);
    }
    // Even chunks: 2 x 220 rows rather than 256 + 184 (a thin last chunk wastes the GEMM's
    // tiles).
    let most = (rows as usize).clamp(1, n.max(1));
    n.max(1).div_ceil(n.max(1).div_ceil(most))
}

/// The bytes of logits `Chunking::Auto` allows at once on a device with `budget` bytes free
/// (None: unknown): a sixteenth of it, at most 1 GiB. The memory estimate uses it too.
fn auto_bytes(budget: Option<u64>) -> u64 {
    let cap: u64 = 1 << 30;
    budget.map_or(cap, |b| cap.min(b / 16))
}

/// Checks hidden [N, H] against head [V, H] and N tokens; returns (N, V).
pub(crate) fn check_linear(op: &'static str, hidden: &Tensor, head: &Tensor, tokens: usize) -> Result<(usize, usize)> {
    super::same_device(op, hidden, head)?;
    let (hs, ws) = (hidden.shape(), head.shape());
    if hs.len() != 2 || ws.len() != 2 || hs[1] != ws[1] || hs[0] != tokens || ws[0] == 0 {
        return Err(Error::shape(op, format!("hidden {hs:?} must be [N, H] with N = {tokens} tokens and head {ws:?} [V, H] with V > 0")));
    }
    Ok((hs[0], ws[0]))
}

/// [start, start + len) of each chunk of `n` rows.
pub(crate) fn spans(n: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).step_by(chunk.max(1)).map(move |s| (s, chunk.min(n - s)))
}

/// The gradients a fused-linear op forms as it goes, and the loop that forms them: for each
/// chunk of rows, `loss` gets the chunk's logits h_c · Wᵀ and returns their gradient (when a
/// gradient is wanted); dh_c = dlogits_c · W goes into its rows of dhidden and
/// dW += dlogits_cᵀ · h_c. Both [chunk, V] blocks are freed before the next chunk.
pub(crate) fn over_chunks(
    hidden: &Tensor,
    head: &Tensor,
    chunk: usize,
    grads: super::LinearGrads,
    mut loss: impl FnMut(usize, usize, &Tensor) -> Result<Option<Tensor>>,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    use super::{matmul, matmul_acc, slice, write_slice, Transpose};
    let (n, h) = (hidden.shape()[0], hidden.shape()[1]);
    let dev = hidden.device();
    let mut dhidden = if grads.hidden { Some(Tensor::empty(&[n, h], dev)?) } else { None };
    let mut dhead: Option<Tensor> = None;
    for (start, len) in spans(n, chunk) {
        let hc = if len == n { hidden.clone() } else { slice(hidden, 0, start, len)? };
        let logits = matmul(&hc, head, Transpose::NT)?;
        let dlogits = loss(start, len, &logits)?;
        drop(logits);
        let Some(dlogits) = dlogits.filter(|_| grads.hidden || grads.head) else { continue };
        if let Some(dh) = dhidden.as_mut() {
            write_slice(dh, 0, start, &matmul(&dlogits, head, Transpose::NN)?)?;
        }
        if grads.head {
            // The first chunk writes dW, the rest add to it: a zeroed [V, H] buffer that the
            // first product reads back would fault each page in twice (2x the time on the CPU).
            match dhead.as_mut() {
                None => dhead = Some(matmul(&dlogits, &hc, Transpose::TN)?),
                Some(dw) => matmul_acc(dw, &dlogits, &hc, Transpose::TN)?,
            }
        }
    }
    if grads.head && dhead.is_none() {
        dhead = Some(Tensor::zeros(head.shape(), dev)?);
    }
    Ok((dhidden, dhead))
}
