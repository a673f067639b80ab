//! PGPO token weights per response: the kernel behind the token-level advantage reshaping.

use super::{fits_u32, option, same_device, Need};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

pub use crate::backend::cpu::pgpo_weights::{Variant, WeightConfig};

/// Checks the options of `c`, for `op`: an error naming the bad one.
pub fn validate(c: &WeightConfig, op: &'static str) -> Result<()> {
    option(op, "tau", c.tau, Need::Unit)?;
    option(op, "beta", c.beta, Need::NonNegative)?;
    option(op, "eps", c.eps, Need::Positive)?;
    option(op, "floor", c.floor, Need::Unit)
}

/// Weights [B, L] from the dependency scores `tvd` [B, L] and the response mask [B, L].
pub fn pgpo_weights(tvd: &Tensor, mask: &Tensor, c: &WeightConfig) -> Result<Tensor> {
    same_device("pgpo_weights", tvd, mask)?;
    if tvd.rank() != 2 || mask.shape() != tvd.shape() {
        return Err(Error::shape("pgpo_weights", format!("tvd {:?} and mask {:?} must both be [B, L]", tvd.shape(), mask.shape())));
    }
    validate(c, "pgpo_weights")?;
    fits_u32("pgpo_weights", tvd.numel())?;
    let (b, l) = (tvd.shape()[0], tvd.shape()[1]);
    if let (Some(s), Some(m)) = (tvd.as_cpu(), mask.as_cpu()) {
        let mut out = cpu::alloc(s.len());
        if l > 0 {
            cpu::pgpo_weights::pgpo_weights(s, m, l, c, &mut out);
        }
        return Ok(Tensor::from_cpu(out, tvd.shape()));
    }
    let out = Tensor::empty(tvd.shape(), tvd.device())?;
    tvd.device().launch(&Launch {
        family: "pgpo_weights",
        kernel: "pgpo_weights",
        bindings: &[(0, Buf::F32(tvd)), (1, Buf::F32(mask)), (2, Buf::F32(&out))],
        params: Params::new(&[
            word(b),
            word(l),
            c.tau.to_bits(),
            c.beta.to_bits(),
            c.eps.to_bits(),
            c.variant.code(),
            c.floor.to_bits(),
            0,
        ]),
        grid: Grid::Rows { groups: word(b), slot: 7 },
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}
