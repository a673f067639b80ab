//! Softmax and log-softmax over the last axis (see shaders/softmax.wgsl).

use rayon::prelude::*;

/// (max, sum of exp(x - max)) of one row.
pub fn row_stats(row: &[f32]) -> (f32, f32) {
    let s = super::rowstats::lse_stats(row, 1.0);
    (s.max, s.sum)
}

fn rows(x: &[f32], cols: usize, out: &mut [f32], f: impl Fn(&[f32], &mut [f32]) + Sync) {
    let per = super::rows_per_task(cols) * cols;
    out.par_chunks_mut(per).zip(x.par_chunks(per)).for_each(|(o, xs)| {
        for (o, row) in o.chunks_mut(cols).zip(xs.chunks(cols)) {
            f(row, o);
        }
    });
}

pub fn softmax(x: &[f32], cols: usize, out: &mut [f32]) {
    rows(x, cols, out, |row, o| {
        // One exp per element: exp(x - max) stored, then rescaled while the row is in cache.
        let m = super::rowstats::row_max(row, 1.0);
        let (s, _) = super::rowstats::exp_store(row, 1.0, m, o);
        let inv = 1.0 / s;
        o.iter_mut().for_each(|x| *x *= inv);
    });
}

pub fn log_softmax(x: &[f32], cols: usize, out: &mut [f32]) {
    rows(x, cols, out, |row, o| {
        let (m, s) = row_stats(row);
        let lse = m + s.ln();
        for (o, &v) in o.iter_mut().zip(row) {
            *o = v - lse;
        }
    });
}
