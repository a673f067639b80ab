//! The fused dual-pass KL between the image-conditioned ("clean") and blind policies.

use super::{fits_u32, option, same_device, Need};
use crate::backend::cpu::kl_dual::KlOut;
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

/// Per-token visual dependency, each [N].
#[derive(Clone, Debug)]
pub struct KlDual {
    pub logp_clean: Tensor,
    pub logp_blind: Tensor,
    /// Exact KL(p_clean || p_blind) over the whole vocabulary.
    pub kl: Tensor,
    /// Schulman's k3 from the sampled token: exp(d) - 1 - d, d = logp_blind - logp_clean.
    pub k3: Tensor,
}

/// Options of PGPO_METHOD.md section 2.
#[derive(Clone, Copy, Debug)]
pub struct KlOptions {
    /// Logits are divided by this before the softmax.
    pub temperature: f32,
    /// d is clamped to [-d_clamp, d_clamp] in k3 (ours; default 20).
    pub d_clamp: f32,
}

impl Default for KlOptions {
    fn default() -> Self {
        KlOptions { temperature: 1.0, d_clamp: 20.0 }
    }
}

/// From clean and blind logits [N, V] and the sampled tokens [N], in one pass over both.
pub fn kl_dual(clean: &Tensor, blind: &Tensor, tokens: &[u32], o: KlOptions) -> Result<KlDual> {
    same_device("kl_dual", clean, blind)?;
    if clean.rank() != 2 || blind.shape() != clean.shape() || clean.shape()[0] != tokens.len() || clean.shape()[1] == 0 {
        return Err(Error::shape(
            "kl_dual",
            format!("clean {:?} and blind {:?} must both be [N, V] with N = {} tokens", clean.shape(), blind.shape(), tokens.len()),
        ));
    }
    option("kl_dual", "temperature", o.temperature, Need::Positive)?;
    option("kl_dual", "d_clamp", o.d_clamp, Need::PositiveOrInf)?;
    let (n, v) = (tokens.len(), clean.shape()[1]);
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= v) {
        return Err(Error::Index { op: "kl_dual", index: bad as usize, size: v });
    }
    fits_u32("kl_dual", clean.numel())?;
    let inv_t = 1.0 / o.temperature;
    if let (Some(a), Some(b)) = (clean.as_cpu(), blind.as_cpu()) {
        let mut bufs: Vec<Vec<f32>> = (0..4).map(|_| cpu::alloc(n)).collect();
        let [lc, lb, kl, k3] = &mut bufs[..] else { unreachable!() };
        cpu::kl_dual::kl_dual(a, b, tokens, v, inv_t, o.d_clamp, KlOut { logp_clean: lc, logp_blind: lb, kl, k3 });
        let mut t = bufs.into_iter().map(|b| Tensor::from_cpu(b, &[n]));
        let mut next = || t.next().expect("four outputs");
        return Ok(KlDual { logp_clean: next(), logp_blind: next(), kl: next(), k3: next() });
    }
    let dev = clean.device();
    let toks = dev.upload_u32(tokens)?;
    let out = KlDual {
        logp_clean: Tensor::empty(&[n], dev)?,
        logp_blind: Tensor::empty(&[n], dev)?,
        kl: Tensor::empty(&[n], dev)?,
        k3: Tensor::empty(&[n], dev)?,
    };
    dev.launch(&Launch {
        family: "kl_dual",
        kernel: "kl_dual",
        bindings: &[
            (0, Buf::F32(clean)),
            (1, Buf::F32(blind)),
            (2, Buf::F32(&out.logp_clean)),
            (4, Buf::U32(&toks)),
            (5, Buf::F32(&out.logp_blind)),
            (6, Buf::F32(&out.kl)),
            (7, Buf::F32(&out.k3)),
        ],
        params: Params::new(&[word(n), word(v), inv_t.to_bits(), o.d_clamp.to_bits(), 0]),
        grid: Grid::Rows { groups: word(n), slot: 4 },
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}
