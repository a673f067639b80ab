//! The default run, pgpo's main job: a tiny Qwen2.5-VL made from scratch learns the synthetic
//! visual task by SFT, then PGPO, on the CPU in a few minutes. `cargo run --release --example
//! train_pgpo` (no arguments); settings are TrainConfig's defaults (see `pgpo train --help`).

use pgpo::train::progress::Reporter;
use pgpo::train::{run, TrainConfig};

fn main() -> std::process::ExitCode {
    // SAFETY: the first statement of main; no thread exists yet.
    unsafe { pgpo::device::quiet_driver_env() };
    // CPU ops run on this thread, with the pool's other workers joining in, instead of each
    // op being handed to a pool thread while this one sleeps.
    pgpo::backend::cpu::run_ops_on_this_thread();
    let cfg = TrainConfig::default();
    let started = std::time::Instant::now();
    eprintln!("training {} on {}: SFT {} steps, then {} {} steps (G = {})", cfg.name, cfg.backend, cfg.sft.steps, cfg.rl.algo, cfg.rl.steps, cfg.rl.group);
    let mut reporter = Reporter::default();
    match run(cfg, &mut |e| reporter.on(e)) {
        Ok(s) => {
            reporter.finish();
            println!("\nheld-out accuracy: fresh {:.1} %, after SFT {:.1} %, after RL {:.1} % (avg@{} {:.1} %)", s.init_accuracy * 100.0, s.sft_accuracy * 100.0, s.rl_accuracy * 100.0, s.avg_at_k.0, s.avg_at_k.1 * 100.0);
            println!("TVD: answer tokens {:.4}, template tokens {:.4} (mean over 12 held-out responses)", s.tvd_report.grounded_mean, s.tvd_report.template_mean);
            println!("run folder:   {}", s.run_dir.display());
            println!("TVD report:   {}", s.tvd_report.path.display());
            println!("curves:       {}", s.plot.display());
            println!("metrics:      {}", s.metrics.display());
            for c in &s.checkpoints {
                println!("checkpoint:   {}", c.display());
            }
            println!("finished in {:.1} s", started.elapsed().as_secs_f64());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            reporter.finish();
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
