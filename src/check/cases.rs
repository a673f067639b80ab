//! Inputs, runs and naive f64 references for every kernel in `pgpo check`.

use super::{Inputs, KernelCheck};
use crate::device::Device;
use crate::error::Result;
use crate::ops::{self, Transpose};
use crate::rng::Rng;
use crate::tensor::{Dtype, Tensor};

pub(super) fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

pub(super) fn n(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// One random array over the whole shape, in [-3, 3).
pub(super) fn one(shape: &[usize], rng: &mut Rng) -> Inputs {
    Inputs { f: vec![rng.vec(n(shape), -3.0, 3.0)], ids: vec![] }
}

pub(super) fn up(dev: &Device, data: &[f32], shape: &[usize]) -> Result<Tensor> {
    Tensor::from_slice(data, shape, dev)
}

/// Uploads `data` stored as `dtype` (rounded to it; `rounded` makes inputs that already are).
pub(super) fn up_as(dev: &Device, data: &[f32], shape: &[usize], dtype: Dtype) -> Result<Tensor> {
    match dtype {
        Dtype::F32 => up(dev, data, shape),
        half => Tensor::from_half_bits(data.iter().map(|&v| half.narrow(v)).collect(), half, shape, dev),
    }
}

/// Input `which` rounded to `dtype`, as the weights of a checkpoint stored in it: the f64
/// reference then runs on exactly the values the kernels read.
pub(super) fn rounded(mut x: Inputs, which: usize, dtype: Dtype) -> Inputs {
    if dtype != Dtype::F32 {
        x.f[which].iter_mut().for_each(|v| *v = dtype.widen(dtype.narrow(*v)));
    }
    x
}

// ---- elementwise: shape = tensor shape; binary ops repeat b over the first axis ----

/// Element counts: one, odd, past one workgroup, and enough for hundreds of workgroups.
pub(super) const ELEMENTWISE: &[&[usize]] = &[&[1], &[7, 33], &[3, 5, 257], &[300, 257]];

fn binary_inputs(shape: &[usize], rng: &mut Rng) -> Inputs {
    Inputs { f: vec![rng.vec(n(shape), -3.0, 3.0), rng.vec(n(&shape[1..]).max(1), -3.0, 3.0)], ids: vec![] }
}

fn b_shape(shape: &[usize]) -> &[usize] {
    if shape.len() > 1 { &shape[1..] } else { shape }
}

fn binary_run(dev: &Device, shape: &[usize], x: &Inputs, f: fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Vec<Tensor>> {
    let b_len = n(b_shape(shape));
    Ok(vec![f(&up(dev, &x.f[0], shape)?, &up(dev, &x.f[1][..b_len], b_shape(shape))?)?])
}

fn binary_ref(shape: &[usize], x: &Inputs, f: fn(f64, f64) -> f64) -> Vec<Vec<f64>> {
    let nb = n(b_shape(shape));
    vec![(0..n(shape)).map(|i| f(f64::from(x.f[0][i]), f64::from(x.f[1][i % nb]))).collect()]
}

fn unary_run(dev: &Device, shape: &[usize], x: &Inputs, f: fn(&Tensor) -> Result<Tensor>) -> Result<Vec<Tensor>> {
    Ok(vec![f(&up(dev, &x.f[0], shape)?)?])
}

fn unary_ref(x: &Inputs, f: fn(f64) -> f64) -> Vec<Vec<f64>> {
    vec![x.f[0].iter().map(|&v| f(f64::from(v))).collect()]
}

// ---- row kernels: shape = [rows, cols] ----

/// Includes a row longer than a workgroup and more rows than one grid axis holds (65535).
const ROWS: &[&[usize]] = &[&[1, 1], &[5, 3], &[13, 1000], &[3, 4099], &[66000, 3]];

fn rows_ref(shape: &[usize], x: &Inputs, f: fn(&[f64]) -> Vec<f64>) -> Vec<Vec<f64>> {
    let cols = shape[1];
    vec![f64s(&x.f[0]).chunks(cols).flat_map(f).collect()]
}

use super::reference::logsumexp;

// ---- matmul: shape = [batch_a, batch_b, m, k, n] ----

const MATMUL: &[&[usize]] = &[
    &[1, 1, 1, 1, 1],
    &[1, 1, 65, 67, 63],
    &[3, 3, 33, 17, 129],
    &[2, 1, 130, 70, 5],
    &[1, 2, 7, 200, 66],
    // The few-rows kernel's edges, k and n off its vector widths: 16 rows (its last with
    // B's rows contiguous), 17, 64 (its last with B's columns contiguous, the NT case), 65.
    &[2, 1, 16, 13, 27],
    &[1, 1, 5, 515, 517],
    &[1, 1, 17, 9, 40],
    &[1, 1, 64, 19, 70],
    &[1, 1, 65, 9, 33],
];

fn mm_shapes(s: &[usize], t: Transpose) -> (Vec<usize>, Vec<usize>) {
    let (ba, bb, m, k, nn) = (s[0], s[1], s[2], s[3], s[4]);
    let a = if t.a { vec![ba, k, m] } else { vec![ba, m, k] };
    let b = if t.b { vec![bb, nn, k] } else { vec![bb, k, nn] };
    (a, b)
}

fn mm_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (ba, bb, m, k, nn) = (s[0], s[1], s[2], s[3], s[4]);
    Inputs { f: vec![rng.vec(ba * m * k, -1.0, 1.0), rng.vec(bb * k * nn, -1.0, 1.0)], ids: vec![] }
}

fn mm_run(dev: &Device, s: &[usize], x: &Inputs, t: Transpose) -> Result<Vec<Tensor>> {
    mm_run_as(dev, s, x, t, [Dtype::F32, Dtype::F32])
}

/// The product with A and B stored as `dt` (a bf16/f16 B is a weight of a half checkpoint;
/// on the CPU a bf16 B with few rows of A goes through the few-rows kernel's bf16 path).
fn mm_run_as(dev: &Device, s: &[usize], x: &Inputs, t: Transpose, dt: [Dtype; 2]) -> Result<Vec<Tensor>> {
    let (sa, sb) = mm_shapes(s, t);
    Ok(vec![ops::matmul(&up_as(dev, &x.f[0], &sa, dt[0])?, &up_as(dev, &x.f[1], &sb, dt[1])?, t)?])
}

fn mm_ref(s: &[usize], x: &Inputs, t: Transpose) -> Vec<Vec<f64>> {
    let (ba, bb, m, k, nn) = (s[0], s[1], s[2], s[3], s[4]);
    let batch = ba.max(bb);
    let mut out = vec![0.0; batch * m * nn];
    for z in 0..batch {
        let (za, zb) = (if ba == 1 { 0 } else { z }, if bb == 1 { 0 } else { z });
        for i in 0..m {
            for j in 0..nn {
                let mut acc = 0.0;
                for p in 0..k {
                    let a = if t.a { x.f[0][za * m * k + p * m + i] } else { x.f[0][za * m * k + i * k + p] };
                    let b = if t.b { x.f[1][zb * k * nn + j * k + p] } else { x.f[1][zb * k * nn + p * nn + j] };
                    acc += f64::from(a) * f64::from(b);
                }
                out[z * m * nn + i * nn + j] = acc;
            }
        }
    }
    vec![out]
}

// ---- embedding: shape = [vocab, dim, tokens] ----

/// [66000, 2, 40]: scatter_add runs a workgroup per vocabulary row, past one grid axis.
const EMBEDDING: &[&[usize]] = &[&[1, 1, 1], &[11, 7, 30], &[50, 300, 9], &[1000, 33, 257], &[66000, 2, 40]];

fn emb_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (v, d, t) = (s[0], s[1], s[2]);
    // Few distinct ids, so repeated rows exercise the summation order.
    let ids = (0..t).map(|_| rng.below(v.min(7).max(1) + v / 3) as u32 % v as u32).collect();
    Inputs { f: vec![rng.vec(v * d, -3.0, 3.0), rng.vec(t * d, -3.0, 3.0)], ids }
}

// ---- permute: shape = tensor shape; a fixed axis permutation per rank ----

const PERMUTE: &[&[usize]] = &[&[1, 1], &[5, 3], &[3, 65, 17], &[2, 3, 5, 7, 11, 3]];

fn perm_for(rank: usize) -> Vec<usize> {
    // Reverse the axes, then rotate: touches every axis.
    let mut p: Vec<usize> = (0..rank).rev().collect();
    p.rotate_left(rank / 2);
    p
}

fn permute_ref(shape: &[usize], data: &[f32], perm: &[usize]) -> Vec<f64> {
    let r = shape.len();
    let dims: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut out = vec![0.0; data.len()];
    for (i, o) in out.iter_mut().enumerate() {
        let mut idx = vec![0; r];
        let mut rem = i;
        for a in (0..r).rev() {
            idx[a] = rem % dims[a];
            rem /= dims[a];
        }
        let mut src_idx = vec![0; r];
        for a in 0..r {
            src_idx[perm[a]] = idx[a];
        }
        let flat = src_idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i);
        *o = f64::from(data[flat]);
    }
    out
}

// ---- concat / slice: shape = [outer, len0, len1, len2, inner], joined on axis 1 ----

const CONCAT: &[&[usize]] = &[&[1, 1, 1, 1, 1], &[3, 2, 5, 1, 7], &[4, 17, 3, 30, 65]];

fn concat_parts(s: &[usize]) -> Vec<Vec<usize>> {
    (1..4).map(|i| vec![s[0], s[i], s[4]]).collect()
}

fn concat_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    Inputs { f: concat_parts(s).iter().map(|p| rng.vec(n(p), -3.0, 3.0)).collect(), ids: vec![] }
}

fn concat_ref(s: &[usize], x: &Inputs) -> Vec<f64> {
    let (outer, inner) = (s[0], s[4]);
    let mut out = Vec::new();
    for o in 0..outer {
        for (p, len) in x.f.iter().zip(&s[1..4]) {
            out.extend(f64s(&p[o * len * inner..(o + 1) * len * inner]));
        }
    }
    out
}

// ---- the table ----

macro_rules! unary {
    ($name:literal, $op:path, $f:expr, $atol:expr, $rtol:expr) => {
        KernelCheck {
            name: $name,
            tols: &[($atol, $rtol)],
            extra_shapes: &[],
            shapes: ELEMENTWISE,
            inputs: one,
            run: |d, s, x| unary_run(d, s, x, $op),
            reference: |_, x| unary_ref(x, $f),
        }
    };
}

/// `matmul_acc`: C (a third random input, [batch, m, n]) += op(A) · op(B). A kernel that
/// overwrites C instead of adding to it, or adds twice, fails.
fn mm_acc_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let mut x = mm_inputs(s, rng);
    x.f.push(rng.vec(s[0].max(s[1]) * s[2] * s[4], -1.0, 1.0));
    x
}

fn mm_acc_run(dev: &Device, s: &[usize], x: &Inputs, t: Transpose) -> Result<Vec<Tensor>> {
    mm_acc_run_as(dev, s, x, t, Dtype::F32)
}

fn mm_acc_run_as(dev: &Device, s: &[usize], x: &Inputs, t: Transpose, b_dtype: Dtype) -> Result<Vec<Tensor>> {
    let (sa, sb) = mm_shapes(s, t);
    let mut c = up(dev, &x.f[2], &[s[0].max(s[1]), s[2], s[4]])?;
    ops::matmul_acc(&mut c, &up(dev, &x.f[0], &sa)?, &up_as(dev, &x.f[1], &sb, b_dtype)?, t)?;
    Ok(vec![c])
}

fn mm_acc_ref(s: &[usize], x: &Inputs, t: Transpose) -> Vec<Vec<f64>> {
    let mut out = mm_ref(s, x, t);
    out[0].iter_mut().zip(&x.f[2]).for_each(|(o, &c)| *o += f64::from(c));
    out
}

/// gather from a table stored as `$dt` (inputs rounded to it), exact.
macro_rules! gather_check {
    ($name:literal, $dt:expr) => {
        KernelCheck {
            name: $name,
            tols: &[(0.0, 0.0)],
            extra_shapes: &[],
            shapes: EMBEDDING,
            inputs: |s, rng| rounded(emb_inputs(s, rng), 0, $dt),
            run: |d, s, x| Ok(vec![ops::gather(&up_as(d, &x.f[0], &[s[0], s[1]], $dt)?, &x.ids)?]),
            reference: |s, x| {
                let d = s[1];
                vec![x.ids.iter().flat_map(|&id| f64s(&x.f[0][id as usize * d..(id as usize + 1) * d])).collect()]
            },
        }
    };
}

/// A matmul check with A and B stored as the given dtypes, the inputs rounded to them.
macro_rules! matmul_half_check {
    ($name:literal, $t:expr, $a:expr, $b:expr) => {
        KernelCheck {
            name: $name,
            inputs: |s, rng| rounded(rounded(mm_inputs(s, rng), 0, $a), 1, $b),
            run: |d, s, x| mm_run_as(d, s, x, $t, [$a, $b]),
            ..matmul_check!($name, $t)
        }
    };
}

macro_rules! matmul_check {
    ($name:literal, $t:expr) => {
        KernelCheck {
            name: $name,
            tols: &[(1e-4, 1e-4)],
            extra_shapes: &[],
            shapes: MATMUL,
            inputs: mm_inputs,
            run: |d, s, x| mm_run(d, s, x, $t),
            reference: |s, x| mm_ref(s, x, $t),
        }
    };
}

pub fn all() -> Vec<KernelCheck> {
    let mut checks = vec![
        KernelCheck {
            name: "add",
            tols: &[(1e-6, 1e-6)],
            extra_shapes: &[],
            shapes: ELEMENTWISE,
            inputs: binary_inputs,
            run: |d, s, x| binary_run(d, s, x, ops::add),
            reference: |s, x| binary_ref(s, x, |a, b| a + b),
        },
        KernelCheck {
            // A written over its own buffer (on the CPU): a is uploaded fresh, so nothing
            // else holds it.
            name: "add_into",
            tols: &[(1e-6, 1e-6)],
            extra_shapes: &[],
            shapes: ELEMENTWISE,
            inputs: binary_inputs,
            run: |d, s, x| Ok(vec![ops::add_into(up(d, &x.f[0], s)?, &up(d, &x.f[1][..n(b_shape(s))], b_shape(s))?)?]),
            reference: |s, x| binary_ref(s, x, |a, b| a + b),
        },
        KernelCheck {
            name: "mul",
            tols: &[(1e-6, 1e-6)],
            extra_shapes: &[],
            shapes: ELEMENTWISE,
            inputs: binary_inputs,
            run: |d, s, x| binary_run(d, s, x, ops::mul),
            reference: |s, x| binary_ref(s, x, |a, b| a * b),
        },
        // Tensor::full on a device: the fill kernel writes every element of a poisoned buffer.
        KernelCheck {
            name: "fill",
            tols: &[(0.0, 0.0)],
            extra_shapes: &[],
            shapes: ELEMENTWISE,
            inputs: one,
            run: |d, s, x| Ok(vec![Tensor::full(x.f[0].first().copied().unwrap_or(-0.37), s, d)?]),
            reference: |_, x| vec![vec![f64::from(x.f[0].first().copied().unwrap_or(-0.37)); x.f[0].len()]],
        },
        KernelCheck {
            name: "scale",
            tols: &[(1e-6, 1e-6)],
            extra_shapes: &[],
            shapes: ELEMENTWISE,
            inputs: one,
            run: |d, s, x| Ok(vec![ops::scale(&up(d, &x.f[0], s)?, -1.7)?]),
            reference: |_, x| unary_ref(x, |v| -1.7f32 as f64 * v),
        },
        // p and seed fixed; the scale 1 / 0.7 is not a power of two, so f32 and f64 differ by
        // an ulp: a wrong mask (another hash, index or threshold) is off by a whole value.
        KernelCheck {
            name: "dropout",
            tols: &[(1e-6, 1e-6)],
            extra_shapes: &[],
            shapes: ELEMENTWISE,
            inputs: one,
            run: |d, s, x| Ok(vec![ops::dropout(&up(d, &x.f[0], s)?, 0.3, 0x5eed)?]),
            reference: |_, x| vec![super::reference::dropout(&x.f[0].iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), f64::from(0.3f32), 0x5eed)],
        },
        unary!("silu", ops::silu, super::reference::silu, 1e-6, 1e-5),
        unary!(
            "gelu_tanh",
            ops::gelu_tanh,
            super::reference::gelu_tanh,
            1e-6,
            1e-5
        ),
        unary!("gelu_erf", ops::gelu_erf, super::reference::gelu_erf, 1e-6, 1e-5),
        KernelCheck {
            name: "row_sum",
            tols: &[(1e-4, 1e-5)],
            extra_shapes: &[],
            shapes: ROWS,
            inputs: one,
            run: |d, s, x| Ok(vec![ops::row_sum(&up(d, &x.f[0], s)?)?]),
            reference: |s, x| vec![rows_ref(s, x, |r| vec![r.iter().sum()]).concat()],
        },
        KernelCheck {
            name: "row_max",
            tols: &[(0.0, 0.0)],
            extra_shapes: &[],
            shapes: ROWS,
            inputs: one,
            run: |d, s, x| Ok(vec![ops::row_max(&up(d, &x.f[0], s)?)?]),
            // NaN if the row holds one (f64::max would drop it).
            reference: |s, x| {
                vec![rows_ref(s, x, |r| vec![r.iter().copied().fold(f64::NEG_INFINITY, |a, b| if a > b || a.is_nan() { a } else { b })]).concat()]
            },
        },
        KernelCheck {
            name: "softmax",
            tols: &[(1e-7, 1e-4)],
            extra_shapes: &[],
            shapes: ROWS,
            inputs: one,
            run: |d, s, x| Ok(vec![ops::softmax(&up(d, &x.f[0], s)?)?]),
            reference: |s, x| {
                rows_ref(s, x, |r| {
                    let l = logsumexp(r);
                    r.iter().map(|v| (v - l).exp()).collect()
                })
            },
        },
        KernelCheck {
            name: "log_softmax",
            tols: &[(1e-5, 1e-5)],
            extra_shapes: &[],
            shapes: ROWS,
            inputs: one,
            run: |d, s, x| Ok(vec![ops::log_softmax(&up(d, &x.f[0], s)?)?]),
            reference: |s, x| {
                rows_ref(s, x, |r| {
                    let l = logsumexp(r);
                    r.iter().map(|v| v - l).collect()
                })
            },
        },
        matmul_check!("matmul", Transpose::NN),
        matmul_check!("matmul_nt", Transpose::NT),
        matmul_check!("matmul_tn", Transpose::TN),
        matmul_check!("matmul_tt", Transpose::TT),
        // pgpo's own CUDA kernel where cuBLAS would take the product (the same elsewhere).
        KernelCheck { name: "matmul_nvrtc", run: |d, s, x| crate::backend::with_own_kernels(|| mm_run(d, s, x, Transpose::NN)), ..matmul_check!("matmul_nvrtc", Transpose::NN) },
        KernelCheck { name: "matmul_tt_nvrtc", run: |d, s, x| crate::backend::with_own_kernels(|| mm_run(d, s, x, Transpose::TT)), ..matmul_check!("matmul_tt_nvrtc", Transpose::TT) },
        // Weights in their stored dtype: B (and in two cases A) bf16 or f16, every transpose.
        matmul_half_check!("matmul_bf16", Transpose::NN, Dtype::F32, Dtype::BF16),
        matmul_half_check!("matmul_nt_bf16", Transpose::NT, Dtype::F32, Dtype::BF16),
        matmul_half_check!("matmul_tn_bf16", Transpose::TN, Dtype::F32, Dtype::BF16),
        matmul_half_check!("matmul_tt_bf16", Transpose::TT, Dtype::F32, Dtype::BF16),
        matmul_half_check!("matmul_f16", Transpose::NN, Dtype::F32, Dtype::F16),
        matmul_half_check!("matmul_nt_f16", Transpose::NT, Dtype::F32, Dtype::F16),
        matmul_half_check!("matmul_tn_f16", Transpose::TN, Dtype::F32, Dtype::F16),
        matmul_half_check!("matmul_tt_f16", Transpose::TT, Dtype::F32, Dtype::F16),
        matmul_half_check!("matmul_a_bf16", Transpose::NN, Dtype::BF16, Dtype::F32),
        matmul_half_check!("matmul_tn_a_f16", Transpose::TN, Dtype::F16, Dtype::F32),
        matmul_half_check!("matmul_nt_both_bf16_f16", Transpose::NT, Dtype::BF16, Dtype::F16),
        KernelCheck { name: "matmul_acc_nn", inputs: mm_acc_inputs, run: |d, s, x| mm_acc_run(d, s, x, Transpose::NN), reference: |s, x| mm_acc_ref(s, x, Transpose::NN), ..matmul_check!("matmul_acc_nn", Transpose::NN) },
        KernelCheck { name: "matmul_acc_tn", inputs: mm_acc_inputs, run: |d, s, x| mm_acc_run(d, s, x, Transpose::TN), reference: |s, x| mm_acc_ref(s, x, Transpose::TN), ..matmul_check!("matmul_acc_tn", Transpose::TN) },
        KernelCheck {
            name: "matmul_acc_nn_bf16",
            inputs: |s, rng| rounded(mm_acc_inputs(s, rng), 1, Dtype::BF16),
            run: |d, s, x| mm_acc_run_as(d, s, x, Transpose::NN, Dtype::BF16),
            reference: |s, x| mm_acc_ref(s, x, Transpose::NN),
            ..matmul_check!("matmul_acc_nn_bf16", Transpose::NN)
        },
        KernelCheck {
            name: "matmul_acc_tn_f16",
            inputs: |s, rng| rounded(mm_acc_inputs(s, rng), 1, Dtype::F16),
            run: |d, s, x| mm_acc_run_as(d, s, x, Transpose::TN, Dtype::F16),
            reference: |s, x| mm_acc_ref(s, x, Transpose::TN),
            ..matmul_check!("matmul_acc_tn_f16", Transpose::TN)
        },
        gather_check!("gather", Dtype::F32),
        gather_check!("gather_bf16", Dtype::BF16),
        gather_check!("gather_f16", Dtype::F16),
        KernelCheck {
            name: "scatter_add",
            tols: &[(1e-5, 1e-5)],
            extra_shapes: &[],
            shapes: EMBEDDING,
            inputs: emb_inputs,
            run: |d, s, x| Ok(vec![ops::scatter_add(&up(d, &x.f[1], &[s[2], s[1]])?, &x.ids, s[0])?]),
            reference: |s, x| {
                let (v, d) = (s[0], s[1]);
                let mut out = vec![0.0; v * d];
                for (r, &id) in x.ids.iter().enumerate() {
                    for c in 0..d {
                        out[id as usize * d + c] += f64::from(x.f[1][r * d + c]);
                    }
                }
                vec![out]
            },
        },
        KernelCheck {
            name: "permute",
            tols: &[(0.0, 0.0)],
            extra_shapes: &[],
            shapes: PERMUTE,
            inputs: one,
            run: |d, s, x| Ok(vec![ops::permute(&up(d, &x.f[0], s)?, &perm_for(s.len()))?]),
            reference: |s, x| vec![permute_ref(s, &x.f[0], &perm_for(s.len()))],
        },
        KernelCheck {
            name: "transpose",
            tols: &[(0.0, 0.0)],
            extra_shapes: &[],
            shapes: PERMUTE,
            inputs: one,
            run: |d, s, x| Ok(vec![ops::transpose(&up(d, &x.f[0], s)?, 0, s.len() - 1)?]),
            reference: |s, x| {
                let mut p: Vec<usize> = (0..s.len()).collect();
                p.swap(0, s.len() - 1);
                vec![permute_ref(s, &x.f[0], &p)]
            },
        },
        KernelCheck {
            name: "concat",
            tols: &[(0.0, 0.0)],
            extra_shapes: &[],
            shapes: CONCAT,
            inputs: concat_inputs,
            run: |d, s, x| {
                let parts: Vec<Tensor> =
                    concat_parts(s).iter().zip(&x.f).map(|(p, v)| up(d, v, p)).collect::<Result<_>>()?;
                let refs: Vec<&Tensor> = parts.iter().collect();
                Ok(vec![ops::concat(&refs, 1)?])
            },
            reference: |s, x| vec![concat_ref(s, x)],
        },
        KernelCheck {
            name: "slice",
            tols: &[(0.0, 0.0)],
            extra_shapes: &[],
            shapes: CONCAT,
            inputs: concat_inputs,
            run: |d, s, x| {
                // Take the middle part back out of the concatenated layout.
                let whole = concat_ref(s, x).iter().map(|&v| v as f32).collect::<Vec<f32>>();
                let total = s[1] + s[2] + s[3];
                Ok(vec![ops::slice(&up(d, &whole, &[s[0], total, s[4]])?, 1, s[1], s[2])?])
            },
            reference: |s, x| {
                let inner = s[4];
                vec![(0..s[0]).flat_map(|o| f64s(&x.f[1][o * s[2] * inner..(o + 1) * s[2] * inner])).collect()]
            },
        },
    ];
    checks.extend(super::transformer::all());
    checks.extend(super::rl::all());
    checks.extend(super::linear::all());
    let nonfinite = super::nonfinite::all(&checks);
    checks.extend(nonfinite);
    checks
}
