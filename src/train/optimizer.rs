//! AdamW over a list of parameter tensors, with global-norm gradient clipping.

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
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamW {
    /// Zero moments shaped like `params`.
    pub fn new(params: &[Tensor], config: AdamWConfig) -> Result<AdamW> {
        let c = &config;
        ops::adamw::validate_hyper("AdamW", c.lr, (c.beta1, c.beta2), c.eps, c.weight_decay)?;
        if let Some(clip) = c.max_grad_norm {
            option("AdamW", "max_grad_norm", clip, Need::Positive)?;
        }
        let zeros = |p: &Tensor| Tensor::zeros(p.shape(), p.device());
        Ok(AdamW { config, step: 0, m: params.iter().map(zeros).collect::<Result<_>>()?, v: params.iter().map(zeros).collect::<Result<_>>()? })
    }

    /// The first and second moments, in parameter order (for checkpoints).
    pub fn moments(&self) -> (&[Tensor], &[Tensor]) {
        (&self.m, &self.v)
    }

    /// Puts back moments and the step count saved by a checkpoint.
    pub fn restore(&mut self, m: Vec<Tensor>, v: Vec<Tensor>, step: u32) -> Result<()> {
        let same = |a: &[Tensor], b: &[Tensor]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.shape() == y.shape());
        if !same(&m, &self.m) || !same(&v, &self.v) {
            return Err(Error::shape("adamw", "the saved optimizer moments do not match the parameters"));
        }
        (self.m, self.v, self.step) = (m, v, step);
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

    /// One step: returns the new parameters and the gradient norm before clipping. The old
    /// parameters are untouched, so an error leaves the model as it was.
    pub fn step(&mut self, params: &[Tensor], grads: &[&Tensor]) -> Result<(Vec<Tensor>, f64)> {
        if params.len() != self.m.len() || grads.len() != params.len() {
            return Err(Error::shape("adamw", format!("{} params and {} grads for {} slots", params.len(), grads.len(), self.m.len())));
        }
        let norm = Self::grad_norm(grads)?;
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
        let (mut m2, mut v2) = (Vec::new(), Vec::new());
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let (p2, m, v) = ops::adamw(p, g, &self.m[i], &self.v[i], s)?;
            out.push(p2);
            m2.push(m);
            v2.push(v);
        }
        self.m = m2;
        self.v = v2;
        Ok((out, norm))
    }
}
