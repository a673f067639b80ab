//! PGPO core: the worked example and properties of the token weights, group advantages and
//! the DAPO filter, aggregation, and the oracles written by tests/oracles/make_fixtures.py.

mod common;

use pgpo::backend::cpu::pgpo_weights::response_weights;
use pgpo::io::TensorFile;
use pgpo::ops::{self, KlOptions, Variant, WeightConfig};
use pgpo::rl::advantages::{dapo_keep, grpo_advantages, token_advantages};
use pgpo::rl::policy::{aggregation_weights, Aggregation};
use pgpo::{Device, Tensor};
use std::path::{Path, PathBuf};

fn weights(s: &[f32], c: &WeightConfig) -> Vec<f32> {
    let mut out = vec![0.0; s.len()];
    response_weights(s, &vec![true; s.len()], c, &mut out);
    out
}

#[test]
fn worked_example_of_the_method_matches_to_four_decimals() {
    let w = weights(&[0.0, 0.01, 0.05, 0.30, 2.00], &WeightConfig::default());
    let want = [0.0, 0.0303, 0.1488, 0.8002, 4.0207];
    for (g, e) in w.iter().zip(want) {
        assert!((g - e).abs() < 5e-5, "{w:?} vs {want:?}");
    }
}

#[test]
fn k3_of_the_method_example_is_0_4319() {
    let (pc, pb) = (0.9f32.ln(), 0.3f32.ln());
    let s = pgpo::backend::cpu::kl_dual::k3(pb - pc, 20.0);
    assert!((s - 0.4319).abs() < 1e-4, "{s}");
}

#[test]
fn weights_of_a_response_sum_to_its_length_and_rise_with_the_score() {
    let mut rng = pgpo::rng::Rng::new(3);
    for variant in [Variant::Paper, Variant::Quantile, Variant::Floor] {
        for len in [1usize, 2, 7, 100, 513] {
            let s: Vec<f32> = (0..len).map(|_| rng.uniform().powi(4) * 5.0).collect();
            let w = weights(&s, &WeightConfig { variant, ..Default::default() });
            let sum: f32 = w.iter().sum();
            assert!((sum - len as f32).abs() <= 1e-3 * len as f32, "{variant:?} L={len}: sum {sum}");
            let mut order: Vec<usize> = (0..len).collect();
            order.sort_by(|&a, &b| s[a].total_cmp(&s[b]));
            for pair in order.windows(2) {
                assert!(w[pair[0]] <= w[pair[1]] + 1e-6, "{variant:?}: not monotone at {pair:?}");
            }
        }
    }
}

#[test]
fn a_degenerate_response_gets_uniform_weights() {
    assert_eq!(weights(&[0.3; 6], &WeightConfig::default()), vec![1.0; 6]);
}

#[test]
fn masked_tokens_get_zero_weight_and_the_rest_keep_the_mass() {
    let dev = Device::Cpu;
    let tvd = Tensor::from_vec(vec![0.1, 0.5, 2.0, 0.0, 9.0], &[1, 5], &dev).unwrap();
    let mask = Tensor::from_vec(vec![1.0, 1.0, 1.0, 1.0, 0.0], &[1, 5], &dev).unwrap();
    let w = ops::pgpo_weights(&tvd, &mask, &WeightConfig::default()).unwrap().to_vec().unwrap();
    assert_eq!(w[4], 0.0);
    assert!((w.iter().sum::<f32>() - 4.0).abs() < 1e-4, "{w:?}");
}

#[test]
fn grpo_normalises_per_group_with_the_unbiased_std() {
    let adv = grpo_advantages(&[1.0, 0.0, 0.0, 1.0, 5.0], &[0, 0, 0, 0, 9]).unwrap();
    // Group 0: mean 0.5, unbiased std sqrt(1/3).
    let z = 0.5 / (1.0f64 / 3.0).sqrt();
    for (a, want) in adv.iter().zip([z, -z, -z, z, 0.0]) {
        assert!((f64::from(*a) - want).abs() < 1e-5, "{adv:?}");
    }
}

#[test]
fn dapo_drops_groups_that_are_all_right_or_all_wrong_by_the_chosen_key() {
    let group = [0, 0, 1, 1, 2, 2];
    let reward = [1.0, 1.0, 0.1, 0.0, 1.0, 0.1];
    let accuracy = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0];
    assert_eq!(dapo_keep(&reward, &group), [false, false, true, true, true, true]);
    // By accuracy, group 1 (all wrong, though formatted differently) carries no signal.
    assert_eq!(dapo_keep(&accuracy, &group), [false, false, false, false, true, true]);
}

#[test]
fn aggregation_modes_weight_tokens_as_documented() {
    let mask = [1.0, 1.0, 0.0, 1.0];
    let seq = [0, 0, 0, 1];
    let tm = aggregation_weights(&mask, None, Aggregation::TokenMean).unwrap();
    assert_eq!(tm, [1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0]);
    let smtm = aggregation_weights(&mask, Some(&seq), Aggregation::SeqMeanTokenMean).unwrap();
    assert_eq!(smtm, [0.25, 0.25, 0.0, 0.5]);
    let smts = aggregation_weights(&mask, Some(&seq), Aggregation::SeqMeanTokenSum).unwrap();
    assert_eq!(smts, [0.5, 0.5, 0.0, 0.5]);
    assert!(aggregation_weights(&mask, None, Aggregation::SeqMeanTokenSum).is_err());
}

fn fixture(name: &str) -> TensorFile {
    TensorFile::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], atol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + 1e-4 * w.abs(), "{what}[{i}]: {g} vs oracle {w}");
    }
}

#[test]
fn kl_dual_matches_the_float64_torch_oracle_on_every_backend() {
    let input = fixture("kl_in.safetensors");
    let want = fixture("kl_out.safetensors");
    let (shape, clean) = input.f32("clean", 2).unwrap();
    let (_, blind) = input.f32("blind", 2).unwrap();
    let tokens: Vec<u32> = input.i64("tokens", 1).unwrap().1.iter().map(|&t| t as u32).collect();
    for kind in ["cpu", "wgpu", "cuda", "cuda-emu"] {
        let Some(dev) = common::backend(kind) else { continue };
        let up = |v: &[f32]| Tensor::from_slice(v, &shape, &dev).unwrap();
        let o = ops::kl_dual(&up(&clean), &up(&blind), &tokens, KlOptions { temperature: 0.7, d_clamp: 20.0 }).unwrap();
        for (name, t) in [("logp_clean", &o.logp_clean), ("logp_blind", &o.logp_blind), ("kl", &o.kl), ("k3", &o.k3)] {
            assert_close(&t.to_vec().unwrap(), &want.f32(name, 1).unwrap().1, 2e-5, &format!("{kind} {name}"));
        }
    }
}

fn pgpo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pgpo")
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pgpo-test-{}-{name}", std::process::id()))
}

#[test]
fn policy_loss_cli_matches_torch_autograd_in_every_aggregation_mode() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy_in.safetensors");
    // The signal: tokens that reach the dual clip (negative advantage, ratio above 3), so a
    // loss without it, or with it applied to the wrong side, differs from the oracle's.
    let f = TensorFile::open(&input).unwrap();
    let (shape, logits) = f.f32("logits", 2).unwrap();
    let (tokens, old, adv, mask) = (f.i64("tokens", 1).unwrap().1, f.f32("old_logp", 1).unwrap().1, f.f32("adv", 1).unwrap().1, f.f32("mask", 1).unwrap().1);
    let v = shape[1];
    let dual = (0..shape[0])
        .filter(|&i| {
            let row: Vec<f64> = logits[i * v..(i + 1) * v].iter().map(|&x| f64::from(x)).collect();
            let lse = pgpo::check::reference::logsumexp(&row);
            let ratio = (row[tokens[i] as usize] - lse - f64::from(old[i])).exp();
            mask[i] > 0.0 && adv[i] < 0.0 && ratio > 3.0
        })
        .count();
    assert!(dual >= 3, "only {dual} tokens reach the dual clip");
    for agg in ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"] {
        let out = temp(&format!("policy-{agg}.safetensors"));
        let status = std::process::Command::new(pgpo_bin())
            .args(["policy-loss", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--agg", agg])
            .status()
            .unwrap();
        assert!(status.success(), "{agg}");
        let (got, want) = (TensorFile::open(&out).unwrap(), fixture(&format!("policy_out_{agg}.safetensors")));
        assert_close(&got.f32("loss", 1).unwrap().1, &want.f32("loss", 1).unwrap().1, 1e-6, &format!("{agg} loss"));
        assert_close(&got.f32("dlogits", 2).unwrap().1, &want.f32("dlogits", 2).unwrap().1, 1e-6, &format!("{agg} dlogits"));
        std::fs::remove_file(out).ok();
    }
}

#[test]
fn advantages_cli_matches_the_python_oracle() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adv_in.safetensors");
    let out = temp("adv.safetensors");
    let status = std::process::Command::new(pgpo_bin())
        .args(["advantages", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--tau", "0.4", "--beta", "2.0"])
        .status()
        .unwrap();
    assert!(status.success());
    let (got, want) = (TensorFile::open(&out).unwrap(), fixture("adv_out.safetensors"));
    assert_close(&got.f32("adv", 1).unwrap().1, &want.f32("adv", 1).unwrap().1, 1e-5, "adv");
    for name in ["tvd", "weights", "token_adv"] {
        assert_close(&got.f32(name, 2).unwrap().1, &want.f32(name, 2).unwrap().1, 1e-5, name);
    }
    std::fs::remove_file(out).ok();
}

#[test]
fn clis_reject_a_wrong_shape_or_dtype_naming_the_tensor() {
    let bad = temp("bad.safetensors");
    // adv with the wrong length, tokens as F32.
    pgpo::io::write_f32(
        &bad,
        &[("logits", vec![2, 3], &[0.0; 6]), ("tokens", vec![2], &[0.0, 1.0]), ("old_logp", vec![2], &[0.0; 2]), ("adv", vec![3], &[0.0; 3])],
    )
    .unwrap();
    let out = temp("never.safetensors");
    let run = |args: &[&str]| std::process::Command::new(pgpo_bin()).args(args).output().unwrap();
    let r = run(&["policy-loss", "--in", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!r.status.success());
    let msg = String::from_utf8_lossy(&r.stderr);
    assert!(msg.contains("`tokens`") && msg.contains("I64"), "{msg}");
    let r = run(&["advantages", "--in", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("`rewards`"));
    let r = run(&["policy-loss", "--in", "/nonexistent.safetensors", "--out", out.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(!out.exists(), "no output file is written on failure");
    std::fs::remove_file(bad).ok();
}

#[test]
fn token_advantages_scale_the_sequence_advantage_by_the_weights() {
    let (b, l) = (2, 3);
    let t = token_advantages(
        &[1.0, 0.0],
        &[0, 0],
        &[-1.0, -2.0, -0.5, -1.0, -1.0, -1.0],
        &[-1.5, -2.0, -3.0, -1.0, -1.2, -4.0],
        &[1.0; 6],
        l,
        &WeightConfig::default(),
        20.0,
    )
    .unwrap();
    for r in 0..b {
        let sum: f32 = t.weights[r * l..(r + 1) * l].iter().sum();
        assert!((sum - l as f32).abs() < 1e-4);
        for i in 0..l {
            assert!((t.token_adv[r * l + i] - t.adv[r] * t.weights[r * l + i]).abs() < 1e-6);
        }
    }
}
