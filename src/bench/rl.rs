//! The `rl step` rows of `pgpo bench`: one full PGPO step of the default trainer (the tiny
//! model, 24 prompts x G 8, 24 new tokens), and its phases: rollout, log-probs (the clean
//! pass), the blind pass with TVD, and the update. The model is freshly initialised and no
//! stop id can be sampled, so every response is 24 tokens long and every phase runs at full
//! size (the dynamic filter is off, as a random model's rewards are all zero). The PyTorch
//! peer (benches/peers/torch_peers.py, `rl_step`) runs the same step at the same shapes.

use super::Row;
use crate::device::Device;
use crate::error::Result;
use crate::backend::transfers::Transfers;
use crate::train::rl_step::{rl_step, TRANSFER_FIELDS};
use crate::train::trainer::StepStats;
use crate::train::trainer::Trainer;
use crate::train::TrainConfig;

/// The phases, as (row name, metrics field); their transfer fields are `TRANSFER_FIELDS`, in
/// the same order.
const PHASES: [(&str, &str); 4] = [
    ("rl step: rollout", "time_rollout"),
    ("rl step: log-probs", "time_logprobs"),
    ("rl step: blind + TVD", "time_blind_tvd"),
    ("rl step: update", "time_update"),
];

/// A phase's host-device traffic from the step's metrics fields.
fn moved(stats: &StepStats, phase: usize) -> Transfers {
    Transfers::from_values(TRANSFER_FIELDS[phase].1.map(|f| stats.get(f) as u64))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `steps` RL steps after one warm-up and returns the step's and each phase's median.
pub fn rows(dev: &Device, quick: bool) -> Result<Vec<Row>> {
    let mut cfg = TrainConfig { name: "bench-rl-step".into(), backend: dev.kind().into(), ..Default::default() };
    cfg.out_dir = std::env::temp_dir().join(format!("pgpo-bench-{}", std::process::id()));
    cfg.rl.dynamic_sampling = false;
    let mut t = Trainer::new(cfg.clone())?;
    t.device = dev.clone();
    // A stop id the sampler never emits (vision markers are suppressed in rollouts), so no
    // response ends early; the SFT targets it also ends are not used by the RL step.
    t.processor.stop_ids = vec![t.weights.config.vision_end_token_id];
    let (prompt, c) = (t.eval_items.first().map_or(0, |i| i.prompt.ids.len()), t.cfg.rl.clone());
    let shape = format!("tiny default, {} prompts x G {}, prompt {prompt} + {} new", c.prompts, c.group, c.max_new_tokens);
    let steps = if quick { 2 } else { 5 };
    let (mut totals, mut phases) = (Vec::new(), vec![Vec::new(); PHASES.len()]);
    // The traffic is the same every step (the same shapes): the last step's is reported.
    let mut traffic = [Transfers::default(); 4];
    for step in 0..=steps {
        let clock = std::time::Instant::now();
        let stats = rl_step(&mut t, step + 1)?;
        dev.synchronize()?;
        if step > 0 {
            traffic = std::array::from_fn(|k| moved(&stats, k));
            totals.push(clock.elapsed().as_secs_f64() * 1e3);
            for (k, (_, field)) in PHASES.iter().enumerate() {
                phases[k].push(stats.get(field) * 1e3);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&cfg.out_dir);
    let tokens = (c.prompts * c.group * c.max_new_tokens) as f64;
    let row = |kernel: &'static str, ms: f64, shape: String| Row { kernel, backend: dev.name(), shape, ms, gflops: None, gbps: None, tokens_per_s: Some(tokens / ms * 1e3), ..Default::default() };
    let total = median(totals);
    let gpu = !matches!(dev, Device::Cpu);
    let sum = traffic.iter().fold(Transfers::default(), |a, &t| a + t);
    let mut out = vec![Row { transfers: gpu.then_some(sum), ..row("rl step", total, shape.clone()) }];
    for (((name, _), times), moved) in PHASES.iter().zip(phases).zip(traffic) {
        let ms = median(times);
        out.push(Row { transfers: gpu.then_some(moved), ..row(name, ms, format!("{:.1} % of the step", 100.0 * ms / total)) });
    }
    Ok(out)
}
