//! The weights as variables on a tape: tracked where they are trained, constants elsewhere
//! (rollouts, the blind pass, frozen parts), looked up by name.

use super::weights::Weights;
use crate::autograd::{Grads, Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;

pub struct ParamVars {
    vars: HashMap<String, Var>,
    order: Vec<String>,
}

impl ParamVars {
    /// Every parameter on `tape`; those for which `trainable(name)` holds are tracked.
    pub fn new(tape: &Tape, weights: &Weights, trainable: impl Fn(&str) -> bool) -> ParamVars {
        let mut vars = HashMap::new();
        for (name, t) in weights.names().iter().zip(weights.tensors()) {
            let v = if trainable(name) { tape.var(t.clone()) } else { tape.constant(t.clone()) };
            vars.insert(name.clone(), v);
        }
        ParamVars { vars, order: weights.names().to_vec() }
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

    /// Named variables (a recomputed block's parameters on its private tape).
    pub fn from_vars(named: impl IntoIterator<Item = (String, Var)>) -> ParamVars {
        let (mut vars, mut order) = (HashMap::new(), Vec::new());
        for (n, v) in named {
            order.push(n.clone());
            vars.insert(n, v);
        }
        ParamVars { vars, order }
    }

    pub fn get(&self, name: &str) -> Result<&Var> {
        self.vars.get(name).ok_or_else(|| Error::shape("model", format!("no parameter named `{name}`")))
    }

    /// (name, gradient) for every tracked parameter the loss reached, in the model's order.
    pub fn gradients(&self, grads: &Grads) -> Vec<(String, Tensor)> {
        self.order.iter().filter_map(|n| grads.get(&self.vars[n]).map(|g| (n.clone(), g.clone()))).collect()
    }
}
