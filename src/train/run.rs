//! The whole run: evaluate the fresh model, SFT warm-up, evaluate, RL, evaluate (greedy and
//! avg@k), with metrics on every step and checkpoints every N steps of each phase. Progress
//! goes to a caller's callback; the library prints nothing.

use super::config::TrainConfig;
use super::optimizer::{AdamW, AdamWConfig};
use super::rl_step::rl_step;
use super::trainer::{StepStats, Trainer};
use crate::error::Result;
use std::path::PathBuf;

pub enum Event<'a> {
    /// A phase ("sft" or "rl") of `steps` steps begins.
    Phase { name: &'static str, steps: usize },
    Step { phase: &'static str, step: usize, stats: &'a StepStats },
    /// Held-out accuracy (`what`: "init", "sft", "rl", or "avg@k").
    Eval { what: String, accuracy: f64 },
    Checkpoint(PathBuf),
    /// JSONL rows skipped while reading (line, reason).
    Skipped(&'a [(usize, String)]),
}

pub struct Summary {
    pub run_dir: PathBuf,
    pub metrics: PathBuf,
    pub checkpoints: Vec<PathBuf>,
    pub init_accuracy: f64,
    pub sft_accuracy: f64,
    pub rl_accuracy: f64,
    pub avg_at_k: (usize, f64),
}

/// Samples per held-out prompt for the final avg@k (the paper reports avg@8).
pub const AVG_K: usize = 4;

pub fn run(cfg: TrainConfig, on: &mut dyn FnMut(Event)) -> Result<Summary> {
    let mut t = Trainer::new(cfg)?;
    if !t.source.skipped().is_empty() {
        on(Event::Skipped(t.source.skipped()));
    }
    let mut checkpoints = Vec::new();
    let mut global = 0usize;
    let eval = |t: &mut Trainer, what: &str, global: usize, on: &mut dyn FnMut(Event)| -> Result<f64> {
        let accuracy = t.evaluate(1, true)?;
        t.metrics.write("eval", global, &[("accuracy", accuracy)])?;
        on(Event::Eval { what: what.to_string(), accuracy });
        Ok(accuracy)
    };
    let init_accuracy = eval(&mut t, "init", 0, on)?;

    let sft = t.cfg.sft.clone();
    on(Event::Phase { name: "sft", steps: sft.steps });
    for step in 1..=sft.steps {
        let stats = t.sft_step(step)?;
        global += 1;
        t.metrics.write("sft", global, &stats.fields)?;
        on(Event::Step { phase: "sft", step, stats: &stats });
        if t.cfg.checkpoint.every > 0 && step % t.cfg.checkpoint.every == 0 && step < sft.steps {
            checkpoints.push(t.save(&format!("sft-{step:05}"), "sft", step)?);
            on(Event::Checkpoint(checkpoints[checkpoints.len() - 1].clone()));
        }
    }
    let sft_accuracy = if sft.steps > 0 { eval(&mut t, "sft", global, on)? } else { init_accuracy };
    if sft.steps > 0 {
        checkpoints.push(t.save("sft-final", "sft", sft.steps)?);
        on(Event::Checkpoint(checkpoints[checkpoints.len() - 1].clone()));
    }

    let rl = t.cfg.rl.clone();
    t.opt = AdamW::new(t.weights.tensors(), AdamWConfig { lr: rl.lr, weight_decay: rl.weight_decay, max_grad_norm: Some(rl.max_grad_norm), ..Default::default() })?;
    on(Event::Phase { name: "rl", steps: rl.steps });
    for step in 1..=rl.steps {
        let stats = rl_step(&mut t, step)?;
        global += 1;
        t.metrics.write("rl", global, &stats.fields)?;
        on(Event::Step { phase: "rl", step, stats: &stats });
        if rl.eval_every > 0 && step % rl.eval_every == 0 && step < rl.steps {
            eval(&mut t, &format!("rl step {step}"), global, on)?;
        }
        if t.cfg.checkpoint.every > 0 && step % t.cfg.checkpoint.every == 0 && step < rl.steps {
            checkpoints.push(t.save(&format!("rl-{step:05}"), "rl", step)?);
            on(Event::Checkpoint(checkpoints[checkpoints.len() - 1].clone()));
        }
    }
    let rl_accuracy = eval(&mut t, "rl", global, on)?;
    let avg = t.evaluate(AVG_K, false)?;
    t.metrics.write("eval", global, &[(if AVG_K == 4 { "avg_at_4" } else { "avg_at_k" }, avg)])?;
    on(Event::Eval { what: format!("avg@{AVG_K} (temperature 1.0)"), accuracy: avg });
    checkpoints.push(t.save("rl-final", "rl", rl.steps)?);
    on(Event::Checkpoint(checkpoints[checkpoints.len() - 1].clone()));
    checkpoints.retain(|p| p.exists());
    Ok(Summary {
        run_dir: t.run_dir.clone(),
        metrics: t.metrics.path().to_path_buf(),
        checkpoints,
        init_accuracy,
        sft_accuracy,
        rl_accuracy,
        avg_at_k: (AVG_K, avg),
    })
}
