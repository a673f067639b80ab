//! Pillow's bicubic resize of 8-bit RGB (`Image.resize(size, BICUBIC)`), which
//! transformers' Qwen2-VL image processor (PIL backend) calls, reproduced in its arithmetic:
//! a separable convolution in two passes through an 8-bit image (horizontal first, unless the
//! height shrinks by more than twice the rows the width loses in columns: Pillow 13's rule); the
//! cubic kernel with a = -0.5, its support widened by the scale when shrinking (antialias);
//! per-pixel weights normalised in f64 and then rounded to 22-bit fixed point; sums rounded
//! half up and clamped to 0..=255 after each pass.

const PRECISION_BITS: u32 = 32 - 8 - 2;
const SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output pixel along one axis: the first input pixel and the fixed-point weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let mut first = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negatives clamp to 0 either way.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let k: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) / filterscale)).collect();
        let total: f64 = k.iter().sum();
        let fixed = k
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                (if w < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Taps { first, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One pass along rows (`horizontal`) or columns: `src` is `w` x `h`; output rows `rows`
/// (horizontal) of width `n_out`, or `n_out` rows of width `w` (vertical).
fn pass(src: &[u8], w: usize, taps: &Taps, horizontal: bool, rows: std::ops::Range<usize>, n_out: usize) -> Vec<u8> {
    let (out_w, out_h) = if horizontal { (n_out, rows.len()) } else { (w, n_out) };
    let mut out = vec![0u8; out_w * out_h * 3];
    for oy in 0..out_h {
        for ox in 0..out_w {
            let (i0, k) = if horizontal { (taps.first[ox], &taps.weights[ox]) } else { (taps.first[oy], &taps.weights[oy]) };
            for c in 0..3 {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (i, &kw) in k.iter().enumerate() {
                    let at = if horizontal { (rows.start + oy) * w + i0 + i } else { (i0 + i) * w + ox };
                    acc += i64::from(src[at * 3 + c]) * i64::from(kw);
                }
                out[(oy * out_w + ox) * 3 + c] = clip8(acc);
            }
        }
    }
    out
}

/// Resizes `rgb` (row-major, 3 bytes a pixel, `w` x `h`) to `ow` x `oh`.
pub fn resize_bicubic(rgb: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<u8> {
    let (need_h, need_v) = (ow != w, oh != h);
    let horizontal_first = !(h > oh && (h - oh) as i64 > (w as i64 - ow as i64) * 2);
    match (need_h, need_v) {
        (false, false) => rgb.to_vec(),
        (true, false) => pass(rgb, w, &taps(w, ow), true, 0..h, ow),
        (false, true) => pass(rgb, w, &taps(h, oh), false, 0..0, oh),
        (true, true) if horizontal_first => {
            let mut vert = taps(h, oh);
            // The horizontal pass covers only the rows the vertical pass reads.
            let (r0, r1) = (vert.first[0], vert.first[oh - 1] + vert.weights[oh - 1].len());
            let tmp = pass(rgb, w, &taps(w, ow), true, r0..r1, ow);
            vert.first.iter_mut().for_each(|f| *f -= r0);
            pass(&tmp, ow, &vert, false, 0..0, oh)
        }
        (true, true) => {
            let tmp = pass(rgb, w, &taps(h, oh), false, 0..0, oh);
            pass(&tmp, w, &taps(w, ow), true, 0..oh, ow)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point_and_identity_is_a_copy() {
        for (i, o) in [(97, 84), (20, 56), (300, 112), (61, 56)] {
            let t = taps(i, o);
            for k in &t.weights {
                let s: i64 = k.iter().map(|&w| i64::from(w)).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= k.len() as i64, "{i}->{o}: {s}");
            }
        }
        let img: Vec<u8> = (0..5 * 4 * 3).map(|v| (v * 7 % 256) as u8).collect();
        assert_eq!(resize_bicubic(&img, 5, 4, 5, 4), img);
    }

    #[test]
    fn a_flat_image_stays_flat_when_resized() {
        let img = vec![200u8; 13 * 7 * 3];
        assert!(resize_bicubic(&img, 13, 7, 28, 56).iter().all(|&v| v == 200));
        assert!(resize_bicubic(&img, 13, 7, 5, 3).iter().all(|&v| v == 200));
    }
}
