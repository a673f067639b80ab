//! Chroma upsampling as libjpeg-turbo's jdsample.c does it with do_fancy_upsampling on (its
//! default, which Pillow keeps): triangle filters for 2:1 ratios (h2v1, h1v2, h2v2, with their
//! alternating rounding biases), box replication for other integer ratios (int_upsample), and
//! box replication too for 2:1 ratios on components at most 2 samples wide.
//!
//! jdmainct.c feeds the vertical filters the true neighbouring rows, with the first row
//! standing in above the top and the last real row (downsampled_height - 1) below the bottom;
//! the horizontal filters likewise clamp at 0 and downsampled_width - 1.

use super::markers::Stop;

#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Method {
    /// Full-size component: rows are used as they are.
    Full,
    /// h2v1_fancy_upsample.
    H2V1,
    /// h1v2_fancy_upsample.
    H1V2,
    /// h2v2_fancy_upsample.
    H2V2,
    /// int_upsample (and h2v1_upsample / h2v2_upsample, which give the same).
    Int { h: usize, v: usize },
}

impl Method {
    /// jinit_upsampler's choice for a component with factors (h, v) of (hmax, vmax).
    pub fn choose(h: usize, v: usize, hmax: usize, vmax: usize, dw: usize) -> Result<Method, Stop> {
        Ok(if h == hmax && v == vmax {
            Method::Full
        } else if h * 2 == hmax && v == vmax {
            if dw > 2 { Method::H2V1 } else { Method::Int { h: 2, v: 1 } }
        } else if h == hmax && v * 2 == vmax {
            Method::H1V2
        } else if h * 2 == hmax && v * 2 == vmax {
            if dw > 2 { Method::H2V2 } else { Method::Int { h: 2, v: 2 } }
        } else if hmax.is_multiple_of(h) && vmax.is_multiple_of(v) {
            Method::Int { h: hmax / h, v: vmax / v }
        } else {
            return Err(Stop::Bad(format!("JPEG has a fractional sampling ratio ({h}x{v} against {hmax}x{vmax}), which libjpeg does not support")));
        })
    }

    /// For output row `y`: the component row nearest to it and, for the vertical filters, the
    /// other row it blends with (the row above for even `y`, below for odd), clamped.
    #[inline]
    pub fn rows(self, y: usize, dh: usize) -> (usize, usize) {
        match self {
            Method::Full | Method::H2V1 => (y, y),
            Method::Int { v, .. } => (y / v, y / v),
            Method::H1V2 | Method::H2V2 => {
                let near = y / 2;
                let far = if y.is_multiple_of(2) { near.saturating_sub(1) } else { (near + 1).min(dh - 1) };
                (near, far)
            }
        }
    }
}

/// h2v1_fancy_upsample on one row of `dw` (> 2) samples; writes 2 * dw samples. Each pair
/// of neighbours (a, b) gives the output just right of a, 3/4 a + 1/4 b (rounded with +2),
/// and the one just left of b, 3/4 b + 1/4 a (rounded with +1); the ends are copies.
pub(super) fn h2v1(inp: &[u8], dw: usize, out: &mut [u8]) {
    let inp = &inp[..dw];
    let out = &mut out[..2 * dw];
    out[0] = inp[0];
    out[2 * dw - 1] = inp[dw - 1];
    for (o, (&a, &b)) in out[1..2 * dw - 1].chunks_exact_mut(2).zip(inp.iter().zip(&inp[1..])) {
        let (a, b) = (u16::from(a), u16::from(b));
        o[0] = ((a * 3 + b + 2) >> 2) as u8;
        o[1] = ((b * 3 + a + 1) >> 2) as u8;
    }
}

/// h1v2_fancy_upsample: one output row from its nearest and next-nearest input rows.
pub(super) fn h1v2(near: &[u8], far: &[u8], bias: u16, out: &mut [u8]) {
    for ((o, &a), &b) in out.iter_mut().zip(near).zip(far) {
        *o = ((u16::from(a) * 3 + u16::from(b) + bias) >> 2) as u8;
    }
}

/// h2v2_fancy_upsample: one output row (2 * dw samples, dw > 2) from its nearest and
/// next-nearest input rows, via the column sums 3 * near + far, then across as in h2v1 with
/// weights 3/4, 1/4 and biases +7 (right of a sample) and +8 (left of one). `sums` is
/// scratch of at least dw.
pub(super) fn h2v2(near: &[u8], far: &[u8], dw: usize, sums: &mut [u16], out: &mut [u8]) {
    let sums = &mut sums[..dw];
    for ((s, &a), &b) in sums.iter_mut().zip(&near[..dw]).zip(&far[..dw]) {
        *s = u16::from(a) * 3 + u16::from(b);
    }
    let out = &mut out[..2 * dw];
    out[0] = ((sums[0] * 4 + 8) >> 4) as u8;
    out[2 * dw - 1] = ((sums[dw - 1] * 4 + 7) >> 4) as u8;
    for (o, (&a, &b)) in out[1..2 * dw - 1].chunks_exact_mut(2).zip(sums.iter().zip(&sums[1..])) {
        o[0] = ((a * 3 + b + 7) >> 4) as u8;
        o[1] = ((b * 3 + a + 8) >> 4) as u8;
    }
}

/// int_upsample horizontally: each input sample repeated `h` times, `w` outputs.
pub(super) fn replicate(inp: &[u8], h: usize, w: usize, out: &mut [u8]) {
    if h == 1 {
        out[..w].copy_from_slice(&inp[..w]);
        return;
    }
    for (o, &v) in out[..w].chunks_mut(h).zip(inp) {
        o.fill(v);
    }
}
