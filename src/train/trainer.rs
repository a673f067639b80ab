//! The trainer's state and its non-RL steps: building the model (fresh tiny model or a
//! published checkpoint), the data (synthetic, made on demand by index, or JSONL), the SFT
//! warm-up step, applying gradients with AdamW (a non-finite step is skipped and counted,
//! never applied), evaluation (greedy accuracy and avg@k), and checkpoints.

use super::batch::{self, Item};
use super::config::TrainConfig;
use super::data::{self, Source};
use super::metrics::Metrics;
use super::optimizer::{AdamW, AdamWConfig};
use super::{checkpoint, tiny};
use crate::autograd::{ops as ag, Grads, Tape};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::processor::Processor;
use crate::model::{forward_hidden, generate, lm_head, ForwardOptions, GenerateOptions, Keep, ParamVars, Sampling, Weights};
use crate::rl::rewards::{reward, RewardConfig};
use crate::rng::Rng;
use crate::tensor::Tensor;
use std::path::PathBuf;

pub struct Trainer {
    pub cfg: TrainConfig,
    pub device: Device,
    pub weights: Weights,
    pub processor: Processor,
    /// Where the processor files come from (copied into every checkpoint).
    pub model_dir: PathBuf,
    pub source: Source,
    pub eval_items: Vec<Item>,
    /// The next training example's index (the data position).
    pub cursor: usize,
    pub rng: Rng,
    pub opt: AdamW,
    pub run_dir: PathBuf,
    pub metrics: Metrics,
    /// Non-finite steps in a row.
    pub bad_steps: usize,
    /// The frozen reference policy of the loss's KL term (the model at the start of RL), held
    /// only when `rl.kl_coef > 0`.
    pub reference: Option<Weights>,
    /// A fault every following step injects, until cleared: for the fault-handling tests and
    /// for drills on a real run. `None` in normal training.
    pub fault: Option<Fault>,
}

/// A numerical fault to inject (see `Trainer::fault`).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// One value of the training forward's output (the final hidden states the fused
    /// losses read) becomes NaN, so the loss does.
    Output,
    /// One element of the named parameter's gradient becomes NaN (the loss stays finite).
    Gradient(String),
}

/// Where a run stands, as saved in trainer_state.json.
#[derive(Clone, Debug, Default)]
pub struct ResumePoint {
    pub phase: String,
    /// Steps done in `phase`.
    pub step: usize,
    /// Steps done in the whole run.
    pub global: usize,
    pub init_accuracy: f64,
    pub sft_accuracy: f64,
    /// Final accuracies (greedy and avg@k), once the run is done.
    pub rl_accuracy: f64,
    pub avg_accuracy: f64,
    /// The checkpoint it was read from.
    pub checkpoint: PathBuf,
    /// Newer checkpoints that did not load, and why.
    pub passed_over: Vec<(PathBuf, String)>,
}

/// What one step reports.
#[derive(Clone, Debug, Default)]
pub struct StepStats {
    pub fields: Vec<(&'static str, f64)>,
    pub applied: bool,
    /// An RL step's inputs to the loss, for tests and drills (`None` for SFT and skipped steps).
    pub trace: Option<StepTrace>,
}

/// What an RL step fed its loss, per kept response (in order) and per response token (the
/// responses concatenated).
#[derive(Clone, Debug, Default)]
pub struct StepTrace {
    /// Every rollout's reward (G per prompt, in prompt order) and the indices of those kept
    /// by dynamic sampling (the rest of the fields cover only these).
    pub rewards: Vec<f32>,
    pub kept: Vec<usize>,
    /// (index of the prompt among the step's prompts, response tokens).
    pub responses: Vec<(usize, Vec<u32>)>,
    /// Each response's group advantage.
    pub seq_adv: Vec<f32>,
    /// The visual dependency that drives the weights (k3 or the exact KL), from the rollout policy.
    pub tvd: Vec<f32>,
    /// PGPO's weights from `tvd` (1 for the algorithms without token weights).
    pub weights: Vec<f32>,
    /// The token advantages of the last update that saw each token.
    pub token_adv: Vec<f32>,
}

impl StepStats {
    pub fn get(&self, key: &str) -> f64 {
        self.fields.iter().find(|(k, _)| *k == key).map_or(f64::NAN, |(_, v)| *v)
    }
}

impl Trainer {
    /// Sets up the run folder, the model (fresh or loaded) and the data.
    pub fn new(cfg: TrainConfig) -> Result<Trainer> {
        Trainer::build(cfg, None)
    }

    /// `new`, with the LoRA adapters read from `adapter` (a checkpoint of a LoRA run) instead
    /// of fresh ones.
    fn build(cfg: TrainConfig, adapter: Option<&std::path::Path>) -> Result<Trainer> {
        cfg.validate("the trainer config")?;
        let device = Device::parse(&cfg.backend)?;
        let run_dir = cfg.run_dir();
        std::fs::create_dir_all(&run_dir).map_err(|e| crate::io::bad(&run_dir, format!("cannot create: {e}")))?;
        let (weights, model_dir) = match &cfg.model {
            // Trained weights are f32 master copies whatever the checkpoint stores; frozen
            // ones (the vision tower unless a phase trains it) stay in the stored dtype.
            // A LoRA run's checkpoint (an adapter folder) as the start: its base with the
            // adapters, which a LoRA run trains on and a full fine-tune merges first.
            Some(dir) if crate::model::peft::is_adapter_folder(dir) => {
                let (mut w, base) = crate::model::peft::load_adapter_folder(dir, &device)?;
                if adapter.is_some() {
                    // A resumed LoRA run: its checkpoint's adapters replace the start's.
                    w = w.without_adapters();
                } else if cfg.lora.is_none() {
                    w = w.merged()?;
                }
                w.widen_where(|n| cfg.trains(n))?;
                (w, base)
            }
            Some(dir) => {
                let mut w = Weights::load(dir, &device)?;
                w.widen_where(|n| cfg.trains(n))?;
                (w, dir.clone())
            }
            None => {
                let dir = run_dir.join("init");
                (tiny::create(&dir, cfg.tiny.vocab, cfg.tiny.hidden, cfg.tiny.layers, cfg.seed, &device)?, dir)
            }
        };
        let mut weights = weights;
        if let Some(lora) = &cfg.lora {
            match adapter {
                Some(dir) => weights.load_adapter(dir)?,
                None if weights.lora.is_some() => {}
                None => {
                    let base = std::path::absolute(&model_dir).unwrap_or_else(|_| model_dir.clone());
                    weights.attach_lora(lora, &base.to_string_lossy(), cfg.seed)?;
                }
            }
        }
        let processor = Processor::load(&model_dir, Some(&weights.config))?;
        let source = data::Source::new(&cfg.data)?;
        let eval_items = source.eval_items(&processor)?;
        let opt = AdamW::new(weights.tensors(), AdamWConfig { lr: cfg.sft.lr, max_grad_norm: Some(cfg.rl.max_grad_norm), ..Default::default() })?;
        let mut metrics = Metrics::open(&run_dir.join("metrics.jsonl"))?;
        metrics.timings = cfg.log_timings;
        let rng = Rng::new(cfg.seed ^ 0xA5A5);
        Ok(Trainer { cfg, device, weights, processor, model_dir, source, eval_items, cursor: 0, rng, opt, run_dir, metrics, bad_steps: 0, reference: None, fault: None })
    }

    /// Continues the run of `cfg` from its newest complete checkpoint: weights, optimizer,
    /// RNG state, data position and metrics (lines written after the checkpoint are dropped).
    /// A checkpoint that does not load is passed over for the next newest (listed in
    /// `ResumePoint::passed_over`); `None` when the run has no usable checkpoint.
    pub fn resume(cfg: TrainConfig) -> Result<Option<(Trainer, ResumePoint)>> {
        let root = cfg.run_dir().join("checkpoints");
        checkpoint::clean(&root);
        let mut passed_over = Vec::new();
        for (dir, state) in checkpoint::complete(&root) {
            match Trainer::load_checkpoint(&cfg, &dir, &state) {
                Ok((t, mut at)) => {
                    at.passed_over = passed_over;
                    return Ok(Some((t, at)));
                }
                Err(e) => passed_over.push((dir, e.to_string())),
            }
        }
        match passed_over.pop() {
            Some((dir, e)) => Err(crate::io::bad(&dir, format!("no checkpoint of the run loads; the oldest fails with: {e}"))),
            None => Ok(None),
        }
    }

    fn load_checkpoint(cfg: &TrainConfig, dir: &std::path::Path, state: &serde_json::Value) -> Result<(Trainer, ResumePoint)> {
        let bad = |field: &str| Error::Config { file: dir.join("trainer_state.json").display().to_string(), field: field.into(), msg: "is missing or invalid".into() };
        // A LoRA checkpoint holds the adapters; the base is the run's model (Trainer::build
        // sets model_dir to it).
        let mut t = match cfg.lora {
            Some(_) => Trainer::build(cfg.clone(), Some(dir))?,
            None => {
                let mut t = Trainer::new(TrainConfig { model: Some(dir.to_path_buf()), ..cfg.clone() })?;
                // Later checkpoints copy the processor files from the fresh model or the given one.
                t.model_dir = cfg.model.clone().unwrap_or_else(|| t.run_dir.join("init"));
                t
            }
        };
        t.cfg = cfg.clone();
        let f = crate::io::TensorFile::open(&dir.join("optimizer.safetensors"))?;
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for (name, p) in t.weights.names().iter().zip(t.weights.tensors()) {
            for (prefix, out) in [("m.", &mut m), ("v.", &mut v)] {
                // A parameter that never stepped (frozen) has no moments.
                out.push(match f.f32_opt(&format!("{prefix}{name}"), p.rank())? {
                    Some((shape, data)) => Some(Tensor::from_vec(data, &shape, &t.device)?),
                    None => None,
                });
            }
        }
        t.opt.restore(m, v, state["optimizer_steps"].as_u64().ok_or_else(|| bad("optimizer_steps"))? as u32)?;
        t.cursor = state["cursor"].as_u64().ok_or_else(|| bad("cursor"))? as usize;
        t.rng = Rng::from_state(state["rng"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| bad("rng"))?);
        t.bad_steps = state["bad_steps"].as_u64().unwrap_or(0) as usize;
        t.metrics.truncate(state["metrics_lines"].as_u64().ok_or_else(|| bad("metrics_lines"))? as usize)?;
        let at = ResumePoint {
            phase: state["phase"].as_str().ok_or_else(|| bad("phase"))?.to_string(),
            step: state["step"].as_u64().ok_or_else(|| bad("step"))? as usize,
            global: state["global"].as_u64().ok_or_else(|| bad("global"))? as usize,
            init_accuracy: state["init_accuracy"].as_f64().unwrap_or(f64::NAN),
            sft_accuracy: state["sft_accuracy"].as_f64().unwrap_or(f64::NAN),
            rl_accuracy: state["rl_accuracy"].as_f64().unwrap_or(f64::NAN),
            avg_accuracy: state["avg_accuracy"].as_f64().unwrap_or(f64::NAN),
            checkpoint: dir.to_path_buf(),
            passed_over: Vec::new(),
        };
        Ok((t, at))
    }

    /// The parameters on `tape` for a training forward: those a phase with `train_vision`
    /// trains are tracked; with `lora.dropout` > 0 the adapters' inputs are dropped out, with
    /// masks from a seed drawn here (no draw without dropout, so such runs are unchanged).
    pub fn training_vars(&mut self, tape: &Tape, train_vision: bool) -> ParamVars {
        let lora = self.cfg.lora.as_ref();
        let pv = ParamVars::new(tape, &self.weights, |n| super::config::trained_in_phase(n, train_vision, lora.is_some()));
        match lora.map(|l| l.dropout as f32).filter(|&p| p > 0.0) {
            Some(p) => pv.with_lora_dropout(p, self.rng.next_u64() as u32),
            None => pv,
        }
    }

    /// Saves the model as it trains: the weights, or a LoRA run's adapters (PEFT's format).
    pub fn save_model(&self, dir: &std::path::Path) -> Result<()> {
        if self.weights.lora.is_some() { self.weights.save_adapter(dir) } else { self.weights.save(dir) }
    }

    /// What `save_model` wrote to `dir`, in the checkpoint's dtype (a LoRA run's adapters on
    /// the run's base).
    pub fn load_model(&self, dir: &std::path::Path) -> Result<Weights> {
        match self.weights.lora {
            Some(_) => crate::model::peft::load_with_adapter(&self.model_dir, Some(dir), &self.device),
            None => Weights::load(dir, &self.device),
        }
    }

    /// The run's peak memory, estimated from the config, the model and the data's lengths (the
    /// held-out items and the first training ones).
    pub fn memory_estimate(&self) -> Result<super::memory::Estimate> {
        let train = (0..self.cfg.sft.batch.min(64)).map(|i| self.source.train_item(&self.processor, i)).collect::<Result<Vec<_>>>()?;
        let items = || self.eval_items.iter().chain(&train);
        let n = super::memory::Lengths {
            prompt: items().map(|i| i.prompt.ids.len()).max().unwrap_or(0),
            target: items().map(|i| i.target.len()).max().unwrap_or(0),
            patches: items().map(|i| i.prompt.grids.iter().map(|g| g.iter().product::<usize>()).sum::<usize>()).max().unwrap_or(0),
        };
        let w = &self.weights;
        let sizes = super::memory::Sizes {
            values: w.tensors().iter().map(|t| t.numel() as u64).sum(),
            trained: w.names().iter().zip(w.tensors()).filter(|(n, _)| self.cfg.trains(n)).map(|(_, t)| t.numel() as u64).sum(),
            frozen_bytes: w.bytes_where(|n| !self.cfg.trains(n)),
            stored_bytes: w.stored_bytes(),
        };
        Ok(super::memory::estimate(&self.cfg, &w.config, sizes, n, super::memory::ChunkLimits::of(&self.device)))
    }

    /// What scoring the visual dependency needs besides the weights.
    pub fn scoring(&self) -> super::visual_dependency::Scoring<'_> {
        super::visual_dependency::Scoring { config: &self.weights.config, device: &self.device, pad_id: self.processor.pad_id, hide_markers: self.cfg.rl.hide_markers, d_clamp: self.cfg.rl.d_clamp }
    }

    /// The next `n` training items (cycling through the data).
    pub fn next_items(&mut self, n: usize) -> Result<Vec<Item>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.source.train_item(&self.processor, self.cursor)?);
            self.cursor += 1;
        }
        Ok(out)
    }

    /// AdamW on every parameter the loss reached (the rest get a zero gradient). A step
    /// whose gradients are not finite is skipped and counted; after
    /// `checkpoint.max_bad_steps` in a row the run stops with an error naming the step and
    /// the first non-finite tensor. Returns the gradient norm and whether the step applied.
    pub fn apply(&mut self, pv: &ParamVars, grads: &Grads, lr: f32, step: usize) -> Result<(f64, bool)> {
        match self.try_apply(pv, grads, lr)? {
            Ok(norm) => {
                self.bad_steps = 0;
                Ok((norm, true))
            }
            Err((norm, what)) => {
                self.skip_bad_step(step, what)?;
                Ok((norm, false))
            }
        }
    }

    /// AdamW on every parameter the loss reached, when the gradients are finite: `Ok(norm)`.
    /// Otherwise nothing changes and the norm comes back with what was not finite, for the
    /// caller to count once per step (`skip_bad_step`).
    pub fn try_apply(&mut self, pv: &ParamVars, grads: &Grads, lr: f32) -> Result<std::result::Result<f64, (f64, String)>> {
        let mut by_name: std::collections::HashMap<String, Tensor> = pv.gradients(grads).into_iter().collect();
        if let Some(Fault::Gradient(name)) = &self.fault
            && let Some(g) = by_name.get_mut(name)
        {
            let mut v = g.to_vec()?;
            let mid = v.len() / 2;
            v[mid] = f32::NAN;
            *g = Tensor::from_vec(v, g.shape(), g.device())?;
        }
        // Frozen parameters have no gradient and are not stepped (no moments, no decay).
        let list: Vec<Option<&Tensor>> = self.weights.names().iter().map(|name| by_name.get(name)).collect();
        let present: Vec<&Tensor> = list.iter().flatten().copied().collect();
        let norm = AdamW::grad_norm(&present)?;
        if !norm.is_finite() {
            let first = || self.weights.names().iter().zip(&list).find(|(_, g)| g.is_some_and(|g| crate::ops::sum_squares(g).map_or(true, |s| !s.is_finite()))).map(|(n, _)| n.clone()).unwrap_or_default();
            return Ok(Err((norm, format!("the gradient norm is {norm}; the first non-finite tensor is the gradient of `{}`", first()))));
        }
        self.opt.config.lr = lr;
        let (new, norm) = self.opt.step_some(self.weights.tensors(), &list)?;
        let names = self.weights.names().to_vec();
        for (name, t) in names.iter().zip(new) {
            if let Some(t) = t {
                self.weights.set(name, t)?;
            }
        }
        Ok(Ok(norm))
    }

    /// Counts a skipped non-finite step; the `checkpoint.max_bad_steps`-th in a row is an error
    /// naming the step and `what` was not finite.
    pub fn skip_bad_step(&mut self, step: usize, what: String) -> Result<()> {
        self.bad_steps += 1;
        if self.bad_steps >= self.cfg.checkpoint.max_bad_steps {
            return Err(Error::Numeric(format!("step {step}: {} steps in a row were not finite; {what}", self.bad_steps)));
        }
        Ok(())
    }

    /// `recompute` from the config, or by the model's size where it is absent.
    pub fn recompute(&self) -> crate::model::Recompute {
        self.cfg.recompute_for(self.weights.tensors().iter().map(|t| t.numel() as f64).sum())
    }

    /// The training forward's output, with a NaN in it when `Fault::Output` is set.
    pub fn inject_fault(&self, out: crate::autograd::Var) -> Result<crate::autograd::Var> {
        if self.fault != Some(Fault::Output) {
            return Ok(out);
        }
        let mut poison = vec![0f32; out.value().numel()];
        poison[0] = f32::NAN;
        let poison = out.tape().constant(Tensor::from_vec(poison, out.shape(), out.value().device())?);
        ag::add(&out, &poison)
    }

    /// Names the first non-finite tensor behind a non-finite loss: a parameter (in the
    /// model's order) if one is, else the forward's output (named, when given).
    pub fn first_non_finite(&self, output: Option<(&str, &Tensor)>) -> String {
        let bad = |x: &Tensor| crate::ops::sum_squares(x).map_or(true, |s| !s.is_finite());
        match self.weights.names().iter().zip(self.weights.tensors()).find(|(_, p)| bad(p)) {
            Some((name, _)) => format!("the first non-finite tensor is the parameter `{name}`"),
            None => match output {
                Some((what, x)) if bad(x) => format!("the first non-finite tensor is {what}"),
                Some((what, _)) => format!("every parameter and {what} are finite"),
                None => "every parameter is finite".into(),
            },
        }
    }

    /// One SFT step: mean cross-entropy of the target response tokens (stop token included).
    pub fn sft_step(&mut self, step: usize) -> Result<StepStats> {
        let items = self.next_items(self.cfg.sft.batch)?;
        crate::tensor::memory::reset_peak();
        let prompts: Vec<_> = items.iter().map(|i| &i.prompt).collect();
        let tails: Vec<&[u32]> = items.iter().map(|i| i.target.as_slice()).collect();
        let packed = batch::pack(&self.weights.config, &prompts, &tails, self.processor.pad_id, &self.device)?;
        let rows = batch::predicting_rows(&packed.tail_positions);
        let targets: Vec<u32> = tails.iter().flat_map(|t| t.iter().copied()).collect();
        let tape = Tape::new();
        let vision = self.cfg.sft.train_vision;
        let pv = self.training_vars(&tape, vision);
        // The final hidden states only: the fused loss applies the LM head chunk by chunk.
        let config = &self.weights.config;
        let hidden = forward_hidden(&pv, config, &packed.inputs, &ForwardOptions { keep: Keep::Rows(rows), blind: None, recompute: self.recompute() })?;
        let hidden = self.inject_fault(hidden)?;
        let loss = ag::cross_entropy_linear(&hidden, lm_head(&pv, config)?, &targets, crate::ops::Chunking::Auto)?;
        let value = f64::from(loss.value().to_vec()?[0]);
        let grads = if value.is_finite() { Some(tape.backward(&loss)?) } else { None };
        let (norm, applied) = match grads {
            Some(g) => self.apply(&pv, &g, self.cfg.sft.lr, step)?,
            None => {
                let what = format!("the SFT loss is {value}; {}", self.first_non_finite(Some(("the final hidden states", hidden.value()))));
                self.skip_bad_step(step, what)?;
                (f64::NAN, false)
            }
        };
        let peak = crate::tensor::memory::peak() as f64;
        Ok(StepStats { fields: vec![("loss", value), ("grad_norm", norm), ("skipped", if applied { 0.0 } else { 1.0 }), ("peak_bytes", peak)], applied, trace: None })
    }

    /// Reward of a response to `answer`.
    pub fn reward(&self, text: &str, answer: &str) -> crate::rl::rewards::Reward {
        reward(text, answer, &RewardConfig { accuracy_weight: self.cfg.rl.accuracy_weight, format_weight: self.cfg.rl.format_weight })
    }

    /// Held-out accuracy: greedy (one response each), or the mean over `k` samples at
    /// temperature 1.0 (avg@k, as the paper reports).
    pub fn evaluate(&mut self, k: usize, greedy: bool) -> Result<f64> {
        let seed = self.rng.next_u64();
        let rc = RewardConfig { accuracy_weight: self.cfg.rl.accuracy_weight, format_weight: self.cfg.rl.format_weight };
        evaluate(&self.weights, &self.processor, &self.eval_items, &self.device, self.cfg.rl.max_new_tokens, k, greedy, seed, &rc)
    }

    /// Saves a checkpoint tagged `tag` with the trainer state: everything a resumed run needs
    /// to continue exactly (weights, optimizer moments, RNG state, data position, metrics
    /// lines, and where in the run it stands).
    pub fn save(&self, tag: &str, at: &ResumePoint) -> Result<PathBuf> {
        let state = serde_json::json!({
            "phase": at.phase, "step": at.step, "global": at.global,
            "init_accuracy": at.init_accuracy, "sft_accuracy": at.sft_accuracy,
            "rl_accuracy": at.rl_accuracy, "avg_accuracy": at.avg_accuracy,
            "cursor": self.cursor, "rng": self.rng.state().to_string(), "optimizer_steps": self.opt.steps(),
            "bad_steps": self.bad_steps, "metrics_lines": self.metrics.lines(),
            "config": self.cfg,
        });
        checkpoint::save(&self.run_dir, tag, &self.weights, Some(&self.opt), &self.model_dir, &state, self.cfg.checkpoint.keep)
    }
}

/// Accuracy of `weights` on `items`: greedy, or the mean over `k` samples at temperature 1.0.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(weights: &Weights, p: &Processor, items: &[Item], device: &Device, max_new_tokens: usize, k: usize, greedy: bool, seed: u64, rc: &RewardConfig) -> Result<f64> {
    if k == 0 {
        return Err(Error::input("k", "avg@k needs at least one sample per prompt (k >= 1)"));
    }
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, weights);
    let (mut correct, mut total) = (0.0, 0.0);
    let per = 64usize.div_ceil(k).max(1);
    for (c_i, chunk) in items.chunks(per).enumerate() {
        let prompts: Vec<_> = chunk.iter().flat_map(|i| std::iter::repeat_n(&i.prompt, k)).collect();
        let empty: Vec<&[u32]> = vec![&[]; prompts.len()];
        let packed = batch::pack(&weights.config, &prompts, &empty, p.pad_id, device)?;
        let sampling = if greedy { Sampling::Greedy } else { Sampling::Sample { temperature: 1.0, top_p: 1.0, top_k: 0 } };
        let o = GenerateOptions { max_new_tokens, sampling, seed: seed.wrapping_add(c_i as u64), stop_ids: p.stop_ids.clone(), keep_logits: false, suppress_ids: weights.config.vision_token_ids() };
        let g = generate(&pv, &weights.config, &packed.inputs, &o, |_, _| {})?;
        for (j, c) in g.completions.iter().enumerate() {
            let text = p.chat.decode(&c.tokens)?;
            correct += f64::from(reward(&text, &chunk[j / k].answer, rc).accuracy);
            total += 1.0;
        }
    }
    Ok(if total > 0.0 { correct / total } else { 0.0 })
}
