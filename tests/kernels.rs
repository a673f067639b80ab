//! Every kernel on every backend present: GPU backends against the CPU backend, the CPU
//! backend against naive f64 loops. Inputs, shapes and tolerances live in `pgpo::check`.

mod common;

fn assert_kernel(name: &str, kind: &str) {
    let Some(dev) = common::backend(kind) else { return };
    let check = pgpo::check::find(name).unwrap_or_else(|| panic!("no check named {name}"));
    let row = pgpo::check::run(&check, &dev);
    assert!(
        row.pass,
        "{name} on {}: max |err| {:.3e}, err/tol {:.3} (tolerances {:?}) {}",
        row.backend,
        row.max_abs_err,
        row.worst_ratio,
        check.tols,
        row.error.unwrap_or_default()
    );
}

macro_rules! kernel_tests {
    ($($kernel:ident),* $(,)?) => {
        const TESTED: &[&str] = &[$(stringify!($kernel)),*];
        $(
            mod $kernel {
                #[test]
                fn cpu_matches_f64_reference() {
                    super::assert_kernel(stringify!($kernel), "cpu");
                }
                #[test]
                fn wgpu_matches_cpu() {
                    super::assert_kernel(stringify!($kernel), "wgpu");
                }
                #[test]
                fn cuda_matches_cpu() {
                    super::assert_kernel(stringify!($kernel), "cuda");
                }
                #[test]
                fn cuda_emu_matches_cpu() {
                    super::assert_kernel(stringify!($kernel), "cuda-emu");
                }
            }
        )*
    };
}

kernel_tests!(
    fill, add, add_into, mul, scale, dropout, silu, gelu_tanh, gelu_erf, row_sum, row_max, softmax, log_softmax, matmul, matmul_nt,
    matmul_bf16, matmul_nt_bf16, matmul_tn_bf16, matmul_tt_bf16, matmul_f16, matmul_nt_f16, matmul_tn_f16, matmul_tt_f16,
    matmul_a_bf16, matmul_tn_a_f16, matmul_nt_both_bf16_f16, matmul_acc_nn_bf16, matmul_acc_tn_f16, gather_bf16, gather_f16,
    matmul_acc_nn, matmul_acc_tn, matmul_tn, matmul_tt, matmul_nvrtc, matmul_tt_nvrtc, gather, scatter_add, permute, transpose, concat, slice, silu_backward,
    gelu_tanh_backward, gelu_erf_backward, swiglu, swiglu_backward, rms_norm, rms_norm_backward, rope, rope_mrope,
    rope_vision, rope_backward, attention, attention_causal, attention_padded, attention_blind, attention_segments,
    attention_segments_causal, attention_key_mask, attention_backward_segments_causal, attention_backward_key_mask,
    attention_backward, attention_backward_causal, attention_backward_padded, attention_backward_blind,
    attention_backward_segments, cross_entropy, cross_entropy_backward, adamw, sum_squares, kl_dual, pgpo_weights,
    pgpo_weights_quantile, pgpo_weights_floor, pgpo_weights_no_norm, policy_loss, policy_loss_ref_kl, policy_loss_linear, kl_dual_linear, cross_entropy_linear,
    policy_loss_linear_bf16, policy_loss_linear_f16, kl_dual_linear_bf16, kl_dual_linear_f16, cross_entropy_linear_bf16, cross_entropy_linear_f16,
    row_max_nonfinite, softmax_nonfinite, log_softmax_nonfinite, rms_norm_nonfinite, cross_entropy_nonfinite,
    attention_nonfinite, attention_key_mask_nonfinite, kl_dual_nonfinite, policy_loss_nonfinite,
);

#[test]
fn every_checked_kernel_has_backend_tests() {
    for c in pgpo::check::all() {
        assert!(TESTED.contains(&c.name), "kernel {} is in `pgpo check` but has no tests here", c.name);
    }
}

fn fails(got: &[f32], want: &[f64]) -> bool {
    let (abs, ratio) = pgpo::check::compare(got, want, 1e-3, 1e-3);
    abs.is_infinite() && ratio > 1.0
}

#[test]
fn harness_catches_an_unwritten_element() {
    // A result with one NaN (an element the kernel never wrote) must fail the comparison.
    let want = vec![1.0f64; 10];
    let mut got = vec![1.0f32; 10];
    got[7] = f32::NAN;
    assert!(fails(&got, &want));
}

#[test]
fn harness_fails_finite_against_nan() {
    assert!(fails(&[1.0, 2.0], &[1.0, f64::NAN]));
}

#[test]
fn harness_fails_nan_against_finite() {
    assert!(fails(&[1.0, f32::NAN], &[1.0, 2.0]));
}

#[test]
fn harness_fails_opposite_infinities() {
    assert!(fails(&[f32::INFINITY], &[f64::NEG_INFINITY]));
    assert!(fails(&[f32::NEG_INFINITY], &[f64::INFINITY]));
    assert!(fails(&[3.0e38], &[f64::INFINITY]));
    assert!(fails(&[f32::INFINITY], &[1.0]));
}

#[test]
fn harness_matches_non_finite_values_by_class() {
    let (abs, ratio) = pgpo::check::compare(
        &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0],
        &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0],
        0.0,
        0.0,
    );
    assert_eq!((abs, ratio), (0.0, 0.0));
}

#[test]
fn harness_fails_a_missing_or_extra_output() {
    let want = vec![vec![1.0f64; 3], vec![2.0; 2]];
    let tols = [(1e-3, 1e-3), (1e-3, 1e-3)];
    let got = vec![vec![1.0f32; 3], vec![2.0; 2]];
    assert_eq!(pgpo::check::compare_outputs(&got, &want, &tols), Ok((0.0, 0.0)));
    assert!(pgpo::check::compare_outputs(&got[..1], &want, &tols).is_err(), "a missing output passed");
    let extra = vec![vec![1.0f32; 3], vec![2.0; 2], vec![0.0; 1]];
    assert!(pgpo::check::compare_outputs(&extra, &want, &tols).is_err(), "an extra output passed");
    assert!(pgpo::check::compare_outputs(&got, &want, &tols[..1]).is_err(), "an output without a tolerance passed");
    let short = vec![vec![1.0f32; 3], vec![2.0; 1]];
    assert!(pgpo::check::compare_outputs(&short, &want, &tols).is_err(), "a short output passed");
}

#[test]
fn every_check_states_one_tolerance_per_output() {
    let mut rng = pgpo::rng::Rng::new(1);
    for c in pgpo::check::all() {
        let shape = c.shapes[0];
        let want = (c.reference)(shape, &(c.inputs)(shape, &mut rng));
        assert_eq!(c.tols.len(), want.len(), "{}: {} tolerances for {} outputs", c.name, c.tols.len(), want.len());
    }
}

#[test]
fn erf_series_matches_known_values() {
    // Values from Abramowitz & Stegun table 7.1.
    for (x, want) in [(0.5, 0.520_499_877_8), (1.0, 0.842_700_792_9), (2.0, 0.995_322_265_0)] {
        assert!((pgpo::check::erf_series(x) - want).abs() < 1e-9);
    }
}

#[test]
fn cpu_logit_gradients_hold_no_subnormals() {
    // A wide logit row: most softmax entries times the 1/N mean scale fall below f32's
    // smallest normal. Those must come out as 0 (a subnormal fed to the LM head's gradient
    // matmuls costs a microcode assist per multiply on Intel cores), the rest as the f64
    // softmax gives them.
    use pgpo::{ops, Device, Tensor};
    let v = 1000;
    let logits: Vec<f32> = (0..v).map(|i| -(i as f32) * 0.1).collect();
    let x = Tensor::from_vec(logits.clone(), &[1, v], &Device::Cpu).unwrap();
    let (_, lse) = ops::cross_entropy(&x, &[3]).unwrap();
    let one = Tensor::from_vec(vec![1.0], &[1], &Device::Cpu).unwrap();
    let scale = 1.0 / 512.0;
    let d = ops::cross_entropy_backward(&x, &[3], &lse, &one, scale).unwrap().to_vec().unwrap();
    let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
    let mut subnormal_in_f64 = 0;
    for (i, (&g, &l)) in d.iter().zip(&logits).enumerate() {
        assert!(g == 0.0 || g.is_normal(), "dlogits[{i}] = {g:e} is subnormal");
        let want = scale as f64 * ((l as f64).exp() / z - f64::from(u8::from(i == 3)));
        if want.abs() < f32::MIN_POSITIVE as f64 {
            subnormal_in_f64 += 1;
        } else {
            // f32 rounding of l - lse (up to 87 in size) gives up to 5e-6 relative.
            assert!((g as f64 - want).abs() <= 2e-5 * want.abs(), "dlogits[{i}] = {g:e}, f64 gives {want:e}");
        }
    }
    assert!(subnormal_in_f64 > 10, "the row must reach the subnormal range ({subnormal_in_f64} entries do)");
}
