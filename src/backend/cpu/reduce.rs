//! Row reductions over the last axis (see shaders/reduce.wgsl).

use rayon::prelude::*;

fn rows(x: &[f32], cols: usize, out: &mut [f32], f: impl Fn(&[f32]) -> f32 + Sync) {
    let per = super::rows_per_task(cols);
    out.par_chunks_mut(per).zip(x.par_chunks(per * cols)).for_each(|(o, xs)| {
        for (o, row) in o.iter_mut().zip(xs.chunks(cols)) {
            *o = f(row);
        }
    });
}

pub fn row_sum(x: &[f32], cols: usize, out: &mut [f32]) {
    rows(x, cols, out, |r| r.iter().sum());
}

/// The row's maximum; NaN if the row holds a NaN (as torch.amax), unlike `f32::max`.
pub fn row_max(x: &[f32], cols: usize, out: &mut [f32]) {
    rows(x, cols, out, |r| r.iter().copied().fold(f32::NEG_INFINITY, |a, b| if a > b || a.is_nan() { a } else { b }));
}
