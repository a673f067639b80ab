//! Differentiable ops: the forward from `crate::ops`, and the backward recorded on the tape.

use super::Var;
use crate::error::{Error, Result};
use crate::ops::{self as k, AttnOptions, RopeTables, Transpose};
use crate::tensor::Tensor;

/// Sums `g` over its leading axes down to `shape` (the backward of a broadcast).
fn sum_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    if g.numel() == n {
        return g.reshape(shape);
    }
    let rows = g.numel() / n;
    let t = k::transpose(&g.reshape(&[rows, n])?, 0, 1)?;
    k::row_sum(&t)?.reshape(shape)
}

pub fn add(a: &Var, b: &Var) -> Result<Var> {
    Ok(record_add(k::add(&a.value, &b.value)?, a, b))
}

/// Records out = a + b (b broadcast over a's leading axes).
fn record_add(out: Tensor, a: &Var, b: &Var) -> Var {
    let bs = b.shape().to_vec();
    a.tape.record(out, &[a, b], Box::new(move |g| Ok(vec![Some(g.clone()), Some(sum_to(g, &bs)?)])))
}

pub fn mul(a: &Var, b: &Var) -> Result<Var> {
    let out = k::mul(&a.value, &b.value)?;
    let (av, bv) = (a.value.clone(), b.value.clone());
    Ok(a.tape.record(
        out,
        &[a, b],
        Box::new(move |g| Ok(vec![Some(k::mul(g, &bv)?), Some(sum_to(&k::mul(g, &av)?, bv.shape())?)])),
    ))
}

pub fn scale(a: &Var, alpha: f32) -> Result<Var> {
    let out = k::scale(&a.value, alpha)?;
    Ok(a.tape.record(out, &[a], Box::new(move |g| Ok(vec![Some(k::scale(g, alpha)?)]))))
}

/// Inverted dropout (`ops::dropout`); the backward redraws the same mask from the seed.
pub fn dropout(a: &Var, p: f32, seed: u32) -> Result<Var> {
    let out = k::dropout(&a.value, p, seed)?;
    Ok(a.tape.record(out, &[a], Box::new(move |g| Ok(vec![Some(k::dropout(g, p, seed)?)]))))
}

/// Sum of every element: a scalar [1].
pub fn sum(a: &Var) -> Result<Var> {
    let out = k::row_sum(&a.value.reshape(&[1, a.value.numel()])?)?;
    let shape = a.shape().to_vec();
    Ok(a.tape.record(
        out,
        &[a],
        Box::new(move |g| {
            let ones = Tensor::full(1.0, &shape, g.device())?;
            Ok(vec![Some(k::mul(&ones, g)?)])
        }),
    ))
}

pub fn mean(a: &Var) -> Result<Var> {
    let n = a.value.numel() as f32;
    scale(&sum(a)?, 1.0 / n)
}

pub fn reshape(a: &Var, shape: &[usize]) -> Result<Var> {
    let out = a.value.reshape(shape)?;
    let orig = a.shape().to_vec();
    Ok(a.tape.record(out, &[a], Box::new(move |g| Ok(vec![Some(g.reshape(&orig)?)]))))
}

pub fn permute(a: &Var, perm: &[usize]) -> Result<Var> {
    let out = k::permute(&a.value, perm)?;
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    Ok(a.tape.record(out, &[a], Box::new(move |g| Ok(vec![Some(k::permute(g, &inverse)?)]))))
}

/// op(A) · op(B), batched; a broadcast operand's gradient is summed over the batch.
pub fn matmul(a: &Var, b: &Var, t: Transpose) -> Result<Var> {
    let out = k::matmul(&a.value, &b.value, t)?;
    let (av, bv) = (a.value.clone(), b.value.clone());
    Ok(a.tape.record(
        out,
        &[a, b],
        Box::new(move |g| {
            // d op(A) = dC op(B)^T and d op(B) = op(A)^T dC, transposed back where op transposes.
            let da = if t.a { k::matmul(&bv, g, Transpose { a: t.b, b: true })? } else { k::matmul(g, &bv, Transpose { a: false, b: !t.b })? };
            let db = if t.b { k::matmul(g, &av, Transpose { a: true, b: t.a })? } else { k::matmul(&av, g, Transpose { a: !t.a, b: false })? };
            Ok(vec![Some(sum_to(&da, av.shape())?), Some(sum_to(&db, bv.shape())?)])
        }),
    ))
}

pub fn silu(a: &Var) -> Result<Var> {
    let out = k::silu(&a.value)?;
    let x = a.value.clone();
    Ok(a.tape.record(out, &[a], Box::new(move |g| Ok(vec![Some(k::silu_backward(&x, g)?)]))))
}

pub fn gelu_tanh(a: &Var) -> Result<Var> {
    let out = k::gelu_tanh(&a.value)?;
    let x = a.value.clone();
    Ok(a.tape.record(out, &[a], Box::new(move |g| Ok(vec![Some(k::gelu_tanh_backward(&x, g)?)]))))
}

pub fn gelu_erf(a: &Var) -> Result<Var> {
    let out = k::gelu_erf(&a.value)?;
    let x = a.value.clone();
    Ok(a.tape.record(out, &[a], Box::new(move |g| Ok(vec![Some(k::gelu_erf_backward(&x, g)?)]))))
}

/// silu(gate) * up.
pub fn swiglu(gate: &Var, up: &Var) -> Result<Var> {
    let out = k::swiglu(&gate.value, &up.value)?;
    let (gv, uv) = (gate.value.clone(), up.value.clone());
    Ok(gate.tape.record(
        out,
        &[gate, up],
        Box::new(move |g| {
            let (dg, du) = k::swiglu_backward(&gv, &uv, g)?;
            Ok(vec![Some(dg), Some(du)])
        }),
    ))
}

pub fn rms_norm(x: &Var, w: &Var, eps: f32) -> Result<Var> {
    let (y, rstd) = k::rms_norm(&x.value, &w.value, eps)?;
    let (xv, wv) = (x.value.clone(), w.value.clone());
    Ok(x.tape.record(
        y,
        &[x, w],
        Box::new(move |g| {
            let (dx, dw) = k::rms_norm_backward(&xv, &wv, &rstd, g)?;
            Ok(vec![Some(dx), Some(dw)])
        }),
    ))
}

/// Rotary embedding of x [B, H, T, D]; the tables are constants.
pub fn rope(x: &Var, tables: &RopeTables) -> Result<Var> {
    let out = k::rope(&x.value, tables)?;
    let t = tables.clone();
    Ok(x.tape.record(out, &[x], Box::new(move |g| Ok(vec![Some(k::rope_backward(g, &t)?)]))))
}

/// Fused attention; returns o [B, Hq, Tq, D].
pub fn attention(q: &Var, kk: &Var, v: &Var, opts: &AttnOptions) -> Result<Var> {
    let (o, lse) = k::attention(&q.value, &kk.value, &v.value, opts)?;
    let (qv, kv, vv, ov, opts) = (q.value.clone(), kk.value.clone(), v.value.clone(), o.clone(), opts.clone());
    Ok(q.tape.record(
        o,
        &[q, kk, v],
        Box::new(move |g| {
            let (dq, dk, dv) = k::attention_backward(&qv, &kv, &vv, &ov, &lse, g, &opts)?;
            Ok(vec![Some(dq), Some(dk), Some(dv)])
        }),
    ))
}

/// Rows of `table` picked by `ids`: [N, D].
pub fn embedding(table: &Var, ids: &[u32]) -> Result<Var> {
    let out = k::gather(&table.value, ids)?;
    let (ids, vocab) = (ids.to_vec(), table.shape()[0]);
    Ok(table.tape.record(out, &[table], Box::new(move |g| Ok(vec![Some(k::scatter_add(g, &ids, vocab)?)]))))
}

/// Mean cross-entropy over the rows whose target is not `IGNORE`: a scalar [1].
pub fn cross_entropy_mean(logits: &Var, targets: &[u32]) -> Result<Var> {
    let valid = targets.iter().filter(|&&t| t != k::IGNORE).count();
    if valid == 0 {
        return Err(Error::shape("cross_entropy_mean", "every target is ignored"));
    }
    let (loss, lse) = k::cross_entropy(&logits.value, targets)?;
    let n = loss.numel();
    let mean = k::scale(&k::row_sum(&loss.reshape(&[1, n])?)?, 1.0 / valid as f32)?;
    let (lv, targets) = (logits.value.clone(), targets.to_vec());
    Ok(logits.tape.record(
        mean,
        &[logits],
        Box::new(move |g| Ok(vec![Some(k::cross_entropy_backward(&lv, &targets, &lse, g, 1.0 / valid as f32)?)])),
    ))
}

/// Joins variables along `axis`; the gradient is sliced back to each.
pub fn concat(xs: &[&Var], axis: usize) -> Result<Var> {
    let first = xs.first().ok_or_else(|| Error::shape("concat", "no tensors given"))?;
    let values: Vec<&Tensor> = xs.iter().map(|x| &x.value).collect();
    let out = k::concat(&values, axis)?;
    let lens: Vec<usize> = xs.iter().map(|x| x.shape()[axis]).collect();
    Ok(first.tape.record(
        out,
        xs,
        Box::new(move |g| {
            let mut off = 0;
            lens.iter()
                .map(|&n| {
                    let part = k::slice(g, axis, off, n);
                    off += n;
                    part.map(Some)
                })
                .collect()
        }),
    ))
}

/// `len` entries of `axis` from `start`; the gradient is zero outside the slice.
pub fn slice(x: &Var, axis: usize, start: usize, len: usize) -> Result<Var> {
    let out = k::slice(&x.value, axis, start, len)?;
    let shape = x.shape().to_vec();
    Ok(x.tape.record(
        out,
        &[x],
        Box::new(move |g| {
            let total = shape[axis];
            let zeros = |n: usize| {
                let mut s = shape.clone();
                s[axis] = n;
                Tensor::zeros(&s, g.device())
            };
            let (before, after) = (zeros(start)?, zeros(total - start - len)?);
            let parts: Vec<&Tensor> = [&before, g, &after].into_iter().filter(|t| t.shape()[axis] > 0).collect();
            Ok(vec![Some(k::concat(&parts, axis)?)])
        }),
    ))
}

/// x · Wᵀ (+ b), the layout of torch's nn.Linear: w is [out, in], x is [.., in].
pub fn linear(x: &Var, w: &Var, b: Option<&Var>) -> Result<Var> {
    let y = matmul(x, w, Transpose::NT)?;
    let Some(b) = b else { return Ok(y) };
    // Nothing else holds the fresh product, so its bias goes into its own buffer. The add
    // still stands on the tape as y + b; its backward reads only y's id.
    let Var { id, value, tracked, tape } = y;
    let out = k::add_into(value, &b.value)?;
    let y = Var { id, value: out.clone(), tracked, tape };
    Ok(record_add(out, &y, b))
}

/// The fused clipped policy loss of logits [N, V] (a scalar [1]) and its statistics; the
/// backward scales the kernel's dlogits by the incoming gradient.
pub fn policy_loss(logits: &Var, x: &k::TokenInputs, c: &k::LossConfig) -> Result<(Var, k::PolicyLoss)> {
    let out = k::policy_loss(&logits.value, x, c)?;
    let loss = Tensor::from_slice(&[out.loss as f32], &[1], logits.value.device())?;
    let d = out.dlogits.clone();
    let v = logits.tape.record(
        loss,
        &[logits],
        Box::new(move |g| {
            let s = g.to_vec()?[0];
            Ok(vec![Some(if s == 1.0 { d.clone() } else { k::scale(&d, s)? })])
        }),
    );
    Ok((v, out))
}

/// Which gradients a fused-linear loss should form: those of the tracked inputs, while recording.
fn linear_grads(hidden: &Var, head: &Var) -> k::LinearGrads {
    let recording = hidden.tape.is_recording();
    k::LinearGrads { hidden: recording && hidden.tracked, head: recording && head.tracked }
}

/// Records a fused-linear loss: its gradients were formed in the forward's chunks (the logits
/// are gone by the backward) and are scaled by the incoming gradient.
fn record_linear(hidden: &Var, head: &Var, loss: f64, dh: Option<Tensor>, dw: Option<Tensor>) -> Result<Var> {
    let value = Tensor::from_slice(&[loss as f32], &[1], hidden.value.device())?;
    Ok(hidden.tape.record(
        value,
        &[hidden, head],
        Box::new(move |g| {
            let s = g.to_vec()?[0];
            let scaled = |d: &Option<Tensor>| d.as_ref().map(|d| if s == 1.0 { Ok(d.clone()) } else { k::scale(d, s) }).transpose();
            Ok(vec![scaled(&dh)?, scaled(&dw)?])
        }),
    ))
}

/// `policy_loss_linear` on the tape: the scalar loss from the final hidden states and the LM head.
pub fn policy_loss_linear(hidden: &Var, head: &Var, x: &k::TokenInputs, c: &k::LossConfig, chunking: k::Chunking) -> Result<(Var, k::PolicyLossLinear)> {
    let out = k::policy_loss_linear(&hidden.value, &head.value, x, c, linear_grads(hidden, head), chunking)?;
    let v = record_linear(hidden, head, out.out.loss, out.dhidden.clone(), out.dhead.clone())?;
    Ok((v, out))
}

/// `cross_entropy_linear` on the tape: the mean cross-entropy from the final hidden states and the LM head.
pub fn cross_entropy_linear(hidden: &Var, head: &Var, targets: &[u32], chunking: k::Chunking) -> Result<Var> {
    let out = k::cross_entropy_linear(&hidden.value, &head.value, targets, linear_grads(hidden, head), chunking)?;
    record_linear(hidden, head, out.loss, out.dhidden, out.dhead)
}

/// A block whose activations are recomputed in the backward rather than kept: `f` runs once
/// without recording, and the tape keeps only the block's inputs. The backward runs `f` again
/// on a private tape from the same input values, and back through it from the incoming
/// gradient. `f` must be deterministic (every CPU kernel is, so the gradients equal a kept
/// block's bit for bit there). Inputs are the block's input and its parameters.
pub fn checkpoint(inputs: &[&Var], f: impl Fn(&[Var]) -> Result<Var> + Send + Sync + 'static) -> Result<Var> {
    let tape = inputs.first().ok_or_else(|| Error::shape("checkpoint", "no inputs"))?.tape.clone();
    let out = {
        let _pause = tape.no_grad();
        f(&inputs.iter().map(|&v| v.clone()).collect::<Vec<_>>())?
    };
    let saved: Vec<(Tensor, bool)> = inputs.iter().map(|v| (v.value.clone(), v.tracked)).collect();
    Ok(tape.record(
        out.value,
        inputs,
        Box::new(move |g| {
            let inner = super::Tape::new();
            let vars: Vec<Var> = saved.iter().map(|(t, tracked)| if *tracked { inner.var(t.clone()) } else { inner.constant(t.clone()) }).collect();
            let y = f(&vars)?;
            if !y.tracked {
                return Ok(vec![None; vars.len()]);
            }
            let grads = inner.backward_seeded(&y, g.clone())?;
            Ok(vars.iter().map(|v| grads.get(v).cloned()).collect())
        }),
    ))
}
