//! Gradients through the tape: on the CPU against central finite differences of a naive f64
//! loss, and on every other backend present against the CPU gradients.

mod common;

use pgpo::autograd::{ops as ag, Tape, Var};
use pgpo::check::reference as r;
use pgpo::ops::{AttnOptions, RopeTables, Transpose};
use pgpo::rng::Rng;
use pgpo::{Device, Result, Tensor};

type Build = dyn Fn(&[Var], &Device) -> Result<Var>;
type Loss64 = dyn Fn(&[Vec<f64>]) -> f64;

/// Tape gradients of `build`'s scalar loss on `dev`, for inputs of `shapes` drawn from `seed`.
fn tape_grads(shapes: &[&[usize]], seed: u64, build: &Build, dev: &Device) -> Vec<Vec<f32>> {
    // Every new buffer starts as NaN, so a kernel or tape step that leaves an element
    // unwritten (or adds into a buffer it assumed zero) shows in the gradients.
    pgpo::set_poison_outputs(true);
    let mut rng = Rng::new(seed);
    let tape = Tape::new();
    let vars: Vec<Var> = shapes
        .iter()
        .map(|s| tape.var(Tensor::from_vec(rng.vec(s.iter().product(), -1.0, 1.0), s, dev).unwrap()))
        .collect();
    let loss = build(&vars, dev).unwrap();
    let grads = tape.backward(&loss).unwrap();
    vars.iter().map(|v| grads.get(v).expect("every input gets a gradient").to_vec().unwrap()).collect()
}

fn inputs64(shapes: &[&[usize]], seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng::new(seed);
    shapes.iter().map(|s| rng.vec(s.iter().product(), -1.0, 1.0).into_iter().map(f64::from).collect()).collect()
}

fn assert_close(got: &[f32], want: &[f64], atol: f64, rtol: f64, what: &str) {
    let (abs, ratio) = pgpo::check::compare(got, want, atol, rtol);
    assert!(ratio <= 1.0, "{what}: max |err| {abs:.3e}, err/tol {ratio:.3}");
}

/// The full check: CPU tape vs f64 finite differences; other backends vs the CPU tape.
fn check(name: &str, shapes: &[&[usize]], build: &Build, loss64: &Loss64) {
    let seed = name.len() as u64 * 7919;
    let cpu = tape_grads(shapes, seed, build, &Device::Cpu);
    let x = inputs64(shapes, seed);
    let all: Vec<usize> = (0..shapes.len()).collect();
    let fd = r::finite_difference(|v| vec![loss64(v)], &x, &[1.0], &all);
    for (i, (g, f)) in cpu.iter().zip(&fd).enumerate() {
        assert_close(g, f, 1e-4, 1e-3, &format!("{name}: input {i} on cpu vs finite differences"));
    }
    for kind in ["wgpu", "cuda", "cuda-emu"] {
        let Some(dev) = common::backend(kind) else { continue };
        let got = tape_grads(shapes, seed, build, &dev);
        for (i, (g, c)) in got.iter().zip(&cpu).enumerate() {
            let c64: Vec<f64> = c.iter().map(|&v| f64::from(v)).collect();
            assert_close(g, &c64, 1e-5, 1e-4, &format!("{name}: input {i} on {kind} vs cpu"));
        }
    }
}

/// Weights that make the loss sensitive to every output element.
fn weights(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect()
}

/// sum(w * y) on the tape.
fn weighted_sum(y: &Var, dev: &Device) -> Result<Var> {
    let w = y.tape().constant(Tensor::from_vec(weights(y.value().numel()), y.shape(), dev)?);
    ag::sum(&ag::mul(y, &w)?)
}

fn weighted_sum64(y: &[f64]) -> f64 {
    y.iter().zip(weights(y.len())).map(|(a, w)| a * f64::from(w)).sum()
}

fn matmul64(a: &[f64], b: &[f64], batch: (usize, usize), m: usize, k: usize, n: usize, t: Transpose) -> Vec<f64> {
    let z = batch.0.max(batch.1);
    let mut out = vec![0.0; z * m * n];
    for zi in 0..z {
        let (za, zb) = (if batch.0 == 1 { 0 } else { zi }, if batch.1 == 1 { 0 } else { zi });
        for i in 0..m {
            for j in 0..n {
                out[(zi * m + i) * n + j] = (0..k)
                    .map(|p| {
                        let av = if t.a { a[za * m * k + p * m + i] } else { a[za * m * k + i * k + p] };
                        let bv = if t.b { b[zb * k * n + j * k + p] } else { b[zb * k * n + p * n + j] };
                        av * bv
                    })
                    .sum();
            }
        }
    }
    out
}

#[test]
fn add_and_mul_with_broadcast_operands() {
    check(
        "add_mul",
        &[&[3, 4], &[4], &[3, 4]],
        &|v, d| weighted_sum(&ag::mul(&ag::add(&v[0], &v[1])?, &v[2])?, d),
        &|x| weighted_sum64(&(0..12).map(|i| (x[0][i] + x[1][i % 4]) * x[2][i]).collect::<Vec<_>>()),
    );
}

#[test]
fn scale_sum_and_mean() {
    check(
        "scale_mean",
        &[&[5, 3]],
        &|v, d| ag::add(&ag::mean(&ag::scale(&v[0], -2.5)?)?, &weighted_sum(&v[0], d)?),
        &|x| -2.5 * x[0].iter().sum::<f64>() / 15.0 + weighted_sum64(&x[0]),
    );
}

#[test]
fn matmul_in_every_transpose_with_a_broadcast_weight() {
    for (t, name) in [(Transpose::NN, "nn"), (Transpose::NT, "nt"), (Transpose::TN, "tn"), (Transpose::TT, "tt")] {
        let (m, k, n) = (3, 5, 4);
        let sa: Vec<usize> = if t.a { vec![2, k, m] } else { vec![2, m, k] };
        let sb: Vec<usize> = if t.b { vec![n, k] } else { vec![k, n] };
        check(
            &format!("matmul_{name}"),
            &[&sa, &sb],
            &move |v, d| weighted_sum(&ag::matmul(&v[0], &v[1], t)?, d),
            &move |x| weighted_sum64(&matmul64(&x[0], &x[1], (2, 1), m, k, n, t)),
        );
    }
}

#[test]
fn permute_and_reshape() {
    check(
        "permute",
        &[&[2, 3, 4]],
        &|v, d| weighted_sum(&ag::reshape(&ag::permute(&v[0], &[2, 0, 1])?, &[4, 6])?, d),
        &|x| {
            let mut y = vec![0.0; 24];
            for a in 0..2 {
                for b in 0..3 {
                    for c in 0..4 {
                        y[(c * 2 + a) * 3 + b] = x[0][(a * 3 + b) * 4 + c];
                    }
                }
            }
            weighted_sum64(&y)
        },
    );
}

#[test]
fn embedding_with_repeated_ids() {
    let ids = [2u32, 0, 2, 4, 2];
    check(
        "embedding",
        &[&[5, 3]],
        &move |v, d| weighted_sum(&ag::embedding(&v[0], &ids)?, d),
        &move |x| weighted_sum64(&ids.iter().flat_map(|&i| x[0][i as usize * 3..i as usize * 3 + 3].to_vec()).collect::<Vec<_>>()),
    );
}

#[test]
fn activations_and_swiglu() {
    check(
        "activations",
        &[&[4, 5], &[4, 5]],
        &|v, d| {
            let a = ag::add(&ag::silu(&v[0])?, &ag::gelu_tanh(&v[1])?)?;
            let b = ag::add(&ag::gelu_erf(&v[0])?, &ag::swiglu(&v[0], &v[1])?)?;
            weighted_sum(&ag::mul(&a, &b)?, d)
        },
        &|x| {
            let y: Vec<f64> = (0..20)
                .map(|i| {
                    let (g, u) = (x[0][i], x[1][i]);
                    (r::silu(g) + r::gelu_tanh(u)) * (r::gelu_erf(g) + r::silu(g) * u)
                })
                .collect();
            weighted_sum64(&y)
        },
    );
}

#[test]
fn rms_norm_through_the_tape() {
    check(
        "rms_norm",
        &[&[3, 7], &[7]],
        &|v, d| weighted_sum(&ag::rms_norm(&v[0], &v[1], 1e-6)?, d),
        &|x| weighted_sum64(&r::rms_norm(&x[0], &x[1], 1e-6).0),
    );
}

#[test]
fn rope_then_causal_grouped_attention() {
    let (b, hq, hkv, t, hd) = (1, 2, 1, 5, 4);
    let positions: Vec<f32> = (0..t).map(|i| i as f32).collect();
    let tables = move |d: &Device| RopeTables::one_d(&positions, hd, 10_000.0, d).unwrap();
    let cpu_tables = tables(&Device::Cpu);
    let (cos, sin): (Vec<f64>, Vec<f64>) = (
        cpu_tables.cos.to_vec().unwrap().into_iter().map(f64::from).collect(),
        cpu_tables.sin.to_vec().unwrap().into_iter().map(f64::from).collect(),
    );
    let dims = pgpo::backend::cpu::attention::AttnDims { b, hq, hkv, tq: t, tk: t, d: hd, causal: true, scale: 0.5 };
    check(
        "rope_attention",
        &[&[b, hq, t, hd], &[b, hkv, t, hd], &[b, hkv, t, hd]],
        &move |v, d| {
            let tb = tables(d);
            let o = ag::attention(&ag::rope(&v[0], &tb)?, &ag::rope(&v[1], &tb)?, &v[2], &AttnOptions { causal: true, ..Default::default() })?;
            weighted_sum(&o, d)
        },
        &move |x| {
            let q = r::rope(&x[0], &cos, &sin, hq, t, hd);
            let k = r::rope(&x[1], &cos, &sin, hkv, t, hd);
            weighted_sum64(&r::attention(&q, &k, &x[2], &dims, &Default::default()).0)
        },
    );
}

#[test]
fn cross_entropy_mean_ignores_masked_rows() {
    let targets = [3u32, pgpo::ops::IGNORE, 0, 6];
    check(
        "cross_entropy_mean",
        &[&[4, 7]],
        &move |v, _| ag::cross_entropy_mean(&v[0], &targets),
        &move |x| r::cross_entropy(&x[0], &targets, 7).iter().sum::<f64>() / 3.0,
    );
}

#[test]
fn no_grad_records_nothing_and_grads_accumulate_over_micro_batches() {
    let tape = Tape::new();
    let x = tape.var(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3], &Device::Cpu).unwrap());
    {
        let _guard = tape.no_grad();
        let y = ag::sum(&ag::mul(&x, &x).unwrap()).unwrap();
        assert!(!y.is_tracked() && tape.is_empty());
    }
    let mut total = tape.backward(&ag::sum(&ag::mul(&x, &x).unwrap()).unwrap()).unwrap();
    assert!(tape.is_empty(), "backward consumes the recorded nodes");
    total.accumulate(tape.backward(&ag::sum(&ag::scale(&x, 3.0).unwrap()).unwrap()).unwrap()).unwrap();
    // d/dx (x^2) + d/dx (3x) = 2x + 3.
    assert_eq!(total.get(&x).unwrap().to_vec().unwrap(), vec![5.0, 7.0, 9.0]);
}
