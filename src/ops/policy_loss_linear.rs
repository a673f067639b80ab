//! `policy_loss` fused with the LM head: from the final hidden states [N, H] and the head
//! [V, H], over row chunks, the loss, its per-token outputs and the gradients of both inputs,
//! without ever holding [N, V] logits. Each chunk's logits h_c · Wᵀ go through the
//! `policy_loss` kernel, which writes their gradient; dh_c = dlogits_c · W and
//! dW += dlogits_cᵀ · h_c (`matmul_acc`, in place) follow at once (`row_chunks::over_chunks`),
//! and both [chunk, V] blocks are freed. This is the chunked-loss scheme of Liger-Kernel's
//! `chunked_loss/`, with token-level advantages (PGPO's point: Liger's GRPO loss takes one
//! per sequence). It composes the `matmul` and `policy_loss` kernels on every backend, so it
//! has no shader of its own.

use super::policy_loss::{policy_loss_rows, summarize, TokenOutputs};
use super::row_chunks::{check_linear, over_chunks, Chunking};
use super::{LossConfig, TokenInputs};
use crate::backend::cpu::policy_loss::TOKEN_OUT;
use crate::error::Result;
use crate::tensor::Tensor;

/// Which gradients to form (a frozen LM head needs no dW, a scoring pass neither).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinearGrads {
    pub hidden: bool,
    pub head: bool,
}

#[derive(Clone, Debug)]
pub struct PolicyLossLinear {
    pub out: TokenOutputs,
    /// d loss / d hidden [N, H], when asked for.
    pub dhidden: Option<Tensor>,
    /// d loss / d head [V, H], when asked for.
    pub dhead: Option<Tensor>,
}

pub fn policy_loss_linear(hidden: &Tensor, head: &Tensor, x: &TokenInputs, c: &LossConfig, grads: LinearGrads, chunking: Chunking) -> Result<PolicyLossLinear> {
    const OP: &str = "policy_loss_linear";
    let (n, v) = check_linear(OP, hidden, head, x.tokens.len())?;
    let chunk = chunking.rows(OP, hidden.device(), n, v, 2)?;
    let mut tok_out = Vec::with_capacity(n * TOKEN_OUT);
    let (dhidden, dhead) = over_chunks(hidden, head, chunk, grads, |start, len, logits| {
        let (dlogits, out) = policy_loss_rows(logits, &x.rows(start, len), c)?;
        tok_out.extend(out);
        Ok(Some(dlogits))
    })?;
    Ok(PolicyLossLinear { out: summarize(x, &tok_out), dhidden, dhead })
}

/// The log-prob of each token at `temperature` from hidden [N, H] and head [V, H] (no
/// gradients): the reference policy's and GSPO's sequence ratio need nothing else.
pub fn logp_linear(hidden: &Tensor, head: &Tensor, tokens: &[u32], temperature: f32, chunking: Chunking) -> Result<Vec<f32>> {
    let zeros = vec![0f32; tokens.len()];
    let x = TokenInputs { tokens, old_logp: &zeros, adv: &zeros, weight: &zeros, ref_logp: None };
    let c = LossConfig { temperature, ..LossConfig::default() };
    Ok(policy_loss_linear(hidden, head, &x, &c, LinearGrads::default(), chunking)?.out.logp)
}
