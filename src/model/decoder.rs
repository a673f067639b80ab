//! The Qwen2 decoder layer: RMSNorm, grouped-query attention with q/k/v biases and M-RoPE,
//! RMSNorm, the SiLU-gated MLP; residuals around both halves. Activations are [B * T, H].

use super::config::TextConfig;
use super::kv_cache::KvCache;
use super::params::ParamVars;
use crate::autograd::{ops as ag, Var};
use crate::error::Result;
use crate::ops::{AttnOptions, RopeTables};

/// The per-batch context every layer shares.
pub struct Context<'a> {
    pub batch: usize,
    pub seq: usize,
    pub tables: &'a RopeTables,
    pub attention: &'a AttnOptions,
}

/// [B * T, heads * D] -> [B, heads, T, D].
fn heads(x: &Var, cx: &Context, n: usize, d: usize) -> Result<Var> {
    ag::permute(&ag::reshape(x, &[cx.batch, cx.seq, n, d])?, &[0, 2, 1, 3])
}

/// One layer. With a cache, the new keys and values are written into it; a prefill (empty
/// cache) attends over its own, a decode step over the whole cache.
pub fn layer(x: &Var, pv: &ParamVars, i: usize, c: &TextConfig, cx: &Context, cache: Option<&mut KvCache>) -> Result<Var> {
    let (q, k, v) = queries_keys_values(x, pv, i, c, cx)?;
    let (k, v) = match cache {
        Some(kv) => {
            kv.write(i, k.value(), v.value())?;
            if kv.is_empty() {
                (k, v)
            } else {
                let (ck, cv) = kv.layer(i);
                (x.tape().constant(ck.clone()), x.tape().constant(cv.clone()))
            }
        }
        None => (k, v),
    };
    let attended = ag::attention(&q, &k, &v, cx.attention)?;
    finish(x, &attended, pv, i, c, cx)
}

/// The layer's first half up to attention: q [B, Hq, T, D], k and v [B, Hkv, T, D], rotated.
pub fn queries_keys_values(x: &Var, pv: &ParamVars, i: usize, c: &TextConfig, cx: &Context) -> Result<(Var, Var, Var)> {
    let p = |s: &str| pv.get(&format!("model.layers.{i}.{s}"));
    let (d, hq, hkv) = (c.head_dim(), c.num_attention_heads, c.num_key_value_heads);
    let h = ag::rms_norm(x, p("input_layernorm.weight")?, c.rms_norm_eps as f32)?;
    let proj = |name: &str, n: usize| -> Result<Var> {
        let y = pv.linear(&h, &format!("model.layers.{i}.self_attn.{name}"), true)?;
        heads(&y, cx, n, d)
    };
    let q = ag::rope(&proj("q_proj", hq)?, cx.tables)?;
    let k = ag::rope(&proj("k_proj", hkv)?, cx.tables)?;
    Ok((q, k, proj("v_proj", hkv)?))
}

/// The layer after attention: the output projection of `attended` [B, Hq, T, D], the residual,
/// and the MLP half.
pub fn finish(x: &Var, attended: &Var, pv: &ParamVars, i: usize, c: &TextConfig, cx: &Context) -> Result<Var> {
    let l = format!("model.layers.{i}");
    let (d, hq, eps) = (c.head_dim(), c.num_attention_heads, c.rms_norm_eps as f32);
    let o = ag::permute(attended, &[0, 2, 1, 3])?;
    let o = pv.linear(&ag::reshape(&o, &[cx.batch * cx.seq, hq * d])?, &format!("{l}.self_attn.o_proj"), false)?;
    let x = ag::add(x, &o)?;
    let h = ag::rms_norm(&x, pv.get(&format!("{l}.post_attention_layernorm.weight"))?, eps)?;
    let gate = pv.linear(&h, &format!("{l}.mlp.gate_proj"), false)?;
    let up = pv.linear(&h, &format!("{l}.mlp.up_proj"), false)?;
    let mlp = pv.linear(&ag::swiglu(&gate, &up)?, &format!("{l}.mlp.down_proj"), false)?;
    ag::add(&x, &mlp)
}
