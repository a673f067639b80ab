//! Fused cross-entropy over the vocabulary (see shaders/cross_entropy.wgsl).
//! Forward streams each row once for (max, sum) and writes loss and lse; backward writes
//! dlogits = g * (softmax - onehot) from lse. No [N, V] probability tensor exists.

use rayon::prelude::*;

/// Marks a row whose target is ignored (loss 0, gradient 0).
pub const IGNORE: u32 = u32::MAX;

pub fn cross_entropy_forward(logits: &[f32], targets: &[u32], v: usize, loss: &mut [f32], lse: &mut [f32]) {
    loss.par_iter_mut().zip(lse.par_iter_mut()).enumerate().for_each(|(r, (l, s))| {
        let row = &logits[r * v..(r + 1) * v];
        let (m, sum) = super::softmax::row_stats(row);
        *s = m + sum.ln();
        *l = if targets[r] == IGNORE { 0.0 } else { *s - row[targets[r] as usize] };
    });
}

/// dlogits[r, :] = dloss[r % dloss.len()] * scale * (exp(logits - lse) - onehot(target)).
pub fn cross_entropy_backward(
    logits: &[f32],
    targets: &[u32],
    lse: &[f32],
    dloss: &[f32],
    scale: f32,
    v: usize,
    dlogits: &mut [f32],
) {
    dlogits.par_chunks_mut(v).enumerate().for_each(|(r, d)| {
        let row = &logits[r * v..(r + 1) * v];
        if targets[r] == IGNORE {
            d.fill(0.0);
            return;
        }
        let g = dloss[r % dloss.len()] * scale;
        super::rowstats::exp_map_stream(row, 1.0, lse[r], g, d);
        d[targets[r] as usize] -= g;
    });
}
