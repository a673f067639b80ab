//! Elementwise kernels (see shaders/elementwise.wgsl for the definitions).

use rayon::prelude::*;

const CHUNK: usize = super::MIN_ELEMS_PER_TASK;

fn map(a: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).for_each(|(o, x)| {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = f(x);
        }
    });
}

/// out[i] = f(a[i], b[i % b.len()]).
fn zip(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    let nb = b.len();
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let base = c * CHUNK;
        for (j, o) in o.iter_mut().enumerate() {
            let i = base + j;
            *o = f(a[i], b[i % nb]);
        }
    });
}

pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    zip(a, b, out, |x, y| x + y);
}

pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    zip(a, b, out, |x, y| x * y);
}

pub fn scale(a: &[f32], alpha: f32, out: &mut [f32]) {
    map(a, out, |x| alpha * x);
}

pub fn silu(a: &[f32], out: &mut [f32]) {
    map(a, out, |x| x / (1.0 + (-x).exp()));
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

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
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
        for j in 0..dg.len() {
            let i = c * CHUNK + j;
            let (g, u, d) = (gate[i], up[i], dy[i]);
            let s = sigmoid(g);
            du[j] = d * g * s;
            dg[j] = d * u * s * (1.0 + g * (1.0 - s));
        }
    });
}
