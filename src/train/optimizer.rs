//! AdamW over a list of parameter tensors, with global-norm gradient clipping. Moments exist
//! only for parameters that get gradients (made at their first step): a frozen parameter
//! (the vision tower when it does not train) has no state and is never touched, so weight
//! decay cannot shrink it and it can stay in its stored dtype.

use crate::error::{Error, Result};
use crate::ops::{self, option, AdamWStep, Need};
use crate::tensor::Tensor;

#[derive(Clone, Debug)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Gradients are scaled down so their global L2 norm is at most this (None: no clipping).
    pub max_grad_norm: Option<f32>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, max_grad_norm: Some(1.0) }
    }
}

pub struct AdamW {
    pub config: AdamWConfig,
    step: u32,
    m: Vec<Option<Tensor>>,
    v: Vec<Option<Tensor>>,
    /// Parameter shapes, to check restored moments against.
    shapes: Vec<Vec<usize>>,
}

impl AdamW {
    /// An optimizer for `params` (no moments yet: each is made, zero, at its parameter's
    /// first step).
    pub fn new(params: &[Tensor], config: AdamWConfig) -> Result<AdamW> {
        let c = &config;
        ops::adamw::validate_hyper("AdamW", c.lr, (c.beta1, c.beta2), c.eps, c.weight_decay)?;
        if let Some(clip) = c.max_grad_norm {
            option("AdamW", "max_grad_norm", clip, Need::Positive)?;
        }
        let n = params.len();
        Ok(AdamW { config, step: 0, m: vec![None; n], v: vec![None; n], shapes: params.iter().map(|p| p.shape().to_vec()).collect() })
    }

    /// The first and second moments, in parameter order, of the parameters that have them
    /// (for checkpoints).
    pub fn moments(&self) -> (&[Option<Tensor>], &[Option<Tensor>]) {
        (&self.m, &self.v)
    }

    /// Puts back moments (None for a parameter that has none) and the step count saved by a
    /// checkpoint.
    pub fn restore(&mut self, m: Vec<Option<Tensor>>, v: Vec<Option<Tensor>>, step: u32) -> Result<()> {
        let same = |a: &[Option<Tensor>]| a.len() == self.shapes.len() && a.iter().zip(&self.shapes).all(|(x, s)| x.as_ref().is_none_or(|x| x.shape() == s.as_slice()));
        if !same(&m) || !same(&v) || m.iter().zip(&v).any(|(a, b)| a.is_some() != b.is_some()) {
            return Err(Error::shape("adamw", "the saved optimizer moments do not match the parameters"));
        }
        (self.m, self.v, self.step) = (m, v, step);
        Ok(())
    }

    /// Makes the (zero) moments of the parameters `trained` selects now instead of at their
    /// first step: the same first step, but holding what every later step holds, so a single
    /// measured step shows the steady state's memory (`pgpo bench`'s 3b step).
    pub fn make_moments(&mut self, params: &[Tensor], trained: impl Fn(usize) -> bool) -> Result<()> {
        for (i, p) in params.iter().enumerate() {
            if trained(i) && self.m[i].is_none() {
                (self.m[i], self.v[i]) = (Some(Tensor::zeros(p.shape(), p.device())?), Some(Tensor::zeros(p.shape(), p.device())?));
            }
        }
        Ok(())
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Global L2 norm of the gradients.
    pub fn grad_norm(grads: &[&Tensor]) -> Result<f64> {
        let mut total = 0.0;
        for g in grads {
            total += ops::sum_squares(g)?;
        }
        Ok(total.sqrt())
    }

    /// One step of every parameter: returns the new parameters and the gradient norm before
    /// clipping. The old parameters are untouched, and a bad input (a non-finite norm, a
    /// gradient of the wrong shape) is refused before any moment changes.
    pub fn step(&mut self, params: &[Tensor], grads: &[&Tensor]) -> Result<(Vec<Tensor>, f64)> {
        let some: Vec<Option<&Tensor>> = grads.iter().map(|&g| Some(g)).collect();
        let (new, norm) = self.step_some(params, &some)?;
        Ok((new.into_iter().zip(params).map(|(n, p)| n.unwrap_or_else(|| p.clone())).collect(), norm))
    }

    /// One step of the parameters that have a gradient (None: frozen, left as it is, no
    /// moments): the new value of each stepped parameter, and the gradient norm before
    /// clipping.
    pub fn step_some(&mut self, params: &[Tensor], grads: &[Option<&Tensor>]) -> Result<(Vec<Option<Tensor>>, f64)> {
        if params.len() != self.m.len() || grads.len() != params.len() {
            return Err(Error::shape("adamw", format!("{} params and {} grads for {} slots", params.len(), grads.len(), self.m.len())));
        }
        // Checked before any moment changes: past this point only a device fault can fail.
        for (p, g) in params.iter().zip(grads) {
            if let Some(g) = g
                && g.shape() != p.shape()
            {
                return Err(Error::shape("adamw", format!("a gradient of shape {:?} for a parameter of shape {:?}", g.shape(), p.shape())));
            }
        }
        let present: Vec<&Tensor> = grads.iter().flatten().copied().collect();
        let norm = Self::grad_norm(&present)?;
        if !norm.is_finite() {
            return Err(Error::shape("adamw", format!("gradient norm is {norm}; refusing the step")));
        }
        let c = &self.config;
        let grad_scale = match c.max_grad_norm {
            Some(max) if norm > f64::from(max) => (f64::from(max) / norm) as f32,
            _ => 1.0,
        };
        self.step += 1;
        let t = self.step as i32;
        let s = AdamWStep {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            bias1: 1.0 - c.beta1.powi(t),
            bias2: 1.0 - c.beta2.powi(t),
            grad_scale,
        };
        let mut out = Vec::with_capacity(params.len());
        // Each parameter's moments are replaced as soon as its new ones exist, so the step
        // holds one parameter's old moments beside the new, not a second copy of all of them
        // (for a full fine-tune that copy was two more f32 values per parameter at the peak).
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let Some(g) = g else {
                out.push(None);
                continue;
            };
            let zeros = || Tensor::zeros(p.shape(), p.device());
            let (m, v) = match (&self.m[i], &self.v[i]) {
                (Some(m), Some(v)) => (m.clone(), v.clone()),
                _ => (zeros()?, zeros()?),
            };
            let (p2, m, v) = ops::adamw(p, g, &m, &v, s)?;
            out.push(Some(p2));
            (self.m[i], self.v[i]) = (Some(m), Some(v));
        }
        Ok((out, norm))
    }
}
