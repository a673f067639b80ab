//! Numerical faults in training. A step whose loss or gradient is not finite is skipped and
//! logged, never applied (every parameter keeps its bits); after `checkpoint.max_bad_steps`
//! such steps in a row the run stops with an error naming the step and the first non-finite
//! tensor. Faults are injected into the forward's output (the final hidden states the fused
//! losses read), into one gradient, and into a weight.

use pgpo::train::rl_step::rl_step;
use pgpo::train::trainer::{Fault, StepStats, Trainer};
use pgpo::train::TrainConfig;
use pgpo::Tensor;

fn trainer(tag: &str) -> Trainer {
    let mut cfg = TrainConfig { name: tag.into(), backend: "cpu".into(), ..Default::default() };
    cfg.out_dir = std::env::temp_dir().join(format!("pgpo-faults-{tag}-{}", std::process::id()));
    (cfg.tiny.hidden, cfg.tiny.layers, cfg.sft.batch, cfg.data.eval_size, cfg.checkpoint.max_bad_steps) = (64, 1, 4, 2, 3);
    // GRPO without the dynamic filter: the fresh model's all-zero rewards still reach the loss.
    (cfg.rl.algo, cfg.rl.dynamic_sampling, cfg.rl.prompts, cfg.rl.group, cfg.rl.max_new_tokens) = (pgpo::train::rl_options::Algo::Grpo, false, 2, 2, 4);
    Trainer::new(cfg).unwrap()
}

fn bits(t: &Trainer) -> Vec<Vec<u32>> {
    t.weights.tensors().iter().map(|x| x.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()).collect()
}

fn assert_skipped(s: &StepStats, what: &str) {
    assert!(!s.applied && s.get("skipped") == 1.0, "{what}: {:?}", s.fields);
}

/// Steps 1 and 2 are skipped with the parameters untouched; step 3 stops the run.
fn two_skips_then_stop(t: &mut Trainer, step: impl Fn(&mut Trainer, usize) -> pgpo::Result<StepStats>) -> String {
    let before = bits(t);
    for k in 1..=2 {
        let s = step(t, k).unwrap();
        assert_skipped(&s, &format!("step {k}"));
        assert!(bits(t) == before, "skipped step {k} changed the parameters");
    }
    let err = step(t, 3).unwrap_err().to_string();
    assert!(err.contains("step 3") && err.contains("3 steps in a row"), "{err}");
    assert!(bits(t) == before);
    err
}

#[test]
fn nan_hidden_states_in_sft_are_skipped_and_the_third_in_a_row_stops_naming_them() {
    let mut t = trainer("sft-hidden");
    t.fault = Some(Fault::Output);
    let err = two_skips_then_stop(&mut t, |t, k| t.sft_step(k));
    assert!(err.contains("SFT loss is NaN") && err.contains("first non-finite tensor is the final hidden states"), "{err}");
}

#[test]
fn a_nan_gradient_in_sft_is_skipped_and_the_stop_names_that_gradient() {
    let mut t = trainer("sft-grad");
    let name = "model.layers.0.mlp.up_proj.weight";
    t.fault = Some(Fault::Gradient(name.into()));
    let s = t.sft_step(1).unwrap();
    assert!(s.get("loss").is_finite(), "the loss itself stays finite: {:?}", s.fields);
    assert_skipped(&s, "the probe step");
    t.bad_steps = 0;
    let err = two_skips_then_stop(&mut t, |t, k| t.sft_step(k));
    assert!(err.contains(&format!("gradient of `{name}`")), "{err}");
}

#[test]
fn a_good_step_resets_the_count_of_bad_steps() {
    let mut t = trainer("reset");
    for (k, fault) in [Some(Fault::Output), Some(Fault::Output), None, Some(Fault::Output), Some(Fault::Output)].into_iter().enumerate() {
        let injected = fault.is_some();
        t.fault = fault;
        let s = t.sft_step(k + 1).unwrap();
        assert_eq!(s.applied, !injected, "step {}", k + 1);
    }
    assert_eq!(t.bad_steps, 2);
}

#[test]
fn nan_hidden_states_and_a_nan_gradient_in_rl_are_skipped_and_stop_the_run() {
    // The fused loss never forms logits: the fault goes into the final hidden states it reads.
    let mut t = trainer("rl-hidden");
    t.fault = Some(Fault::Output);
    let err = two_skips_then_stop(&mut t, rl_step);
    assert!(err.contains("policy loss is NaN") && err.contains("the final hidden states"), "{err}");

    let mut t = trainer("rl-grad");
    t.fault = Some(Fault::Gradient("model.norm.weight".into()));
    let err = two_skips_then_stop(&mut t, rl_step);
    assert!(err.contains("gradient of `model.norm.weight`"), "{err}");
}

#[test]
fn a_nan_weight_skips_rl_steps_at_the_rollout_and_the_stop_names_the_weight() {
    let mut t = trainer("rl-weight");
    // One NaN in the final norm makes every logit NaN, so sampling cannot proceed.
    let name = "model.norm.weight";
    let mut poisoned = t.weights.get(name).unwrap().to_vec().unwrap();
    poisoned[0] = f32::NAN;
    let n = poisoned.len();
    t.weights.set(name, Tensor::from_vec(poisoned, &[n], &t.device).unwrap()).unwrap();
    let err = two_skips_then_stop(&mut t, rl_step);
    assert!(err.contains(&format!("parameter `{name}`")) && err.contains("generation"), "{err}");
}

/// A step whose every mini-batch is not finite counts once as a bad step, and its metrics
/// say how many mini-batches applied and how many were skipped. Catches: counting each
/// mini-batch (two bad "steps" here, and a run stopped early), and a metrics row that hides
/// skipped mini-batches.
#[test]
fn a_bad_rl_step_counts_once_however_many_mini_batches_it_skips() {
    let mut t = trainer("rl-once");
    // 2 prompts x G = 2 in mini-batches of 1: four mini-batches.
    t.cfg.rl.mini_batch = 1;
    t.fault = Some(Fault::Output);
    let s = rl_step(&mut t, 1).unwrap();
    assert_eq!((s.get("minibatches_applied"), s.get("minibatches_skipped")), (0.0, 4.0), "{:?}", s.fields);
    assert_skipped(&s, "all four mini-batches");
    assert_eq!(t.bad_steps, 1);
    t.fault = None;
    let s = rl_step(&mut t, 2).unwrap();
    assert_eq!((s.get("minibatches_applied"), s.get("minibatches_skipped")), (4.0, 0.0), "{:?}", s.fields);
    assert_eq!(t.bad_steps, 0, "a good step resets the count");
}
