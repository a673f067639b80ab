//! Host-device traffic of one RL step (`backend::transfers`, the `transfers_*` metrics fields
//! and `pgpo bench`'s rl step rows), per phase, on the GPU backends present (lavapipe,
//! cuda-emu), and none on the CPU.
//!
//! Mistakes this catches: a backend whose reads or writes are not counted (the counter taken
//! out of `Tensor::to_vec`'s device path: the rollout's reads fall to 0, FAIL), a phase
//! boundary that loses a phase's traffic, and the CPU counted as if it moved data.
//!
//! What the figures show today (printed): the rollout reads every decode step's logits back
//! to choose tokens on the host, and the update reads each gradient's sum of squares; issue
//! 30's device sampler and on-device norms are what bring these down to the token ids and
//! the logged scalars.

mod common;

use pgpo::train::rl_step::{rl_step, TRANSFER_FIELDS};
use pgpo::train::trainer::Trainer;

fn step_traffic(kind: &str) -> Vec<[f64; 5]> {
    let mut c = common::toy_train_config(&format!("transfers-{kind}"), kind);
    c.log_timings = true;
    let mut t = Trainer::new(c).unwrap();
    // Every response runs to full length, so the decode loop's traffic is a known count.
    t.processor.stop_ids = vec![t.weights.config.vision_end_token_id];
    let s = rl_step(&mut t, 1).unwrap();
    TRANSFER_FIELDS.iter().map(|(_, names)| names.map(|n| s.get(n))).collect()
}

#[test]
fn an_rl_step_counts_its_host_device_traffic_per_phase_and_the_cpu_none() {
    let cpu = step_traffic("cpu");
    assert!(cpu.iter().flatten().all(|&v| v == 0.0), "the CPU moved nothing, but counted {cpu:?}");
    for kind in ["wgpu", "cuda-emu"] {
        if common::backend(kind).is_none() {
            continue;
        }
        let t = step_traffic(kind);
        for ((phase, _), v) in TRANSFER_FIELDS.iter().zip(&t) {
            println!("{kind} {phase}: host reads {} ({} B), host writes {} ({} B), waits {}", v[0], v[1], v[2], v[3], v[4]);
            assert!(v.iter().all(|x| x.is_finite()), "{kind} {phase}: a field is missing: {v:?}");
        }
        let c = common::toy_train_config("", kind);
        let (rollout, update) = (t[0], t[3]);
        // The rollout's decode steps each read (at least the chosen tokens' source) back.
        assert!(rollout[0] >= (c.rl.max_new_tokens - 1) as f64, "{kind}: {} reads in a rollout of {} tokens", rollout[0], c.rl.max_new_tokens);
        assert!(rollout[1] >= 4.0 * rollout[0] && rollout[2] > 0.0 && rollout[3] > 0.0, "{kind} rollout: {rollout:?}");
        // Every read waits for the queue.
        for v in &t {
            assert!(v[4] >= v[0], "{kind}: fewer waits than reads: {v:?}");
        }
        assert!(update[0] > 0.0 && update[2] > 0.0, "{kind} update: {update:?}");
    }
}
