//! The trainer's memory estimate against the peaks it measures (tensor bytes, `peak_bytes*`
//! in the metrics), phase by phase, at two configurations: each phase's estimate (standing
//! state plus the phase's terms) within 15 % of its measured peak. Alone in its binary: the
//! byte counter is process-wide.
//!
//! Mistakes this catches: a term that forgets what the code holds (the update's prompt
//! counted per response after the prompt became shared: checked by estimating the update with
//! every response carrying its own prompt again: 2.1x the measured peak at the default
//! configuration) or one that counts what the code no longer holds.

use pgpo::train::config::TrainConfig;
use pgpo::train::run::run;
use pgpo::train::trainer::Trainer;

fn config(name: &str, wide: bool) -> TrainConfig {
    let mut c = TrainConfig { name: name.into(), backend: "cpu".into(), ..Default::default() };
    c.out_dir = std::env::temp_dir().join(format!("pgpo-estimate-{}", std::process::id()));
    c.sft.steps = 2;
    c.rl.steps = 2;
    c.rl.eval_every = 0;
    c.rl.dynamic_sampling = false;
    c.data.eval_size = 4;
    c.log_timings = true;
    if wide {
        c.tiny.hidden = 256;
        c.rl.mini_batch = 32;
        c.sft.batch = 16;
    }
    c
}

#[test]
fn each_phase_of_the_estimate_is_within_15_percent_of_its_measured_peak() {
    for (name, wide) in [("default", false), ("wide", true)] {
        let cfg = config(name, wide);
        let estimate = Trainer::new(cfg.clone()).unwrap().memory_estimate().unwrap();
        let state = estimate.parts[0].1 as f64;
        println!("{name}: {}", estimate.describe());
        run(cfg.clone(), &mut |_| {}).unwrap();
        let text = std::fs::read_to_string(cfg.run_dir().join("metrics.jsonl")).unwrap();
        let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let most = |phase: &str, field: &str| rows.iter().filter(|r| r["phase"] == phase).filter_map(|r| r[field].as_f64()).fold(0f64, f64::max);
        let measured = [most("sft", "peak_bytes"), most("rl", "peak_bytes_rollout"), most("rl", "peak_bytes_scoring"), most("rl", "peak_bytes_update")];
        for ((phase, want), got) in estimate.phases.iter().zip(measured) {
            let want = *want as f64;
            // The signal: the phase ran and measured something beyond the standing state.
            assert!(got > state, "{name} {phase}: measured {got} bytes, not above the standing state {state}");
            let ratio = want / got;
            println!("{name} {phase}: estimate {:.3} GB, measured {:.3} GB, ratio {ratio:.2}", want / 1e9, got / 1e9);
            assert!((0.85..=1.15).contains(&ratio), "{name} {phase}: estimate {want} bytes against a measured peak of {got} (ratio {ratio:.2})");
        }
        let _ = std::fs::remove_dir_all(cfg.run_dir());
    }
}
