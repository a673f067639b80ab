//! Numerical faults in training: a step whose loss is not finite is skipped and logged, never
//! applied (every parameter keeps its bits), and after `checkpoint.max_bad_steps` such steps in
//! a row the run stops with an error naming the step.

use pgpo::train::trainer::Trainer;
use pgpo::train::TrainConfig;
use pgpo::Tensor;

#[test]
fn a_non_finite_step_is_skipped_and_the_run_stops_after_k_in_a_row() {
    let mut cfg = TrainConfig { name: "faults".into(), backend: "cpu".into(), ..Default::default() };
    cfg.out_dir = std::env::temp_dir().join(format!("pgpo-faults-{}", std::process::id()));
    (cfg.tiny.hidden, cfg.tiny.layers, cfg.sft.batch, cfg.data.eval_size, cfg.checkpoint.max_bad_steps) = (64, 1, 4, 2, 3);
    let mut t = Trainer::new(cfg.clone()).unwrap();
    // One NaN in the final norm makes every logit, and so the loss, NaN.
    let name = "model.norm.weight";
    let mut poisoned = t.weights.get(name).unwrap().to_vec().unwrap();
    poisoned[0] = f32::NAN;
    t.weights.set(name, Tensor::from_vec(poisoned, &[poisoned_len(&t, name)], &t.device).unwrap()).unwrap();
    let bits = |t: &Trainer| -> Vec<Vec<u32>> { t.weights.tensors().iter().map(|x| x.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()).collect() };
    let before = bits(&t);
    for step in 1..=2 {
        let s = t.sft_step(step).unwrap();
        assert!(!s.applied && s.get("skipped") == 1.0 && !s.get("loss").is_finite(), "step {step}: {:?}", s.fields);
        assert_eq!(bits(&t), before, "a skipped step changed the parameters");
    }
    let err = t.sft_step(3).unwrap_err().to_string();
    assert!(err.contains("step 3") && err.contains("3 steps in a row"), "{err}");
    let _ = std::fs::remove_dir_all(&cfg.out_dir);
}

fn poisoned_len(t: &Trainer, name: &str) -> usize {
    t.weights.get(name).unwrap().numel()
}
