//! Fused AdamW step and the sum of squares behind the global gradient norm
//! (see shaders/adamw.wgsl).

use rayon::prelude::*;

/// Hyper-parameters of one step; `grad_scale` applies gradient clipping.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 - beta1^t and 1 - beta2^t.
    pub bias1: f32,
    pub bias2: f32,
    pub grad_scale: f32,
}

/// m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g^2;
/// p' = p - lr (wd p + (m'/bias1) / (sqrt(v'/bias2) + eps)), with g = grad * grad_scale.
pub fn adamw(p: &[f32], g: &[f32], m: &[f32], v: &[f32], s: AdamWStep, p2: &mut [f32], m2: &mut [f32], v2: &mut [f32]) {
    p2.par_iter_mut().zip(m2.par_iter_mut()).zip(v2.par_iter_mut()).enumerate().for_each(|(i, ((p2, m2), v2))| {
        let gi = g[i] * s.grad_scale;
        *m2 = s.beta1 * m[i] + (1.0 - s.beta1) * gi;
        *v2 = s.beta2 * v[i] + (1.0 - s.beta2) * gi * gi;
        let update = (*m2 / s.bias1) / ((*v2 / s.bias2).sqrt() + s.eps);
        *p2 = p[i] - s.lr * (s.weight_decay * p[i] + update);
    });
}

/// Partial sums of squares, one per block of `block` elements.
pub fn sum_squares(x: &[f32], block: usize, out: &mut [f32]) {
    out.par_iter_mut().zip(x.par_chunks(block)).for_each(|(o, c)| *o = c.iter().map(|v| v * v).sum());
}
