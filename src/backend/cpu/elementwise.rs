//! Elementwise kernels (see shaders/elementwise.wgsl for the definitions). The loops are
//! compiled a second time for AVX2 + FMA, where they vectorise, exp included
//! (`fastmath::exp`: glibc's expf is a scalar call per element).

use super::fastmath::{exp, has_avx2};
use rayon::prelude::*;

const CHUNK: usize = super::MIN_ELEMS_PER_TASK;

fn map(a: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync + Copy) {
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).for_each(|(o, x)| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU was checked for AVX2 and FMA.
            return unsafe { map_avx2(o, x, f) };
        }
        map_body(o, x, f)
    });
}

#[inline(always)]
fn map_body(o: &mut [f32], x: &[f32], f: impl Fn(f32) -> f32) {
    for (o, &x) in o.iter_mut().zip(x) {
        *o = f(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_avx2(o: &mut [f32], x: &[f32], f: impl Fn(f32) -> f32) {
    map_body(o, x, f)
}

/// out[i] = f(a[i], b[i % b.len()]): b as long as a, or repeated over it. Walked in runs of
/// b, not with a division per element, so the loop vectorises.
fn zip(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync + Copy) {
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).enumerate().for_each(|(c, (o, x))| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU was checked for AVX2 and FMA.
            return unsafe { zip_avx2(o, x, b, c * CHUNK, f) };
        }
        zip_body(o, x, b, c * CHUNK, f)
    });
}

/// The runs that cover `len` elements from element `start` of a, against b (of nb
/// elements) repeated: (i, j, run), a's [i, i + run) meeting b's [j, j + run). An iterator,
/// not a closure, so the loops over the runs compile inside the AVX2 functions.
struct Runs {
    len: usize,
    nb: usize,
    i: usize,
    j: usize,
}

impl Runs {
    #[inline(always)]
    fn new(len: usize, nb: usize, start: usize) -> Runs {
        Runs { len, nb, i: 0, j: start % nb }
    }
}

impl Iterator for Runs {
    type Item = (usize, usize, usize);
    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize, usize)> {
        if self.i >= self.len {
            return None;
        }
        let (i, j) = (self.i, self.j);
        let run = (self.nb - j).min(self.len - i);
        self.i += run;
        self.j = 0;
        Some((i, j, run))
    }
}

/// One chunk of `zip` that starts at element `start` of a.
#[inline(always)]
fn zip_body(o: &mut [f32], x: &[f32], b: &[f32], start: usize, f: impl Fn(f32, f32) -> f32) {
    for (i, j, run) in Runs::new(o.len(), b.len(), start) {
        for ((o, &x), &y) in o[i..i + run].iter_mut().zip(&x[i..i + run]).zip(&b[j..j + run]) {
            *o = f(x, y);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn zip_avx2(o: &mut [f32], x: &[f32], b: &[f32], start: usize, f: impl Fn(f32, f32) -> f32) {
    zip_body(o, x, b, start, f)
}

pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    zip(a, b, out, |x, y| x + y);
}

/// a[i] += b[i % b.len()]: `add` written over a (a fresh product taking its bias).
pub fn add_into(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU was checked for AVX2 and FMA.
            return unsafe { add_into_avx2(o, b, c * CHUNK) };
        }
        add_into_body(o, b, c * CHUNK)
    });
}

#[inline(always)]
fn add_into_body(o: &mut [f32], b: &[f32], start: usize) {
    for (i, j, run) in Runs::new(o.len(), b.len(), start) {
        for (o, &y) in o[i..i + run].iter_mut().zip(&b[j..j + run]) {
            *o += y;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_into_avx2(o: &mut [f32], b: &[f32], start: usize) {
    add_into_body(o, b, start)
}

pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    zip(a, b, out, |x, y| x * y);
}

pub fn scale(a: &[f32], alpha: f32, out: &mut [f32]) {
    map(a, out, |x| alpha * x);
}

/// lowbias32 (C. Wellons): a full-avalanche 32-bit integer hash, the same in
/// shaders/elementwise.wgsl and cuda/elementwise.cu.
pub fn hash32(v: u32) -> u32 {
    let mut x = v;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Inverted dropout with a mask drawn from (seed, index): out[i] = a[i] * scale where
/// hash32(i ^ hash32(seed)) >= threshold, else a[i] * 0 (a NaN stays NaN, as in torch). The
/// same seed gives the same mask on every backend, so the backward (and a recomputed
/// block) applies the forward's mask without storing it.
pub fn dropout(a: &[f32], seed: u32, threshold: u32, scale: f32, out: &mut [f32]) {
    let s = hash32(seed);
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).enumerate().for_each(|(c, (o, x))| {
        let start = c * CHUNK;
        for (k, (o, &x)) in o.iter_mut().zip(x).enumerate() {
            let keep = hash32((start + k) as u32 ^ s) >= threshold;
            *o = x * if keep { scale } else { 0.0 };
        }
    });
}

pub fn silu(a: &[f32], out: &mut [f32]) {
    map(a, out, |x| x / (1.0 + exp(-x)));
}

pub fn gelu_tanh(a: &[f32], out: &mut [f32]) {
    map(a, out, |x| 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh()));
}

pub fn gelu_erf(a: &[f32], out: &mut [f32]) {
    map(a, out, |x| 0.5 * x * (1.0 + erf(f64::from(x) * std::f64::consts::FRAC_1_SQRT_2) as f32));
}

/// erf by Abramowitz & Stegun 7.1.26 in f64 (|error| < 1.5e-7, below f32 resolution near 1);
/// Rust's std has no erf.
pub fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = ((((1.061_405_429 * t - 1.453_152_027) * t + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592) * t;
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// d silu(x) = sigmoid(x) (1 + x (1 - sigmoid(x))).
pub fn silu_backward(x: &[f32], dy: &[f32], out: &mut [f32]) {
    zip(x, dy, out, |x, g| {
        let s = sigmoid(x);
        g * s * (1.0 + x * (1.0 - s))
    });
}

pub fn gelu_tanh_backward(x: &[f32], dy: &[f32], out: &mut [f32]) {
    const C: f32 = 0.797_884_6;
    zip(x, dy, out, |x, g| {
        let u = C * (x + 0.044715 * x * x * x);
        let t = u.tanh();
        g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044715 * x * x))
    });
}

pub fn gelu_erf_backward(x: &[f32], dy: &[f32], out: &mut [f32]) {
    zip(x, dy, out, |x, g| {
        let xf = f64::from(x);
        let cdf = 0.5 * (1.0 + erf(xf * std::f64::consts::FRAC_1_SQRT_2));
        let pdf = (-0.5 * xf * xf).exp() / (2.0 * std::f64::consts::PI).sqrt();
        g * (cdf + xf * pdf) as f32
    });
}

/// The SiLU-gated MLP product silu(gate) * up.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    zip(gate, up, out, |g, u| g * sigmoid(g) * u);
}

/// Gradients of swiglu: (dgate, dup).
pub fn swiglu_backward(gate: &[f32], up: &[f32], dy: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    dgate.par_chunks_mut(CHUNK).zip(dup.par_chunks_mut(CHUNK)).enumerate().for_each(|(c, (dg, du))| {
        let r = c * CHUNK..c * CHUNK + dg.len();
        swiglu_backward_chunk(&gate[r.clone()], &up[r.clone()], &dy[r], dg, du);
    });
}

super::fastmath::dispatch!(fn swiglu_backward_chunk(gate: &[f32], up: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) => swiglu_backward_body);

#[inline(always)]
fn swiglu_backward_body(gate: &[f32], up: &[f32], dy: &[f32], dg: &mut [f32], du: &mut [f32]) {
    for ((((dg, du), &g), &u), &d) in dg.iter_mut().zip(du.iter_mut()).zip(gate).zip(up).zip(dy) {
        let s = sigmoid(g);
        *du = d * g * s;
        *dg = d * u * s * (1.0 + g * (1.0 - s));
    }
}
