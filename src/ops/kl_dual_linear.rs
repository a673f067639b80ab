//! `kl_dual` fused with the LM head: from the clean and the blind final hidden states [N, H]
//! and the head [V, H], over row chunks, both log-probs of the sampled token, k3 and the exact
//! KL, without ever holding [N, V] logits (two [chunk, V] blocks at a time). It composes the
//! `matmul` and `kl_dual` kernels on every backend, so it has no shader of its own. Scoring
//! runs without gradients, so it has no backward.

use super::row_chunks::{check_linear, spans, Chunking};
use super::{concat, kl_dual, matmul, slice, KlDual, KlOptions, Transpose};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub fn kl_dual_linear(clean: &Tensor, blind: &Tensor, head: &Tensor, tokens: &[u32], o: KlOptions, chunking: Chunking) -> Result<KlDual> {
    const OP: &str = "kl_dual_linear";
    let (n, v) = check_linear(OP, clean, head, tokens.len())?;
    if blind.shape() != clean.shape() {
        return Err(Error::shape(OP, format!("blind {:?} must have clean's shape {:?}", blind.shape(), clean.shape())));
    }
    check_linear(OP, blind, head, tokens.len())?;
    let chunk = chunking.rows(OP, clean.device(), n, v, 2)?;
    let mut parts: Vec<KlDual> = Vec::new();
    for (start, len) in spans(n, chunk) {
        let rows = |h: &Tensor| if len == n { Ok(h.clone()) } else { slice(h, 0, start, len) };
        let lc = matmul(&rows(clean)?, head, Transpose::NT)?;
        let lb = matmul(&rows(blind)?, head, Transpose::NT)?;
        parts.push(kl_dual(&lc, &lb, &tokens[start..start + len], o)?);
    }
    if parts.len() == 1 {
        return Ok(parts.pop().expect("one part"));
    }
    if parts.is_empty() {
        return kl_dual(&Tensor::zeros(&[0, v], clean.device())?, &Tensor::zeros(&[0, v], clean.device())?, tokens, o);
    }
    let join = |f: fn(&KlDual) -> &Tensor| concat(&parts.iter().map(f).collect::<Vec<_>>(), 0);
    Ok(KlDual { logp_clean: join(|k| &k.logp_clean)?, logp_blind: join(|k| &k.logp_blind)?, kl: join(|k| &k.kl)?, k3: join(|k| &k.k3)? })
}
