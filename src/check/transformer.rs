//! Checks of the transformer kernels: activations and their backwards, RMSNorm, rotary,
//! fused attention, cross-entropy and AdamW. Backward kernels are compared, on the CPU,
//! with central finite differences of the f64 forward (`reference::finite_difference`).

use super::cases::{f64s, n, one, up, ELEMENTWISE};
use super::reference as r;
use super::{Inputs, KernelCheck};
use crate::backend::cpu::attention::{AttnDims, AttnMasks};
use crate::device::Device;
use crate::error::Result;
use crate::ops::{self, AdamWStep, AttnOptions, RopeTables, IGNORE};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// `count` random arrays of the shape's size in [-2, 2).
fn arrays(count: usize, s: &[usize], rng: &mut Rng) -> Inputs {
    Inputs { f: (0..count).map(|_| rng.vec(n(s), -2.0, 2.0)).collect(), ids: vec![] }
}

fn two(s: &[usize], rng: &mut Rng) -> Inputs {
    arrays(2, s, rng)
}

fn three(s: &[usize], rng: &mut Rng) -> Inputs {
    arrays(3, s, rng)
}

fn ups(d: &Device, x: &Inputs, shapes: &[&[usize]]) -> Result<Vec<Tensor>> {
    x.f.iter().zip(shapes).map(|(v, s)| up(d, v, s)).collect()
}

fn tensors(ts: Vec<Tensor>) -> Result<Vec<Tensor>> {
    Ok(ts)
}

/// Central difference of a scalar function, in f64.
fn derivative(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    let h = 1e-6 * x.abs().max(1.0);
    (f(x + h) - f(x - h)) / (2.0 * h)
}

/// FD gradient of sum(w * f(x)) for an elementwise f, w = inputs.f[1]. The Jacobian is
/// diagonal, so each element is differenced alone.
fn fd_unary(x: &Inputs, f: fn(f64) -> f64) -> Vec<Vec<f64>> {
    vec![x.f[0].iter().zip(&x.f[1]).map(|(&a, &w)| f64::from(w) * derivative(f, f64::from(a))).collect()]
}


// ---- RMSNorm: shape [rows, d] ----

const EPS: f32 = 1e-6;
/// [66000, 3] needs more workgroups than one grid axis holds (65535): the folded grid.
const RMS: &[&[usize]] = &[&[1, 1], &[5, 7], &[3, 1000], &[300, 65], &[66000, 3]];
const RMS_GRAD: &[&[usize]] = &[&[1, 1], &[5, 7], &[3, 33]];
/// [2100, 5]: three row chunks in the GPU weight gradient.
const RMS_GRAD_LARGE: &[&[usize]] = &[&[300, 257], &[2, 1000], &[2100, 5], &[66000, 3]];

pub(super) fn rms_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    Inputs { f: vec![rng.vec(n(s), -2.0, 2.0), rng.vec(s[1], 0.5, 1.5), rng.vec(n(s), -1.0, 1.0)], ids: vec![] }
}

// ---- rotary: shape [B, H, T, D] ----

const ROPE: &[&[usize]] = &[&[1, 1, 1, 4], &[2, 3, 7, 8], &[1, 2, 33, 16], &[2, 4, 70, 128]];
const ROPE_GRAD: &[&[usize]] = &[&[1, 1, 1, 4], &[2, 3, 7, 8]];

fn rope_tables(kind: &str, s: &[usize], dev: &Device) -> Result<RopeTables> {
    let (b, t, d) = (s[0], s[2], s[3]);
    // Positions with gaps and repeats, as in multimodal sequences.
    let pos = |a: usize, bi: usize, ti: usize| ((ti * (a + 2) + bi * 5 + a) % (t + 3)) as f32;
    match kind {
        "mrope" => {
            let positions: Vec<f32> = (0..3).flat_map(|a| (0..b).flat_map(move |bi| (0..t).map(move |ti| pos(a, bi, ti)))).collect();
            let h = d / 2;
            let sec = [h / 4, (h - h / 4) / 2, h - h / 4 - (h - h / 4) / 2];
            RopeTables::multimodal(&positions, b, t, d, &sec, 1_000_000.0, dev)
        }
        "vision" => {
            let rows: Vec<f32> = (0..t).map(|i| (i / 3) as f32).collect();
            let cols: Vec<f32> = (0..t).map(|i| (i % 3) as f32).collect();
            RopeTables::vision(&rows, &cols, d, 10_000.0, dev)
        }
        _ => RopeTables::one_d(&(0..t).map(|ti| pos(0, 0, ti)).collect::<Vec<_>>(), d, 10_000.0, dev),
    }
}

fn rope_run(dev: &Device, s: &[usize], x: &Inputs, kind: &str) -> Result<Vec<Tensor>> {
    Ok(vec![ops::rope(&up(dev, &x.f[0], s)?, &rope_tables(kind, s, dev)?)?])
}

/// The kernel against the f64 rotation, with the tables as given (their construction is
/// checked against transformers with the model).
fn rope_ref(s: &[usize], x: &Inputs, kind: &str) -> Vec<Vec<f64>> {
    let t = rope_tables(kind, s, &Device::Cpu).expect("valid tables");
    let (c, sn) = (f64s(t.cos.as_cpu().unwrap()), f64s(t.sin.as_cpu().unwrap()));
    vec![r::rope(&f64s(&x.f[0]), &c, &sn, s[1], s[2], s[3])]
}

// ---- attention: shape [B, Hq, Hkv, Tq, Tk, D] ----

// [2, 4, 2, 1, 77, 64] is a decode step: one query row against the cache. At T = 384 the
// blind span [96, 192) and the three segments of 128 hide whole 64 x 64 blocks, which the
// CPU kernel fills without the per-element mask.
const ATTN: &[&[usize]] = &[&[1, 1, 1, 1, 1, 1], &[2, 4, 2, 37, 37, 16], &[1, 2, 1, 70, 70, 128], &[1, 2, 2, 5, 23, 8], &[2, 4, 2, 1, 77, 64], &[1, 2, 1, 384, 384, 8], &[1, 2, 1, 45, 45, 80], &[1, 1, 1, 33, 33, 33]];
const ATTN_SQUARE: &[&[usize]] = &[&[1, 1, 1, 1, 1, 1], &[2, 4, 2, 37, 37, 16], &[1, 2, 1, 70, 70, 128]];
const ATTN_GRAD: &[&[usize]] =
    &[&[1, 1, 1, 1, 1, 1], &[1, 2, 1, 9, 9, 4], &[2, 2, 2, 17, 17, 8], &[1, 1, 1, 66, 66, 4], &[1, 2, 2, 5, 13, 8]];
/// Real head sizes (80: the vision tower's), square and with Tq < Tk (the causal offset of a
/// continued sequence), against the analytic f64 backward; 33: one past a CUDA head-size
/// bucket (cuda/attention.cu).
const ATTN_GRAD_LARGE: &[&[usize]] = &[&[2, 4, 2, 100, 100, 64], &[1, 2, 1, 70, 70, 128], &[1, 2, 1, 37, 90, 64], &[1, 2, 1, 384, 384, 8], &[1, 2, 1, 45, 45, 80], &[1, 1, 1, 33, 33, 33]];
/// Segments index queries and keys alike, so their cases are square.
const ATTN_GRAD_SQUARE: &[&[usize]] = &[&[1, 1, 1, 1, 1, 1], &[1, 2, 1, 9, 9, 4], &[2, 2, 2, 17, 17, 8], &[1, 1, 1, 66, 66, 4]];
const ATTN_GRAD_LARGE_SQUARE: &[&[usize]] = &[&[2, 4, 2, 100, 100, 64], &[1, 2, 1, 70, 70, 128], &[1, 2, 1, 384, 384, 8]];

fn attn_opts(variant: &str, s: &[usize]) -> AttnOptions {
    let (b, tq, tk) = (s[0], s[3], s[4]);
    let causal = matches!(variant, "causal" | "padded" | "blind" | "segments_causal");
    let mut o = AttnOptions { causal, ..Default::default() };
    match variant {
        // Left padding: batch bi starts with a few hidden keys; their query rows see nothing
        // under the causal mask ("padded"); without it ("key_mask") every row sees some key.
        "padded" | "key_mask" => {
            o.key_mask = Some((0..b * tk).map(|i| if i % tk < (i / tk * 3 + 2) % (tk / 2 + 1) { 0.0 } else { 1.0 }).collect())
        }
        // Blind pass: a span of "visual" keys hidden from every query.
        "blind" => o.key_mask = Some((0..b * tk).map(|i| if (tk / 4..tk / 2).contains(&(i % tk)) { 0.0 } else { 1.0 }).collect()),
        // Three uneven segments per sequence (block-diagonal), alone or with the causal mask
        // (packed sequences in training).
        "segments" | "segments_causal" => o.segments = Some((0..b * tq).map(|i| ((i % tq) * 3 / tq.max(1)) as u32).collect()),
        _ => {}
    }
    o
}

fn attn_shapes(s: &[usize]) -> ([usize; 4], [usize; 4]) {
    ([s[0], s[1], s[3], s[5]], [s[0], s[2], s[4], s[5]])
}

pub(super) fn attn_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (qs, ks) = attn_shapes(s);
    Inputs {
        f: vec![rng.vec(n(&qs), -1.5, 1.5), rng.vec(n(&ks), -1.5, 1.5), rng.vec(n(&ks), -1.0, 1.0), rng.vec(n(&qs), -1.0, 1.0)],
        ids: vec![],
    }
}

fn attn_dims(s: &[usize], o: &AttnOptions) -> AttnDims {
    AttnDims { b: s[0], hq: s[1], hkv: s[2], tq: s[3], tk: s[4], d: s[5], causal: o.causal, scale: 1.0 / (s[5] as f32).sqrt() }
}

fn attn_run(dev: &Device, s: &[usize], x: &Inputs, variant: &str) -> Result<Vec<Tensor>> {
    let (qs, ks) = attn_shapes(s);
    let t = ups(dev, x, &[&qs, &ks, &ks])?;
    let (o, lse) = ops::attention(&t[0], &t[1], &t[2], &attn_opts(variant, s))?;
    Ok(vec![o, lse])
}

fn attn_ref_fn(s: &[usize], variant: &str) -> impl Fn(&[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let o = attn_opts(variant, s);
    let d = attn_dims(s, &o);
    move |v| r::attention(&v[0], &v[1], &v[2], &d, &AttnMasks { key_mask: o.key_mask.as_deref(), segments: o.segments.as_deref() })
}

fn attn_ref(s: &[usize], x: &Inputs, variant: &str) -> Vec<Vec<f64>> {
    let (o, lse) = attn_ref_fn(s, variant)(&[f64s(&x.f[0]), f64s(&x.f[1]), f64s(&x.f[2])]);
    vec![o, lse]
}

fn attn_backward_run(dev: &Device, s: &[usize], x: &Inputs, variant: &str) -> Result<Vec<Tensor>> {
    let (qs, ks) = attn_shapes(s);
    let t = ups(dev, x, &[&qs, &ks, &ks, &qs])?;
    let opts = attn_opts(variant, s);
    let (o, lse) = ops::attention(&t[0], &t[1], &t[2], &opts)?;
    let (dq, dk, dv) = ops::attention_backward(&t[0], &t[1], &t[2], &o, &lse, &t[3], &opts)?;
    Ok(vec![dq, dk, dv])
}

/// Finite differences at small sizes; the f64 analytic backward (itself checked against
/// finite differences in `tests`) where differences would take too long.
fn attn_backward_ref(s: &[usize], x: &Inputs, variant: &str) -> Vec<Vec<f64>> {
    let inputs = [f64s(&x.f[0]), f64s(&x.f[1]), f64s(&x.f[2])];
    if inputs.iter().map(Vec::len).sum::<usize>() <= FD_LIMIT {
        let f = attn_ref_fn(s, variant);
        return r::finite_difference(|v| f(v).0, &inputs, &f64s(&x.f[3]), &[0, 1, 2]);
    }
    let o = attn_opts(variant, s);
    let masks = AttnMasks { key_mask: o.key_mask.as_deref(), segments: o.segments.as_deref() };
    r::attention_backward(&inputs[0], &inputs[1], &inputs[2], &f64s(&x.f[3]), &attn_dims(s, &o), &masks).to_vec()
}

/// Inputs (elements) up to which a backward is checked by finite differences, whose cost
/// grows with its square.
const FD_LIMIT: usize = 4000;

// ---- cross-entropy: shape [N, V] ----

const CE: &[&[usize]] = &[&[1, 1], &[7, 33], &[5, 1000], &[3, 5000], &[66000, 3]];
const CE_GRAD: &[&[usize]] = &[&[1, 1], &[7, 33], &[3, 300]];
const CE_GRAD_LARGE: &[&[usize]] = &[&[5, 5000], &[66000, 3]];

pub(super) fn ce_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let (rows, v) = (s[0], s[1]);
    // The second row (if any) is ignored.
    let ids = (0..rows).map(|i| if i == 1 { IGNORE } else { rng.below(v) as u32 }).collect();
    Inputs { f: vec![rng.vec(rows * v, -4.0, 4.0), rng.vec(rows, 0.5, 1.5)], ids }
}

// ---- AdamW: shape [n] ----

const STEP: AdamWStep =
    AdamWStep { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, bias1: 0.271, bias2: 0.00299, grad_scale: 0.7 };

fn adamw_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let k = n(s);
    Inputs { f: vec![rng.vec(k, -1.0, 1.0), rng.vec(k, -1.0, 1.0), rng.vec(k, -0.1, 0.1), rng.vec(k, 0.0, 0.01)], ids: vec![] }
}

fn adamw_ref(x: &Inputs) -> Vec<Vec<f64>> {
    let s = STEP;
    let f = |v: f32| f64::from(v);
    let (mut p2, mut m2, mut v2) = (vec![], vec![], vec![]);
    for i in 0..x.f[0].len() {
        let g = f(x.f[1][i]) * f(s.grad_scale);
        let m = f(s.beta1) * f(x.f[2][i]) + (1.0 - f(s.beta1)) * g;
        let v = f(s.beta2) * f(x.f[3][i]) + (1.0 - f(s.beta2)) * g * g;
        let p = f(x.f[0][i]);
        p2.push(p - f(s.lr) * (f(s.weight_decay) * p + (m / f(s.bias1)) / ((v / f(s.bias2)).sqrt() + f(s.eps))));
        m2.push(m);
        v2.push(v);
    }
    vec![p2, m2, v2]
}

macro_rules! activation_backward {
    ($name:literal, $op:path, $f:path) => {
        KernelCheck {
            name: $name,
            tols: &[(1e-5, 1e-4)],
            shapes: ELEMENTWISE,
            extra_shapes: &[],
            inputs: two,
            run: |d, s, x| tensors(vec![$op(&up(d, &x.f[0], s)?, &up(d, &x.f[1], s)?)?]),
            reference: |_, x| fd_unary(x, $f),
        }
    };
}

macro_rules! attention_check {
    ($name:literal, $variant:literal, $shapes:expr) => {
        KernelCheck {
            name: $name,
            tols: &[(2e-6, 1e-5), (2e-6, 1e-5)],
            shapes: $shapes,
            extra_shapes: &[],
            inputs: attn_inputs,
            run: |d, s, x| attn_run(d, s, x, $variant),
            reference: |s, x| attn_ref(s, x, $variant),
        }
    };
}

macro_rules! attention_backward_check {
    ($name:literal, $variant:literal) => {
        attention_backward_check!($name, $variant, ATTN_GRAD, ATTN_GRAD_LARGE)
    };
    ($name:literal, $variant:literal, $shapes:expr, $extra:expr) => {
        KernelCheck {
            name: $name,
            tols: &[(1e-5, 1e-4), (1e-5, 1e-4), (1e-5, 1e-4)],
            shapes: $shapes,
            extra_shapes: $extra,
            inputs: attn_inputs,
            run: |d, s, x| attn_backward_run(d, s, x, $variant),
            reference: |s, x| attn_backward_ref(s, x, $variant),
        }
    };
}

macro_rules! rope_check {
    ($name:literal, $kind:literal) => {
        KernelCheck {
            name: $name,
            tols: &[(1e-5, 1e-5)],
            shapes: ROPE,
            extra_shapes: &[],
            inputs: one,
            run: |d, s, x| rope_run(d, s, x, $kind),
            reference: |s, x| rope_ref(s, x, $kind),
        }
    };
}

pub fn all() -> Vec<KernelCheck> {
    vec![
        activation_backward!("silu_backward", ops::silu_backward, r::silu),
        activation_backward!("gelu_tanh_backward", ops::gelu_tanh_backward, r::gelu_tanh),
        activation_backward!("gelu_erf_backward", ops::gelu_erf_backward, r::gelu_erf),
        KernelCheck {
            name: "swiglu",
            tols: &[(1e-6, 1e-5)],
            shapes: ELEMENTWISE,
            extra_shapes: &[],
            inputs: two,
            run: |d, s, x| tensors(vec![ops::swiglu(&up(d, &x.f[0], s)?, &up(d, &x.f[1], s)?)?]),
            reference: |_, x| vec![x.f[0].iter().zip(&x.f[1]).map(|(&g, &u)| r::silu(f64::from(g)) * f64::from(u)).collect()],
        },
        KernelCheck {
            name: "swiglu_backward",
            tols: &[(1e-5, 1e-4), (1e-5, 1e-4)],
            shapes: ELEMENTWISE,
            extra_shapes: &[],
            inputs: three,
            run: |d, s, x| {
                let t = ups(d, x, &[s, s, s])?;
                let (dg, du) = ops::swiglu_backward(&t[0], &t[1], &t[2])?;
                Ok(vec![dg, du])
            },
            reference: |_, x| {
                let (g, u, w) = (f64s(&x.f[0]), f64s(&x.f[1]), f64s(&x.f[2]));
                let dg = (0..g.len()).map(|i| w[i] * derivative(|a| r::silu(a) * u[i], g[i])).collect();
                let du = (0..g.len()).map(|i| w[i] * derivative(|b| r::silu(g[i]) * b, u[i])).collect();
                vec![dg, du]
            },
        },
        KernelCheck {
            name: "rms_norm",
            tols: &[(2e-6, 2e-6), (2e-6, 2e-6)],
            shapes: RMS,
            extra_shapes: &[],
            inputs: rms_inputs,
            run: |d, s, x| {
                let (y, rstd) = ops::rms_norm(&up(d, &x.f[0], s)?, &up(d, &x.f[1], &s[1..])?, EPS)?;
                Ok(vec![y, rstd])
            },
            reference: |_, x| {
                let (y, rstd) = r::rms_norm(&f64s(&x.f[0]), &f64s(&x.f[1]), f64::from(EPS));
                vec![y, rstd]
            },
        },
        KernelCheck {
            name: "rms_norm_backward",
            // dx, then dw: a sum over every row, whose f32 rounding grows with the row count
            // (up to 2100 and 66000 rows here).
            tols: &[(1e-5, 1e-4), (2e-3, 1e-4)],
            shapes: RMS_GRAD,
            extra_shapes: RMS_GRAD_LARGE,
            inputs: rms_inputs,
            run: |d, s, x| {
                let (xt, w) = (up(d, &x.f[0], s)?, up(d, &x.f[1], &s[1..])?);
                let (_, rstd) = ops::rms_norm(&xt, &w, EPS)?;
                let (dx, dw) = ops::rms_norm_backward(&xt, &w, &rstd, &up(d, &x.f[2], s)?)?;
                Ok(vec![dx, dw])
            },
            reference: |_, x| {
                let inputs = [f64s(&x.f[0]), f64s(&x.f[1])];
                if inputs[0].len() > FD_LIMIT {
                    return r::rms_norm_backward(&inputs[0], &inputs[1], &f64s(&x.f[2]), f64::from(EPS)).to_vec();
                }
                r::finite_difference(|v| r::rms_norm(&v[0], &v[1], f64::from(EPS)).0, &inputs, &f64s(&x.f[2]), &[0, 1])
            },
        },
        rope_check!("rope", "1d"),
        rope_check!("rope_mrope", "mrope"),
        rope_check!("rope_vision", "vision"),
        KernelCheck {
            name: "rope_backward",
            tols: &[(1e-5, 1e-4)],
            shapes: ROPE_GRAD,
            extra_shapes: ROPE,
            inputs: two,
            run: |d, s, x| tensors(vec![ops::rope_backward(&up(d, &x.f[1], s)?, &rope_tables("mrope", s, d)?)?]),
            reference: |s, x| {
                let t = rope_tables("mrope", s, &Device::Cpu).expect("valid tables");
                let (c, sn) = (f64s(t.cos.as_cpu().unwrap()), f64s(t.sin.as_cpu().unwrap()));
                if x.f[0].len() > FD_LIMIT {
                    return vec![r::rope_backward(&f64s(&x.f[1]), &c, &sn, s[1], s[2], s[3])];
                }
                r::finite_difference(|v| r::rope(&v[0], &c, &sn, s[1], s[2], s[3]), &[f64s(&x.f[0])], &f64s(&x.f[1]), &[0])
            },
        },
        attention_check!("attention", "plain", ATTN),
        attention_check!("attention_causal", "causal", ATTN),
        attention_check!("attention_padded", "padded", ATTN),
        attention_check!("attention_blind", "blind", ATTN),
        attention_check!("attention_segments", "segments", ATTN_SQUARE),
        attention_check!("attention_segments_causal", "segments_causal", ATTN_SQUARE),
        attention_check!("attention_key_mask", "key_mask", ATTN),
        attention_backward_check!("attention_backward", "plain"),
        attention_backward_check!("attention_backward_causal", "causal"),
        attention_backward_check!("attention_backward_padded", "padded"),
        attention_backward_check!("attention_backward_blind", "blind"),
        attention_backward_check!("attention_backward_segments", "segments", ATTN_GRAD_SQUARE, ATTN_GRAD_LARGE_SQUARE),
        attention_backward_check!(
            "attention_backward_segments_causal",
            "segments_causal",
            ATTN_GRAD_SQUARE,
            ATTN_GRAD_LARGE_SQUARE
        ),
        attention_backward_check!("attention_backward_key_mask", "key_mask"),
        KernelCheck {
            name: "cross_entropy",
            tols: &[(2e-6, 2e-6), (2e-6, 2e-6)],
            shapes: CE,
            extra_shapes: &[],
            inputs: ce_inputs,
            run: |d, s, x| {
                let (loss, lse) = ops::cross_entropy(&up(d, &x.f[0], s)?, &x.ids)?;
                Ok(vec![loss, lse])
            },
            reference: |s, x| {
                let l = f64s(&x.f[0]);
                vec![r::cross_entropy(&l, &x.ids, s[1]), l.chunks(s[1]).map(r::logsumexp).collect()]
            },
        },
        KernelCheck {
            name: "cross_entropy_backward",
            tols: &[(1e-5, 1e-3)],
            shapes: CE_GRAD,
            extra_shapes: CE_GRAD_LARGE,
            inputs: ce_inputs,
            run: |d, s, x| {
                let logits = up(d, &x.f[0], s)?;
                let (_, lse) = ops::cross_entropy(&logits, &x.ids)?;
                tensors(vec![ops::cross_entropy_backward(&logits, &x.ids, &lse, &up(d, &x.f[1], &[s[0]])?, 1.0)?])
            },
            reference: |s, x| {
                if x.f[0].len() > FD_LIMIT {
                    return vec![r::cross_entropy_backward(&f64s(&x.f[0]), &x.ids, &f64s(&x.f[1]), s[1])];
                }
                r::finite_difference(|v| r::cross_entropy(&v[0], &x.ids, s[1]), &[f64s(&x.f[0])], &f64s(&x.f[1]), &[0])
            },
        },
        KernelCheck {
            name: "adamw",
            tols: &[(1e-6, 1e-5), (1e-6, 1e-5), (1e-6, 1e-5)],
            shapes: ELEMENTWISE,
            extra_shapes: &[],
            inputs: adamw_inputs,
            run: |d, s, x| {
                let t = ups(d, x, &[s, s, s, s])?;
                let (p, m, v) = ops::adamw(&t[0], &t[1], &t[2], &t[3], STEP)?;
                Ok(vec![p, m, v])
            },
            reference: |_, x| adamw_ref(x),
        },
        KernelCheck {
            name: "sum_squares",
            tols: &[(1e-3, 1e-5)],
            shapes: &[&[1], &[4095], &[4097], &[70_000]],
            extra_shapes: &[],
            inputs: one,
            run: |d, s, x| tensors(vec![Tensor::from_vec(vec![ops::sum_squares(&up(d, &x.f[0], s)?)? as f32], &[1], &Device::Cpu)?]),
            reference: |_, x| vec![vec![x.f[0].iter().map(|&v| f64::from(v) * f64::from(v)).sum()]],
        },
    ]
}

#[cfg(test)]
mod tests {
    //! The analytic f64 backwards that stand in for finite differences at large sizes must
    //! agree with finite differences where both run.
    use super::*;

    fn close(a: &[Vec<f64>], b: &[Vec<f64>]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.len(), y.len());
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() <= 1e-6 * (1.0 + q.abs()), "{p} vs {q}");
            }
        }
    }

    #[test]
    fn analytic_attention_backward_matches_finite_differences() {
        for variant in ["plain", "causal", "padded", "blind", "key_mask", "segments", "segments_causal"] {
            for s in [&[1, 2, 1, 9, 9, 4][..], &[2, 2, 2, 7, 7, 8], &[1, 2, 2, 5, 13, 8]] {
                if variant.starts_with("segments") && s[3] != s[4] {
                    continue;
                }
                let x = attn_inputs(s, &mut Rng::new(7));
                let inputs = [f64s(&x.f[0]), f64s(&x.f[1]), f64s(&x.f[2])];
                let f = attn_ref_fn(s, variant);
                let fd = r::finite_difference(|v| f(v).0, &inputs, &f64s(&x.f[3]), &[0, 1, 2]);
                let o = attn_opts(variant, s);
                let m = AttnMasks { key_mask: o.key_mask.as_deref(), segments: o.segments.as_deref() };
                close(&r::attention_backward(&inputs[0], &inputs[1], &inputs[2], &f64s(&x.f[3]), &attn_dims(s, &o), &m), &fd);
            }
        }
    }

    #[test]
    fn analytic_rms_norm_rope_and_cross_entropy_backwards_match_finite_differences() {
        let x = rms_inputs(&[5, 7], &mut Rng::new(3));
        let inputs = [f64s(&x.f[0]), f64s(&x.f[1])];
        let fd = r::finite_difference(|v| r::rms_norm(&v[0], &v[1], f64::from(EPS)).0, &inputs, &f64s(&x.f[2]), &[0, 1]);
        close(&r::rms_norm_backward(&inputs[0], &inputs[1], &f64s(&x.f[2]), f64::from(EPS)), &fd);

        let s = [2, 3, 7, 8];
        let x = two(&s, &mut Rng::new(4));
        for kind in ["1d", "mrope", "vision"] {
            let t = rope_tables(kind, &s, &Device::Cpu).unwrap();
            let (c, sn) = (f64s(t.cos.as_cpu().unwrap()), f64s(t.sin.as_cpu().unwrap()));
            let fd = r::finite_difference(|v| r::rope(&v[0], &c, &sn, s[1], s[2], s[3]), &[f64s(&x.f[0])], &f64s(&x.f[1]), &[0]);
            close(&[r::rope_backward(&f64s(&x.f[1]), &c, &sn, s[1], s[2], s[3])], &fd);
        }

        let x = ce_inputs(&[4, 33], &mut Rng::new(5));
        let fd = r::finite_difference(|v| r::cross_entropy(&v[0], &x.ids, 33), &[f64s(&x.f[0])], &f64s(&x.f[1]), &[0]);
        close(&[r::cross_entropy_backward(&f64s(&x.f[0]), &x.ids, &f64s(&x.f[1]), 33)], &fd);
    }
}
