//! add, mul, scale, silu, gelu_tanh, gelu_erf.

use super::{fits_u32, same_device};
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

/// a + b, where b has a's shape or a trailing part of it (repeated over the leading axes),
/// or is a single value.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("add", a, b, cpu::elementwise::add)
}

/// a + b as [`add`] computes it, written over a's buffer when a lives on the CPU and
/// nothing else holds it (a fresh product taking its bias): no new output and one pass less.
pub fn add_into(mut a: Tensor, b: &Tensor) -> Result<Tensor> {
    check_binary("add", &a, b)?;
    if let Some(y) = b.as_cpu()
        && let Some(x) = a.cpu_mut()
    {
        cpu::elementwise::add_into(x, y);
        return Ok(a);
    }
    add(&a, b)
}

/// a * b, broadcasting b as in [`add`].
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("mul", a, b, cpu::elementwise::mul)
}

pub fn scale(a: &Tensor, alpha: f32) -> Result<Tensor> {
    unary("scale", a, alpha, |x, o| cpu::elementwise::scale(x, alpha, o))
}

/// Inverted dropout: each element kept with probability 1 - p and scaled by 1 / (1 - p), the
/// mask a function of (seed, index) alone (`cpu::elementwise::dropout`), so the backward is
/// `dropout` of the gradient with the same seed.
pub fn dropout(a: &Tensor, p: f32, seed: u32) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::shape("dropout", format!("p must be in [0, 1), got {p}")));
    }
    fits_u32("dropout", a.numel())?;
    // Kept when the 32-bit hash is at least p * 2^32.
    let threshold = (f64::from(p) * 4_294_967_296.0).round().min(4_294_967_295.0) as u32;
    let scale = 1.0 / (1.0 - p);
    if let Some(x) = a.as_cpu() {
        let mut out = cpu::alloc(x.len());
        cpu::elementwise::dropout(x, seed, threshold, scale, &mut out);
        return Ok(Tensor::from_cpu(out, a.shape()));
    }
    let out = Tensor::empty(a.shape(), a.device())?;
    a.device().launch(&Launch {
        family: "elementwise",
        kernel: "dropout",
        bindings: &[(0, Buf::F32(a)), (2, Buf::F32(&out))],
        params: Params::new(&[word(a.numel()), seed, scale.to_bits(), 0, threshold]),
        grid: Grid::elements(a.numel(), 3),
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}

pub fn silu(a: &Tensor) -> Result<Tensor> {
    unary("silu", a, 0.0, cpu::elementwise::silu)
}

pub fn gelu_tanh(a: &Tensor) -> Result<Tensor> {
    unary("gelu_tanh", a, 0.0, cpu::elementwise::gelu_tanh)
}

pub fn gelu_erf(a: &Tensor) -> Result<Tensor> {
    unary("gelu_erf", a, 0.0, cpu::elementwise::gelu_erf)
}

/// b must be as long as a, a trailing part of its shape, or one value, on a's device.
fn check_binary(kernel: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    same_device(kernel, a, b)?;
    let (sa, sb) = (a.shape(), b.shape());
    let trailing = sb.len() <= sa.len() && sa[sa.len() - sb.len()..] == *sb;
    if !trailing && b.numel() != 1 {
        return Err(Error::shape(kernel, format!("{sb:?} must equal {sa:?}, a trailing part of it, or hold one value")));
    }
    if b.numel() == 0 && a.numel() != 0 {
        return Err(Error::shape(kernel, "empty right operand"));
    }
    fits_u32(kernel, a.numel())
}

fn binary(kernel: &'static str, a: &Tensor, b: &Tensor, cpu_fn: fn(&[f32], &[f32], &mut [f32])) -> Result<Tensor> {
    check_binary(kernel, a, b)?;
    let sa = a.shape();
    if let (Some(x), Some(y)) = (a.as_cpu(), b.as_cpu()) {
        let mut out = cpu::alloc(x.len());
        cpu_fn(x, y, &mut out);
        return Ok(Tensor::from_cpu(out, sa));
    }
    let out = Tensor::empty(sa, a.device())?;
    a.device().launch(&Launch {
        family: "elementwise",
        kernel,
        bindings: &[(0, Buf::F32(a)), (1, Buf::F32(b)), (2, Buf::F32(&out))],
        params: Params::new(&[word(a.numel()), word(b.numel().max(1)), 0, 0]),
        grid: Grid::elements(a.numel(), 3),
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}

fn unary(kernel: &'static str, a: &Tensor, alpha: f32, cpu_fn: impl Fn(&[f32], &mut [f32])) -> Result<Tensor> {
    fits_u32(kernel, a.numel())?;
    if let Some(x) = a.as_cpu() {
        let mut out = cpu::alloc(x.len());
        cpu_fn(x, &mut out);
        return Ok(Tensor::from_cpu(out, a.shape()));
    }
    let out = Tensor::empty(a.shape(), a.device())?;
    a.device().launch(&Launch {
        family: "elementwise",
        kernel,
        bindings: &[(0, Buf::F32(a)), (2, Buf::F32(&out))],
        params: Params::new(&[word(a.numel()), 1, alpha.to_bits(), 0]),
        grid: Grid::elements(a.numel(), 3),
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}

/// Gradient of [`silu`]: dy * silu'(x).
pub fn silu_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    pair("silu_backward", x, dy, cpu::elementwise::silu_backward)
}

pub fn gelu_tanh_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    pair("gelu_tanh_backward", x, dy, cpu::elementwise::gelu_tanh_backward)
}

pub fn gelu_erf_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    pair("gelu_erf_backward", x, dy, cpu::elementwise::gelu_erf_backward)
}

/// The SiLU-gated MLP product silu(gate) * up.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    pair("swiglu", gate, up, cpu::elementwise::swiglu)
}

/// Gradients of [`swiglu`]: (dgate, dup).
pub fn swiglu_backward(gate: &Tensor, up: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor)> {
    same_shape("swiglu_backward", gate, up)?;
    same_shape("swiglu_backward", gate, dy)?;
    fits_u32("swiglu_backward", gate.numel())?;
    if let (Some(g), Some(u), Some(d)) = (gate.as_cpu(), up.as_cpu(), dy.as_cpu()) {
        let (mut dg, mut du) = (cpu::alloc(g.len()), cpu::alloc(g.len()));
        cpu::elementwise::swiglu_backward(g, u, d, &mut dg, &mut du);
        return Ok((Tensor::from_cpu(dg, gate.shape()), Tensor::from_cpu(du, gate.shape())));
    }
    let dg = Tensor::empty(gate.shape(), gate.device())?;
    let du = Tensor::empty(gate.shape(), gate.device())?;
    gate.device().launch(&Launch {
        family: "elementwise",
        kernel: "swiglu_backward",
        bindings: &[(0, Buf::F32(gate)), (1, Buf::F32(up)), (2, Buf::F32(&dg)), (4, Buf::F32(dy)), (5, Buf::F32(&du))],
        params: Params::new(&[word(gate.numel()), 1, 0, 0]),
        grid: Grid::elements(gate.numel(), 3),
        constants: &[],
        threads: 256,
    })?;
    Ok((dg, du))
}

pub(crate) fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    same_device(op, a, b)?;
    if a.shape() != b.shape() {
        return Err(Error::shape(op, format!("operands must have one shape, got {:?} and {:?}", a.shape(), b.shape())));
    }
    Ok(())
}

/// A two-input kernel on operands of one shape.
fn pair(kernel: &'static str, a: &Tensor, b: &Tensor, cpu_fn: fn(&[f32], &[f32], &mut [f32])) -> Result<Tensor> {
    same_shape(kernel, a, b)?;
    binary(kernel, a, b, cpu_fn)
}
