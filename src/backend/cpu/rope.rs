//! Rotary embedding, rotate-half convention (see shaders/rope.wgsl):
//!   out = x * cos + rotate_half(x) * sign * sin, rotate_half(x) = [-x2, x1].
//! x is [B, H, T, D] and the tables [B, T, D] (or [T, D], shared over the batch). The
//! backward is the same map with sign = -1. The three position schemes (1-D, multimodal
//! M-RoPE, vision 2-D) differ only in their tables: see `ops::rope`.

use rayon::prelude::*;

/// `d` is even and non-zero (`ops::rope` checks it).
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], heads: usize, t: usize, d: usize, sign: f32, out: &mut [f32]) {
    let h2 = d / 2;
    let table_len = cos.len();
    out.par_chunks_mut(d).enumerate().for_each(|(row, o)| {
        // row = ((b * H + h) * T + ti)
        let ti = row % t;
        let b = row / (t * heads);
        let tab = (b * t * d + ti * d) % table_len;
        let xr = &x[row * d..(row + 1) * d];
        let (c, s) = (&cos[tab..tab + d], &sin[tab..tab + d]);
        // The two halves apart, so each loop is branch-free and vectorises.
        let (o1, o2) = o.split_at_mut(h2);
        let (x1, x2) = xr.split_at(h2);
        for i in 0..h2 {
            o1[i] = x1[i] * c[i] - x2[i] * sign * s[i];
        }
        for i in 0..d - h2 {
            o2[i] = x2[i] * c[h2 + i] + x1[i] * sign * s[h2 + i];
        }
    });
}
