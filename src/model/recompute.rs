//! Recomputation: a decoder layer or vision block whose activations are not kept on the tape
//! but recomputed in the backward from its input (`autograd::ops::checkpoint`). The tape then
//! holds one [tokens, hidden] input per block instead of every intermediate of it.

use super::params::ParamVars;
use crate::autograd::{ops as ag, Var};
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// What the training forward keeps for the backward.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Recompute {
    /// Every activation (the fastest backward, the most memory).
    #[default]
    None,
    /// Only each decoder layer's and vision block's input; the block runs again in the backward.
    Layer,
}

/// `block(h, params)` over the parameters named `prefix*`, recomputed in the backward.
pub(crate) fn recomputed(h: &Var, pv: &ParamVars, prefix: &str, block: impl Fn(&Var, &ParamVars) -> Result<Var> + Send + Sync + 'static) -> Result<Var> {
    let params = pv.with_prefix(prefix);
    let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let inputs: Vec<&Var> = std::iter::once(h).chain(params.iter().map(|(_, v)| v)).collect();
    let scales = pv.with_vars([]);
    ag::checkpoint(&inputs, move |vars| {
        let sub = scales.with_vars(names.iter().cloned().zip(vars[1..].iter().cloned()));
        block(&vars[0], &sub)
    })
}
