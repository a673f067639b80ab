//! The weights as variables on a tape: tracked where they are trained, constants elsewhere
//! (rollouts, the blind pass, frozen parts), looked up by name; and the linear layers, with
//! their LoRA adapters where the weights carry some.

use super::weights::Weights;
use super::lora;
use crate::autograd::{ops as ag, Grads, Tape, Var};
use crate::error::{Error, Result};
use crate::ops::Transpose;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

pub struct ParamVars {
    vars: HashMap<String, Var>,
    order: Vec<String>,
    /// The adapted layers (module name) and their LoRA scale.
    lora: Arc<HashMap<String, f32>>,
    /// LoRA dropout on the adapters' input while training: (p, seed of this forward).
    dropout: Option<(f32, u32)>,
}

impl ParamVars {
    /// Every parameter on `tape`; those for which `trainable(name)` holds are tracked.
    pub fn new(tape: &Tape, weights: &Weights, trainable: impl Fn(&str) -> bool) -> ParamVars {
        let mut vars = HashMap::new();
        for (name, t) in weights.names().iter().zip(weights.tensors()) {
            let v = if trainable(name) { tape.var(t.clone()) } else { tape.constant(t.clone()) };
            vars.insert(name.clone(), v);
        }
        let lora = weights.lora.as_ref().map(|l| l.modules.iter().map(|m| (m.name.clone(), m.scale)).collect()).unwrap_or_default();
        ParamVars { vars, order: weights.names().to_vec(), lora: Arc::new(lora), dropout: None }
    }

    /// Every parameter tracked.
    pub fn trainable(tape: &Tape, weights: &Weights) -> ParamVars {
        ParamVars::new(tape, weights, |_| true)
    }

    /// Nothing tracked: a forward that records no backward.
    pub fn frozen(tape: &Tape, weights: &Weights) -> ParamVars {
        ParamVars::new(tape, weights, |_| false)
    }

    /// The parameters whose names start with `prefix`, in the model's order.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, Var)> {
        self.order.iter().filter(|n| n.starts_with(prefix)).map(|n| (n.clone(), self.vars[n].clone())).collect()
    }

    /// Named variables with these adapters' scales (a recomputed block's parameters on its
    /// private tape).
    pub fn with_vars(&self, named: impl IntoIterator<Item = (String, Var)>) -> ParamVars {
        let (mut vars, mut order) = (HashMap::new(), Vec::new());
        for (n, v) in named {
            order.push(n.clone());
            vars.insert(n, v);
        }
        ParamVars { vars, order, lora: self.lora.clone(), dropout: self.dropout }
    }

    /// LoRA dropout with probability `p` on the input of every adapter that trains (tracked);
    /// frozen adapters (rollouts, scoring, evaluation) see none. `seed` draws this forward's
    /// masks, one per layer, which a recomputed block draws again identically. Off when `p` is 0.
    pub fn with_lora_dropout(mut self, p: f32, seed: u32) -> ParamVars {
        self.dropout = (p > 0.0).then_some((p, seed));
        self
    }

    /// The linear layer `module` (weight `{module}.weight`, and `{module}.bias` when `bias`)
    /// of x [N, in], plus its adapter where it has one: x W^T + b + s (x A^T) B^T.
    pub fn linear(&self, x: &Var, module: &str, bias: bool) -> Result<Var> {
        let b = if bias { Some(self.get(&format!("{module}.bias"))?) } else { None };
        let y = ag::linear(x, self.get(&format!("{module}.weight"))?, b)?;
        let Some(&s) = self.lora.get(module) else { return Ok(y) };
        let a = self.get(&lora::a_name(module))?;
        let dropped = match self.dropout {
            // Only where the adapter trains, whether or not the tape records right now (a
            // recomputed block's first pass does not); each layer's mask from the forward's
            // seed and the layer's name (FNV-1a).
            Some((p, seed)) if a.is_tracked() => ag::dropout(x, p, module.bytes().fold(0x811c_9dc5u32 ^ seed, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193)))?,
            _ => x.clone(),
        };
        // The scale goes on the rank-r product, the narrowest tensor of the three.
        let low = ag::scale(&ag::matmul(&dropped, a, Transpose::NT)?, s)?;
        ag::add(&y, &ag::matmul(&low, self.get(&lora::b_name(module))?, Transpose::NT)?)
    }

    pub fn get(&self, name: &str) -> Result<&Var> {
        self.vars.get(name).ok_or_else(|| Error::shape("model", format!("no parameter named `{name}`")))
    }

    /// (name, gradient) for every tracked parameter the loss reached, in the model's order.
    pub fn gradients(&self, grads: &Grads) -> Vec<(String, Tensor)> {
        self.order.iter().filter_map(|n| grads.get(&self.vars[n]).map(|g| (n.clone(), g.clone()))).collect()
    }
}
