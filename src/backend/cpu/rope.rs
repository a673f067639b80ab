//! Rotary embedding, rotate-half convention (see shaders/rope.wgsl):
//!   out = x * cos + rotate_half(x) * sign * sin, rotate_half(x) = [-x2, x1].
//! x is [B, H, T, D] and the tables [B, T, D] (or [T, D], shared over the batch). The
//! backward is the same map with sign = -1. The three position schemes (1-D, multimodal
//! M-RoPE, vision 2-D) differ only in their tables: see `ops::rope`.

use rayon::prelude::*;

pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], heads: usize, t: usize, d: usize, sign: f32, out: &mut [f32]) {
    let h2 = d / 2;
    let table_len = cos.len();
    out.par_chunks_mut(d).enumerate().for_each(|(row, o)| {
        // row = ((b * H + h) * T + ti)
        let ti = row % t;
        let b = row / (t * heads);
        let tab = (b * t * d + ti * d) % table_len;
        let xr = &x[row * d..(row + 1) * d];
        for i in 0..d {
            let rot = if i < h2 { -xr[i + h2] } else { xr[i - h2] };
            o[i] = xr[i] * cos[tab + i] + rot * sign * sin[tab + i];
        }
    });
}
