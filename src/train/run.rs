//! The whole run: evaluate the fresh model, SFT warm-up, evaluate, RL, evaluate (greedy and
//! avg@k), with metrics on every step and checkpoints every N steps of each phase. Progress
//! goes to a caller's callback; the library prints nothing.

use super::checkpoint;
use super::config::TrainConfig;
use super::optimizer::{AdamW, AdamWConfig};
use super::rl_step::rl_step;
use super::trainer::{ResumePoint, StepStats, Trainer};
use crate::error::Result;
use std::path::PathBuf;

pub enum Event<'a> {
    /// A phase ("sft" or "rl") of `steps` steps begins.
    Phase { name: &'static str, steps: usize },
    Step { phase: &'static str, step: usize, stats: &'a StepStats },
    /// Held-out accuracy (`what`: "init", "sft", "rl", or "avg@k").
    Eval { what: String, accuracy: f64 },
    Checkpoint(PathBuf),
    /// The run continues from a checkpoint.
    Resumed { checkpoint: PathBuf, phase: String, step: usize },
    /// JSONL rows skipped while reading (line, reason).
    Skipped(&'a [(usize, String)]),
    /// Something the user should know about how the run starts (a checkpoint that did not
    /// load, an earlier run replaced, nothing to resume from).
    Note(String),
}

pub struct Summary {
    pub run_dir: PathBuf,
    pub metrics: PathBuf,
    pub checkpoints: Vec<PathBuf>,
    pub init_accuracy: f64,
    pub sft_accuracy: f64,
    pub rl_accuracy: f64,
    pub avg_at_k: (usize, f64),
    /// The TVD report and its mean TVD of answer tokens against template tokens.
    pub tvd_report: super::report::TvdSummary,
    /// curves.svg.
    pub plot: PathBuf,
}

/// Samples per held-out prompt for the final avg@k (the paper reports avg@8; `pgpo eval --k`).
pub const AVG_K: usize = 4;

/// AdamW's settings in RL (a checkpoint inside RL restores only the moments).
fn rl_optimizer(rl: &super::config::RlConfig) -> AdamWConfig {
    AdamWConfig { lr: rl.lr, weight_decay: rl.weight_decay, max_grad_norm: Some(rl.max_grad_norm), ..Default::default() }
}

pub fn run(cfg: TrainConfig, on: &mut dyn FnMut(Event)) -> Result<Summary> {
    let root = cfg.run_dir().join("checkpoints");
    let resumable = if cfg.resume { Trainer::resume(cfg.clone())? } else { None };
    let (mut t, resumed) = match resumable {
        Some((t, at)) => {
            for (dir, why) in &at.passed_over {
                on(Event::Note(format!("passed over checkpoint {}: {why}", dir.display())));
            }
            (t, Some(at))
        }
        None => {
            if cfg.resume {
                on(Event::Note(format!("nothing to resume in {}: starting from the beginning", root.display())));
            }
            let replaced = checkpoint::remove_all(&root);
            if replaced > 0 {
                on(Event::Note(format!("a fresh run: removed {replaced} checkpoints of an earlier run from {}", root.display())));
            }
            let mut t = Trainer::new(cfg)?;
            t.metrics.truncate(0)?;
            (t, None)
        }
    };
    // The resolved configuration (presets applied), shown and kept beside the run.
    let resolved = t.cfg.to_toml()?;
    on(Event::Note(format!("configuration (presets applied; also in {}):\n{}", t.run_dir.join("config.toml").display(), resolved.trim_end())));
    crate::io::atomic(&t.run_dir.join("config.toml"), |tmp| Ok(std::fs::write(tmp, &resolved)?))?;
    // Before the first step: refuse a configuration that cannot fit the device.
    let memory = t.memory_estimate()?;
    on(Event::Note(memory.describe()));
    memory.check(&t.device, t.cfg.memory_gb)?;
    if !t.source.skipped().is_empty() {
        on(Event::Skipped(t.source.skipped()));
    }
    if let Some(at) = &resumed {
        on(Event::Resumed { checkpoint: at.checkpoint.clone(), phase: at.phase.clone(), step: at.step });
    }
    let mut at = resumed.clone().unwrap_or_default();
    let mut checkpoints = Vec::new();
    let eval = |t: &mut Trainer, what: &str, global: usize, on: &mut dyn FnMut(Event)| -> Result<f64> {
        let accuracy = t.evaluate(1, true)?;
        t.metrics.write("eval", global, &[("accuracy", accuracy)])?;
        on(Event::Eval { what: what.to_string(), accuracy });
        Ok(accuracy)
    };
    let mut save = |t: &Trainer, tag: String, at: &ResumePoint, on: &mut dyn FnMut(Event)| -> Result<()> {
        let path = t.save(&tag, at)?;
        on(Event::Checkpoint(path.clone()));
        checkpoints.push(path);
        Ok(())
    };
    if resumed.is_none() {
        at.init_accuracy = eval(&mut t, "init", 0, on)?;
        at.sft_accuracy = at.init_accuracy;
    }

    let (sft, rl) = (t.cfg.sft.clone(), t.cfg.rl.clone());
    let every = t.cfg.checkpoint.every;
    let done = at.phase == "done";
    let in_rl = at.phase == "rl" || done;
    if !in_rl && (resumed.is_none() || at.step < sft.steps) {
        on(Event::Phase { name: "sft", steps: sft.steps });
        for step in at.step + 1..=sft.steps {
            let stats = t.sft_step(step)?;
            at.global += 1;
            (at.phase, at.step) = ("sft".into(), step);
            t.metrics.write("sft", at.global, &stats.fields)?;
            on(Event::Step { phase: "sft", step, stats: &stats });
            if every > 0 && step % every == 0 && step < sft.steps {
                save(&t, format!("sft-{step:05}"), &at, on)?;
            }
        }
        if sft.steps > 0 {
            at.sft_accuracy = eval(&mut t, "sft", at.global, on)?;
            (at.phase, at.step) = ("sft".into(), sft.steps);
            save(&t, "sft-final".into(), &at, on)?;
        }
    }

    let reference_dir = t.run_dir.join("reference");
    if !in_rl {
        t.opt = AdamW::new(t.weights.tensors(), rl_optimizer(&rl))?;
        at.step = 0;
        if rl.kl_coef > 0.0 {
            // The loss's reference policy is the model as RL starts, kept for a resume.
            t.save_model(&reference_dir)?;
            // In the checkpoint's dtype (half the bytes for bf16), as the saved copy loads back.
            t.reference = Some(t.weights.stored()?);
        }
    } else {
        // A checkpoint inside RL restores AdamW's moments; its settings are RL's.
        t.opt.config = rl_optimizer(&rl);
        if rl.kl_coef > 0.0 && !done {
            t.reference = Some(t.load_model(&reference_dir)?);
        }
    }
    if !done {
        on(Event::Phase { name: "rl", steps: rl.steps });
    }
    // A finished run's state has step = rl.steps: nothing is left to do here.
    for step in at.step + 1..=rl.steps {
        let stats = rl_step(&mut t, step)?;
        at.global += 1;
        (at.phase, at.step) = ("rl".into(), step);
        t.metrics.write("rl", at.global, &stats.fields)?;
        on(Event::Step { phase: "rl", step, stats: &stats });
        if rl.eval_every > 0 && step % rl.eval_every == 0 && step < rl.steps {
            eval(&mut t, &format!("rl step {step}"), at.global, on)?;
        }
        if every > 0 && step % every == 0 && step < rl.steps {
            save(&t, format!("rl-{step:05}"), &at, on)?;
        }
    }
    if !done {
        at.rl_accuracy = eval(&mut t, "rl", at.global, on)?;
        at.avg_accuracy = t.evaluate(AVG_K, false)?;
        t.metrics.write("eval", at.global, &[("avg_at_4", at.avg_accuracy)])?;
        on(Event::Eval { what: format!("avg@{AVG_K} (temperature 1.0)"), accuracy: at.avg_accuracy });
        // "done": a run resumed from here only rewrites the report and the plot.
        (at.phase, at.step) = ("done".into(), rl.steps);
        save(&t, "rl-final".into(), &at, on)?;
    }
    checkpoints.retain(|p| p.exists());
    let run_dir = t.run_dir.clone();
    let tvd_report = super::report::tvd_report(&mut t, &run_dir, 12)?;
    let plot = run_dir.join("curves.svg");
    super::plots::plot_run(t.metrics.path(), &plot)?;
    Ok(Summary {
        run_dir,
        metrics: t.metrics.path().to_path_buf(),
        checkpoints,
        init_accuracy: at.init_accuracy,
        sft_accuracy: at.sft_accuracy,
        rl_accuracy: at.rl_accuracy,
        avg_at_k: (AVG_K, at.avg_accuracy),
        tvd_report,
        plot,
    })
}
