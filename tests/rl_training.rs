//! RL steps that really train. Every test starts from one shared SFT checkpoint whose rollouts
//! finish and earn different rewards, asserts that its step saw a signal (non-zero advantages,
//! parameters that moved, weights that are not uniform) and then checks what the algorithm
//! computed against a reference written from its paper. Each test names the mistake it
//! catches; each was seen failing with that mistake made once.

mod common;

use pgpo::check::reference::pgpo_response;
use pgpo::model::ParamVars;
use pgpo::train::config::RlConfig;
use pgpo::train::rl_options::{Algo, FilterKey, TvdEstimate, Variant};
use pgpo::train::rl_step::rl_step;
use pgpo::train::trainer::{StepTrace, Trainer};
use pgpo::train::visual_dependency::visual_dependency;
use pgpo::train::{run, TrainConfig};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn out_dir() -> PathBuf {
    std::env::temp_dir().join(format!("pgpo-rl-training-{}", std::process::id()))
}

/// The tiny model after enough SFT that its responses finish and some are right (built once
/// per test binary).
fn sft_start() -> &'static Path {
    static START: OnceLock<PathBuf> = OnceLock::new();
    START.get_or_init(|| common::sft_checkpoint(&out_dir(), "sft"))
}

/// RL from the SFT start with `algo`'s preset: 4 prompts, G = 4, 24 new tokens.
fn cfg(name: &str, algo: Algo) -> TrainConfig {
    let mut c = TrainConfig { name: name.into(), backend: "cpu".into(), out_dir: out_dir(), model: Some(sft_start().to_path_buf()), ..Default::default() };
    c.sft.steps = 0;
    c.data.eval_size = 4;
    c.rl = RlConfig { steps: 1, prompts: 4, group: 4, max_new_tokens: 24, eval_every: 0, ..RlConfig::preset(algo) };
    c.checkpoint.every = 0;
    c
}

fn bits(t: &Trainer) -> Vec<Vec<u32>> {
    t.weights.tensors().iter().map(|x| x.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()).collect()
}

/// One step; asserts the signal: some advantage is not zero and the parameters moved.
fn step(t: &mut Trainer) -> StepTrace {
    let before = bits(t);
    let s = rl_step(t, 1).unwrap();
    let trace = s.trace.clone().expect("an RL step's trace");
    assert!(trace.seq_adv.iter().any(|a| a.abs() > 1e-3), "all advantages are zero: rewards {:?}", trace.rewards);
    assert!(s.applied && bits(t) != before, "the parameters did not move: {:?}", s.fields);
    trace
}

/// Per kept response, its range in the per-token vectors.
fn spans(t: &StepTrace) -> Vec<std::ops::Range<usize>> {
    let mut at = 0;
    t.responses.iter().map(|(_, toks)| {
        at += toks.len();
        at - toks.len()..at
    }).collect()
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() <= 1e-4 * b.abs().max(1.0)
}

/// Checks `trace.weights` against the f64 reference of `variant` fed the step's own TVD, and
/// the token advantages against adv x weight. Returns whether any weight differs from 1.
fn assert_weights(trace: &StepTrace, c: &RlConfig, variant: &str) -> bool {
    let mut non_uniform = false;
    for (r, span) in spans(trace).into_iter().enumerate() {
        let s: Vec<f64> = trace.tvd[span.clone()].iter().map(|&x| f64::from(x)).collect();
        let want = pgpo_response(&s, &vec![true; s.len()], f64::from(c.tau), f64::from(c.beta), f64::from(c.eps), variant, f64::from(c.floor));
        for (k, i) in span.enumerate() {
            assert!(close(trace.weights[i], want[k]), "{variant}: response {r} token {k}: weight {} vs reference {}", trace.weights[i], want[k]);
            let adv = f64::from(trace.seq_adv[r]) * want[k];
            assert!(close(trace.token_adv[i], adv), "{variant}: response {r} token {k}: token advantage {} vs {adv}", trace.token_adv[i]);
            non_uniform |= (want[k] - 1.0).abs() > 1e-3;
        }
    }
    non_uniform
}

/// A PGPO step's token advantages are the group advantage times the spec's weights of that
/// step's TVD; a DAPO step on the same batch (same start, same seed) has uniform weights.
/// Catches: a stubbed weighting (every weight 1), `algo = "pgpo"` running DAPO, weights of
/// the wrong response, and DAPO picking up PGPO's weights.
#[test]
fn pgpo_token_advantages_are_adv_times_the_reference_weights_and_dapo_is_uniform() {
    let mut p = Trainer::new(cfg("pgpo-weights", Algo::Pgpo)).unwrap();
    let mut d = Trainer::new(cfg("dapo-weights", Algo::Dapo)).unwrap();
    let (tp, td) = (step(&mut p), step(&mut d));
    assert!(assert_weights(&tp, &p.cfg.rl, "paper"), "every PGPO weight is 1: the test would not see a stubbed weighting");
    assert_eq!(tp.responses, td.responses, "the two steps did not draw the same batch");
    assert_eq!(tp.seq_adv, td.seq_adv);
    for (r, span) in spans(&td).into_iter().enumerate() {
        for i in span {
            assert_eq!(td.weights[i], 1.0, "DAPO weight of response {r}");
            assert_eq!(td.token_adv[i], td.seq_adv[r], "DAPO token advantage of response {r}");
        }
    }
}

/// Inside the trainer: the exact KL drives the weights with `rl.tvd = "kl"`, and the
/// quantile, floor and no-norm variants give their reference weights. Catches: the `tvd`
/// option ignored (k3 used), a variant ignored (the paper's weights used), and a variant
/// applied to the wrong formula.
#[test]
fn tvd_kl_and_the_weight_variants_drive_the_step_as_specified() {
    for (name, tvd, variant) in [("kl", TvdEstimate::Kl, Variant::Paper), ("quantile", TvdEstimate::K3, Variant::Quantile), ("floor", TvdEstimate::K3, Variant::Floor), ("no-norm", TvdEstimate::K3, Variant::NoNorm)] {
        let mut c = cfg(&format!("variant-{name}"), Algo::Pgpo);
        (c.rl.tvd, c.rl.variant) = (tvd, variant);
        let mut t = Trainer::new(c).unwrap();
        let start = t.weights.clone();
        let trace = step(&mut t);
        let vname = match variant {
            Variant::Paper => "paper",
            Variant::Quantile => "quantile",
            Variant::Floor => "floor",
            Variant::NoNorm => "no-norm",
        };
        assert!(assert_weights(&trace, &t.cfg.rl, vname), "{name}: uniform weights");
        // The variant must make a difference on this batch, or using the paper's would pass.
        let paper_differs = spans(&trace).into_iter().any(|span| {
            let s: Vec<f64> = trace.tvd[span].iter().map(|&x| f64::from(x)).collect();
            let (a, b) = (pgpo_response(&s, &vec![true; s.len()], 0.4, 2.0, 1e-8, vname, 0.1), pgpo_response(&s, &vec![true; s.len()], 0.4, 2.0, 1e-8, "paper", 0.1));
            a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-3)
        });
        assert!(variant == Variant::Paper || paper_differs, "{name}: the variant equals the paper's weights on this batch");
        if tvd == TvdEstimate::Kl {
            // The step's TVD is the exact KL of its responses under the rollout policy, and it
            // differs from k3 here.
            let tape = pgpo::autograd::Tape::new();
            let items = {
                let mut fresh = Trainer::new(cfg("variant-kl-items", Algo::Pgpo)).unwrap();
                fresh.next_items(4).unwrap()
            };
            let prompts: Vec<_> = trace.responses.iter().map(|(p, _)| &items[*p].prompt).collect();
            let tails: Vec<&[u32]> = trace.responses.iter().map(|(_, r)| r.as_slice()).collect();
            let kl = visual_dependency(&ParamVars::frozen(&tape, &start), &t.scoring(), &prompts, &tails, t.cfg.rl.temperature).unwrap().kl;
            let (want, k3) = (kl.kl.to_vec().unwrap(), kl.k3.to_vec().unwrap());
            for (i, (&got, &w)) in trace.tvd.iter().zip(&want).enumerate() {
                assert!(close(got, f64::from(w)), "token {i}: TVD {got} vs exact KL {w}");
            }
            assert!(want.iter().zip(&k3).any(|(a, b)| (a - b).abs() > 1e-3 * a.abs().max(1e-3)), "k3 equals the KL on this batch");
        }
    }
}

/// Dr. GRPO's advantages are R - mean(R) of the group, without the std; GRPO's are divided
/// by the group's (unbiased) std. Catches: Dr. GRPO still dividing by the std, and GRPO not.
#[test]
fn dr_grpo_advantages_skip_the_std_and_grpo_divides_by_it() {
    for algo in [Algo::DrGrpo, Algo::Grpo] {
        let mut t = Trainer::new(cfg(&format!("adv-{algo}"), algo)).unwrap();
        let trace = step(&mut t);
        let g = t.cfg.rl.group;
        let mut checked = 0;
        for (k, &i) in trace.kept.iter().enumerate() {
            let group = &trace.rewards[i / g * g..i / g * g + g];
            let mean = group.iter().map(|&r| f64::from(r)).sum::<f64>() / g as f64;
            let std = (group.iter().map(|&r| (f64::from(r) - mean).powi(2)).sum::<f64>() / (g as f64 - 1.0)).sqrt();
            let want = if algo == Algo::DrGrpo { f64::from(trace.rewards[i]) - mean } else { (f64::from(trace.rewards[i]) - mean) / (std + 1e-6) };
            assert!(close(trace.seq_adv[k], want), "{algo}: response {i}: advantage {} vs {want}", trace.seq_adv[k]);
            checked += usize::from(std > 1e-3 && (std - 1.0).abs() > 1e-2);
        }
        assert!(checked > 0, "{algo}: no group whose std differs from 0 and 1: dividing by it would not show");
    }
}

/// DAPO's dynamic sampling drops a group whose responses are all right, keeps the informative
/// ones, and a step that keeps nothing is skipped without touching the parameters. Near-greedy
/// sampling (temperature 1e-3) makes each group's responses agree. Catches: the filter off,
/// the filter keyed on the wrong score, and a step that keeps nothing still applying.
#[test]
fn dynamic_sampling_drops_an_all_correct_group_and_a_step_keeping_nothing_is_skipped() {
    let mut c = cfg("dapo-filter", Algo::Dapo);
    (c.rl.temperature, c.rl.prompts, c.rl.group, c.rl.filter_key) = (1e-3, 8, 2, FilterKey::Accuracy);
    let mut t = Trainer::new(c).unwrap();
    let before = bits(&t);
    let s = rl_step(&mut t, 1).unwrap();
    let trace = s.trace.clone().unwrap();
    let groups: Vec<&[f32]> = trace.rewards.chunks(2).collect();
    let right = |r: f32| r >= 0.9 - 1e-6;
    assert!(groups.iter().any(|g| g.iter().all(|&r| right(r))), "no all-correct group to drop: {:?}", trace.rewards);
    assert!(trace.rewards.iter().any(|&r| !right(r)), "every response is right: {:?}", trace.rewards);
    for (k, g) in groups.iter().enumerate() {
        let informative = g.iter().any(|&r| right(r)) && g.iter().any(|&r| !right(r));
        for i in 2 * k..2 * k + 2 {
            assert_eq!(trace.kept.contains(&i), informative, "group {k} {g:?}: kept {:?}", trace.kept);
        }
    }
    assert!(s.get("kept_fraction") < 1.0);
    if trace.kept.is_empty() {
        assert!(!s.applied && s.get("skipped") == 1.0 && bits(&t) == before, "a step that kept nothing applied: {:?}", s.fields);
    }
    // With every group agreeing, nothing is kept: the step is skipped and nothing moves.
    assert!(trace.kept.len() < trace.rewards.len());
    let mut c = cfg("dapo-nothing", Algo::Dapo);
    (c.rl.temperature, c.rl.prompts, c.rl.group, c.rl.filter_key, c.rl.max_new_tokens) = (1e-3, 2, 2, FilterKey::Accuracy, 24);
    let mut t = Trainer::new(c).unwrap();
    let before = bits(&t);
    let s = rl_step(&mut t, 1).unwrap();
    let trace = s.trace.clone().unwrap();
    let agree = trace.rewards.chunks(2).all(|g| right(g[0]) == right(g[1]));
    assert!(agree, "a group disagrees at temperature 1e-3: {:?}", trace.rewards);
    assert!(trace.kept.is_empty() && !s.applied && s.get("skipped") == 1.0, "{:?}", s.fields);
    assert!(bits(&t) == before, "a skipped step changed the parameters");
}

/// Two epochs over several mini-batches apply one update per mini-batch per epoch, each on
/// non-zero advantages. Catches: `epochs` ignored, the batch not split by `mini_batch`, and a
/// skipped mini-batch counted as applied.
#[test]
fn epochs_and_mini_batches_apply_one_update_each() {
    let mut c = cfg("epochs", Algo::Pgpo);
    (c.rl.epochs, c.rl.mini_batch, c.rl.dynamic_sampling) = (2, 4, false);
    let mut t = Trainer::new(c).unwrap();
    let s = rl_step(&mut t, 1).unwrap();
    let trace = s.trace.clone().unwrap();
    assert!(trace.seq_adv.iter().any(|a| a.abs() > 1e-3), "all advantages are zero");
    let per_epoch = trace.kept.len().div_ceil(4);
    assert!(per_epoch >= 3, "only {per_epoch} mini-batches");
    assert_eq!(s.get("minibatches_applied"), (2 * per_epoch) as f64, "{:?}", s.fields);
    assert_eq!(s.get("minibatches_skipped"), 0.0);
    assert!(s.get("grad_variance").is_finite(), "the gradient variance needs several mini-batches");
}

/// Metrics rows without the wall-clock fields.
fn metrics(run_dir: &Path) -> Vec<u8> {
    std::fs::read(run_dir.join("metrics.jsonl")).unwrap()
}

/// A run resumed inside RL, with weight decay and the reference-KL term on, matches the
/// uninterrupted run byte for byte (metrics and final weights), on steps with non-zero
/// advantages. Catches: AdamW rebuilt on resume with SFT's settings (no weight decay), and
/// the reference policy not restored (or taken from the checkpoint instead of the RL start).
#[test]
fn a_run_resumed_inside_rl_with_weight_decay_and_kl_matches_the_uninterrupted_one() {
    let mut c = cfg("resume-rl-a", Algo::Pgpo);
    (c.rl.steps, c.rl.weight_decay, c.rl.kl_coef, c.rl.lr) = (4, 0.1, 0.05, 1e-3);
    (c.checkpoint.every, c.checkpoint.keep, c.log_timings) = (2, 10, false);
    let a = run(c.clone(), &mut |_| {}).unwrap();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&a.metrics).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let late: Vec<_> = rows.iter().filter(|r| r["phase"] == "rl" && r["step"].as_u64().unwrap() > 2).collect();
    assert!(late.iter().any(|r| r["adv_abs_mean"].as_f64().unwrap_or(0.0) > 1e-3 && r["minibatches_applied"].as_f64().unwrap_or(0.0) > 0.0), "no RL step after the cut trained: {late:?}");
    c.name = "resume-rl-b".into();
    let b = run(c.clone(), &mut |_| {}).unwrap();
    std::fs::remove_dir_all(b.run_dir.join("checkpoints/rl-final")).unwrap();
    c.resume = true;
    let mut from = None;
    let resumed = run(c, &mut |e| {
        if let pgpo::train::Event::Resumed { checkpoint, .. } = e {
            from = Some(checkpoint);
        }
    })
    .unwrap();
    assert!(from.unwrap().ends_with("rl-00002"));
    assert!(metrics(&a.run_dir) == metrics(&resumed.run_dir), "metrics differ:\n{}\n{}", String::from_utf8_lossy(&metrics(&a.run_dir)), String::from_utf8_lossy(&metrics(&resumed.run_dir)));
    let w = |d: &Path| std::fs::read(d.join("checkpoints/rl-final/model.safetensors")).unwrap();
    assert!(w(&a.run_dir) == w(&resumed.run_dir), "final weights differ");
}

/// `rl.tvd_policy = "current"` recomputes the dependency with the current weights before each
/// mini-batch after the first update, so the second epoch's token advantages move away from
/// the rollout's; with "rollout" they stay adv x the rollout weights. Catches: the option
/// ignored either way.
#[test]
fn tvd_from_the_current_policy_is_recomputed_after_an_update() {
    use pgpo::train::rl_options::TvdPolicy;
    for policy in [TvdPolicy::Rollout, TvdPolicy::Current] {
        let mut c = cfg(&format!("tvd-policy-{policy:?}"), Algo::Pgpo);
        (c.rl.epochs, c.rl.tvd_policy, c.rl.lr) = (2, policy, 1e-3);
        let mut t = Trainer::new(c).unwrap();
        let trace = step(&mut t);
        let moved = spans(&trace).into_iter().enumerate().any(|(r, span)| span.into_iter().any(|i| !close(trace.token_adv[i], f64::from(trace.seq_adv[r]) * f64::from(trace.weights[i]))));
        assert_eq!(moved, policy == TvdPolicy::Current, "{policy:?}: the last update's token advantages moved from the rollout's: {moved}");
    }
}

/// A degenerate response (every token with the same dependency) gets uniform weights by
/// default and zeros with `rl.degenerate = "zero"`; the other responses keep the spec's
/// weights either way. Catches: the option ignored, and zeroing a response that is not
/// degenerate.
#[test]
fn a_degenerate_response_gets_uniform_or_zero_weights_as_configured() {
    use pgpo::train::rl_options::Degenerate;
    use pgpo::train::rl_step::token_weights;
    let tails: [&[u32]; 2] = [&[5, 6, 7, 8], &[9, 10, 11]];
    let tvd = [0.3f32, 0.3, 0.3, 0.3, 0.0, 0.5, 2.0];
    let want: Vec<f64> = pgpo_response(&[0.0, 0.5, 2.0], &[true; 3], 0.4, 2.0, 1e-8, "paper", 0.1);
    for (mode, first) in [(Degenerate::Uniform, 1.0), (Degenerate::Zero, 0.0)] {
        let c = RlConfig { degenerate: mode, ..RlConfig::preset(Algo::Pgpo) };
        let w = token_weights(&c, &tvd, &tails, &pgpo::Device::Cpu).unwrap();
        assert_eq!(&w[..4], &[first; 4], "{mode:?}: the degenerate response");
        for (k, &x) in w[4..].iter().enumerate() {
            assert!(close(x, want[k]), "{mode:?}: token {k} of the other response: {x} vs {}", want[k]);
        }
    }
}
