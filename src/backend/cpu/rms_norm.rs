//! RMSNorm with a weight, and its backward (see shaders/rms_norm.wgsl).
//!   y = x * rstd * w,  rstd = 1 / sqrt(mean(x^2) + eps), per row of the last axis.

use rayon::prelude::*;

/// Writes y and the per-row rstd (kept for the backward).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    let d = w.len();
    let per = super::rows_per_task(d);
    y.par_chunks_mut(per * d).zip(rstd.par_chunks_mut(per)).zip(x.par_chunks(per * d)).for_each(|((y, r), x)| {
        for ((y, r), x) in y.chunks_mut(d).zip(r.iter_mut()).zip(x.chunks(d)) {
            let ms = x.iter().map(|v| v * v).sum::<f32>() / d as f32;
            *r = 1.0 / (ms + eps).sqrt();
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * *r * w;
            }
        }
    });
}

/// dx = rstd * (w dy - xhat * mean(w dy xhat)), xhat = x * rstd.
pub fn rms_norm_backward(x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32]) {
    let d = w.len();
    let per = super::rows_per_task(d);
    dx.par_chunks_mut(per * d)
        .zip(x.par_chunks(per * d))
        .zip(dy.par_chunks(per * d))
        .zip(rstd.par_chunks(per))
        .for_each(|(((dx, x), dy), r)| {
            for (((dx, x), dy), &r) in dx.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)).zip(r) {
                let dot: f32 = x.iter().zip(dy).zip(w).map(|((x, g), w)| w * g * x * r).sum::<f32>() / d as f32;
                for i in 0..d {
                    dx[i] = r * (w[i] * dy[i] - x[i] * r * dot);
                }
            }
        });
}

/// dw[c] = sum over rows of dy[r, c] * x[r, c] * rstd[r].
pub fn rms_norm_dweight(x: &[f32], rstd: &[f32], dy: &[f32], dw: &mut [f32]) {
    let d = dw.len();
    dw.par_iter_mut().enumerate().for_each(|(c, dw)| {
        *dw = rstd.iter().enumerate().map(|(r, &s)| dy[r * d + c] * x[r * d + c] * s).sum();
    });
}
