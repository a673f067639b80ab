//! The trainer's TOML configuration. Every field has a documented default (the default run:
//! the tiny model on the synthetic task on a laptop CPU); the paper's values for real
//! checkpoints are given beside each RL field. Unknown keys, wrong types and out-of-range
//! values are errors that name the field.

use super::rl_options::{Algo, Degenerate, FilterKey, Importance, LossAgg, TvdEstimate, TvdPolicy, Variant};
use crate::error::{Error, Result};
use crate::model::Recompute;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Run name: output goes to `<out_dir>/<name>/`.
    pub name: String,
    pub out_dir: PathBuf,
    /// Seed of everything random (init, data order, sampling).
    pub seed: u64,
    /// auto, cpu, wgpu or cuda.
    pub backend: String,
    /// Start from this checkpoint folder (a published Qwen2.5-VL with its tokenizer) instead
    /// of a fresh tiny model.
    pub model: Option<PathBuf>,
    /// Continue the run from its newest complete checkpoint (exactly: the same metrics as an
    /// uninterrupted run with the same seed).
    pub resume: bool,
    /// The memory the run may use, in GB; 0 = what the device reports (free GPU memory, or
    /// the system's available memory for the CPU and software adapters). The trainer
    /// estimates its peak before the first step and refuses a config that cannot fit.
    pub memory_gb: f64,
    /// "layer": keep only each decoder layer's and vision block's input for the backward and
    /// recompute the block there (about a third more compute, a fraction of the activation
    /// memory); "none": keep every activation. Absent: "layer" for models of more than 50 M
    /// parameters, "none" for smaller ones (the default tiny model).
    pub recompute: Option<Recompute>,
    /// Write the wall-clock fields (`time_*`) and the memory high-water marks (`peak_bytes*`)
    /// into the metrics rows. Off, two runs with the same seed on the same backend write
    /// byte-identical metrics (checkpoints always are).
    pub log_timings: bool,
    pub tiny: TinyConfig,
    pub data: DataConfig,
    pub sft: SftConfig,
    pub rl: RlConfig,
    pub checkpoint: CheckpointConfig,
    /// Train LoRA adapters (PEFT's format) instead of every weight: the base stays frozen in
    /// its stored dtype and only the adapters get gradients, master copies and AdamW state.
    /// Absent: full fine-tuning.
    pub lora: Option<crate::model::LoraConfig>,
}

/// The fresh model (ignored with `model`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TinyConfig {
    /// Tokenizer vocabulary trained on the synthetic corpus.
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// EasyR1-style JSONL ({"images": [path], "problem", "answer"}) instead of the synthetic task.
    pub jsonl: Option<PathBuf>,
    /// Seeds of the synthetic train and held-out splits (different seeds, different examples).
    pub train_seed: u64,
    pub eval_seed: u64,
    /// Synthetic training examples generated (the data set cycles through them).
    pub train_size: usize,
    /// Held-out examples scored at each evaluation.
    pub eval_size: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// Warm-up steps of cross-entropy on the response tokens (0 skips SFT).
    pub steps: usize,
    pub batch: usize,
    pub lr: f32,
    /// Also train the vision tower during SFT. Off by default for the fresh tiny model: the
    /// template tokens' gradient otherwise drives its random features to a constant before
    /// the answers teach it anything (RL always trains it, as the paper does).
    pub train_vision: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// grpo, dapo, pgpo (dapo plus the token weights), dr_grpo or gspo. It selects a preset of
    /// the fields its paper fixes (`RlConfig::preset`); a field set explicitly overrides it.
    pub algo: Algo,
    pub steps: usize,
    /// Prompts drawn per step (paper: 384 rollout prompts).
    pub prompts: usize,
    /// Responses per prompt, G (paper: 5).
    pub group: usize,
    /// Sampling temperature (paper: 1.0) and nucleus (paper: 0.99); top_k 0 is off.
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    /// Longest response (paper: 2048).
    pub max_new_tokens: usize,
    /// AdamW learning rate (paper: 1e-6, constant) and weight decay; gradient clipping norm.
    pub lr: f32,
    pub weight_decay: f32,
    pub max_grad_norm: f32,
    /// Responses per optimizer step (paper: update batch 128) and passes over a rollout batch.
    pub mini_batch: usize,
    pub epochs: usize,
    /// PPO clip range [1 - clip_low, 1 + clip_high] (paper: 0.2 / 0.28) and dual clip (3.0).
    pub clip_low: f32,
    pub clip_high: f32,
    pub dual_clip: f32,
    /// token-mean (DAPO, paper), seq-mean-token-mean (GRPO, GSPO), seq-mean-token-sum or
    /// constant (Dr. GRPO: the sum divided by mini_batch x max_new_tokens).
    pub loss_agg: LossAgg,
    /// token (PPO ratio per token) or sequence (GSPO: the length-normalised sequence ratio,
    /// defined with seq-mean-token-mean only).
    pub importance: Importance,
    /// Divide the group advantages by the group's std (GRPO, DAPO; Dr. GRPO does not).
    pub scale_rewards: bool,
    /// DAPO dynamic sampling: drop groups whose mean score is 0 or 1 (dapo and pgpo).
    pub dynamic_sampling: bool,
    /// What dynamic sampling looks at: reward (paper) or accuracy.
    pub filter_key: FilterKey,
    /// Weight of the k3 KL to a reference policy in the loss (off, 0, in every preset). Above
    /// 0 the model at the start of RL is kept frozen as the reference.
    pub kl_coef: f32,
    /// Reward weights: R = accuracy_weight * accuracy + format_weight * format (paper 0.9 / 0.1).
    pub accuracy_weight: f32,
    pub format_weight: f32,
    /// PGPO: threshold tau in [0, 1] (paper 0.4), boost beta (2.0), eps (1e-8).
    pub tau: f32,
    pub beta: f32,
    pub eps: f32,
    /// paper, quantile, floor or no-norm; `floor` is the floor variant's value (0.1).
    pub variant: Variant,
    pub floor: f32,
    /// The weights of a response whose tokens all have the same dependency: uniform (ours)
    /// or zero.
    pub degenerate: Degenerate,
    /// What drives the weights: k3 (the paper's sampled-token estimate) or kl (exact).
    pub tvd: TvdEstimate,
    /// Which policy gives the two log-probs of the dependency: rollout (ours: once per
    /// rollout batch) or current (before each mini-batch's update).
    pub tvd_policy: TvdPolicy,
    /// Clamp of d = logp_blind - logp_clean in k3 (ours: 20).
    pub d_clamp: f32,
    /// Also hide <|vision_start|>/<|vision_end|> in the blind pass (ours: false).
    pub hide_markers: bool,
    /// Evaluate every this many RL steps (0: only at the end).
    pub eval_every: usize,
    /// Log the gradient-variance estimate (the mean over mini-batches of |g_i - mean g|^2 /
    /// |mean g|^2; the paper claims PGPO lowers it). Costs a host copy of each gradient.
    pub grad_variance: bool,
    /// Train the vision tower too. The paper does (set true for real checkpoints); the tiny
    /// default keeps its random features fixed, since Adam's normalised steps on their small,
    /// noisy gradients wipe out the image information within a few dozen steps here.
    pub train_vision: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Save every this many steps of each phase (0: only at the end of each phase).
    pub every: usize,
    /// Checkpoints kept (the oldest are removed).
    pub keep: usize,
    /// Stop after this many non-finite steps in a row.
    pub max_bad_steps: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            name: "pgpo-tiny".into(),
            out_dir: "runs".into(),
            seed: 1,
            backend: "cpu".into(),
            model: None,
            resume: false,
            memory_gb: 0.0,
            recompute: None,
            log_timings: true,
            tiny: TinyConfig::default(),
            data: DataConfig::default(),
            sft: SftConfig::default(),
            rl: RlConfig::default(),
            checkpoint: CheckpointConfig::default(),
            lora: None,
        }
    }
}

/// Whether a phase whose `train_vision` is as given trains the parameter `name`: every
/// parameter but the vision tower's, and those too when it trains; with LoRA only the
/// adapters among them.
pub fn trained_in_phase(name: &str, train_vision: bool, lora: bool) -> bool {
    (train_vision || !name.starts_with("visual.")) && (!lora || crate::model::lora::is_adapter(name))
}

impl TrainConfig {
    /// Whether some phase trains the parameter `name` (the vision tower only with
    /// `sft.train_vision` or `rl.train_vision`). The others stay frozen in their stored dtype.
    pub fn trains(&self, name: &str) -> bool {
        trained_in_phase(name, self.sft.train_vision || self.rl.train_vision, self.lora.is_some())
    }

    /// `recompute`, or by the model's size where the config leaves it out.
    pub fn recompute_for(&self, params: f64) -> Recompute {
        self.recompute.unwrap_or(if params > 50e6 { Recompute::Layer } else { Recompute::None })
    }
}

impl Default for TinyConfig {
    fn default() -> Self {
        TinyConfig { vocab: 320, hidden: 128, layers: 4 }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { jsonl: None, train_seed: 11, eval_seed: 12, train_size: 20_000, eval_size: 200 }
    }
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig { steps: 300, batch: 32, lr: 2e-3, train_vision: false }
    }
}

impl Default for RlConfig {
    fn default() -> Self {
        RlConfig::preset(Algo::Pgpo)
    }
}

impl RlConfig {
    /// The fields each algorithm's paper fixes, over the defaults of everything else.
    pub fn preset(algo: Algo) -> RlConfig {
        let base = RlConfig::base();
        match algo {
            Algo::Dapo | Algo::Pgpo => RlConfig { algo, ..base },
            Algo::Grpo => RlConfig { algo, clip_high: 0.2, dual_clip: 0.0, loss_agg: LossAgg::SeqMeanTokenMean, dynamic_sampling: false, ..base },
            Algo::DrGrpo => RlConfig { algo, clip_high: 0.2, dual_clip: 0.0, loss_agg: LossAgg::Constant, scale_rewards: false, dynamic_sampling: false, ..base },
            Algo::Gspo => RlConfig { algo, clip_low: 3e-4, clip_high: 4e-4, dual_clip: 0.0, loss_agg: LossAgg::SeqMeanTokenMean, importance: Importance::Sequence, dynamic_sampling: false, ..base },
        }
    }

    /// DAPO's fields and the run's defaults.
    fn base() -> RlConfig {
        RlConfig {
            algo: Algo::Dapo,
            steps: 100,
            prompts: 24,
            group: 8,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 24,
            lr: 2e-4,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            mini_batch: 64,
            epochs: 1,
            clip_low: 0.2,
            clip_high: 0.28,
            dual_clip: 3.0,
            loss_agg: LossAgg::TokenMean,
            importance: Importance::Token,
            scale_rewards: true,
            dynamic_sampling: true,
            filter_key: FilterKey::Reward,
            kl_coef: 0.0,
            accuracy_weight: 0.9,
            format_weight: 0.1,
            tau: 0.4,
            beta: 2.0,
            eps: 1e-8,
            variant: Variant::Paper,
            floor: 0.1,
            degenerate: Degenerate::Uniform,
            tvd: TvdEstimate::K3,
            tvd_policy: TvdPolicy::Rollout,
            d_clamp: 20.0,
            hide_markers: false,
            eval_every: 25,
            train_vision: false,
            grad_variance: true,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every: 50, keep: 3, max_bad_steps: 5 }
    }
}

/// Sets every key of `over` in `base`, descending into tables present in both.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

pub(crate) fn bad(file: &str, field: &str, msg: impl Into<String>) -> Error {
    Error::Config { file: file.to_string(), field: field.to_string(), msg: msg.into() }
}

impl TrainConfig {
    /// Reads a config: the preset of its `rl.algo` (pgpo when absent), then every field the
    /// text sets over it.
    pub fn parse(text: &str, file: &str) -> Result<TrainConfig> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(file, "", format!("is not valid TOML: {}", e.to_string().trim())))?;
        TrainConfig::from_table(&table, file)
    }

    /// As `parse`, from a TOML table.
    pub fn from_table(table: &toml::Table, file: &str) -> Result<TrainConfig> {
        super::rl_options::check_choices(table, file)?;
        // Unknown keys and wrong types first, against the text as written (the errors quote it).
        let written = toml::to_string(table).map_err(|e| bad(file, "", format!("cannot be written back as TOML: {e}")))?;
        toml::from_str::<TrainConfig>(&written).map_err(|e| bad(file, "", format!("is not a valid trainer config: {}", e.to_string().trim())))?;
        let algo = table.get("rl").and_then(|r| r.get("algo")).and_then(|a| a.as_str()).and_then(Algo::parse).unwrap_or(Algo::Pgpo);
        let preset = TrainConfig { rl: RlConfig::preset(algo), ..TrainConfig::default() };
        let mut merged = toml::Table::try_from(&preset).map_err(|e| bad(file, "", format!("cannot hold the preset: {e}")))?;
        merge(&mut merged, table);
        let c: TrainConfig = toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| bad(file, "", format!("is not a valid trainer config: {}", e.to_string().trim())))?;
        c.validate(file)?;
        Ok(c)
    }

    /// The resolved configuration as TOML: every field, presets applied (the run folder's
    /// config.toml, which `pgpo eval` and a resumed run read back).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::input("config", format!("cannot be written as TOML: {e}")))
    }

    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| bad(&path.display().to_string(), "", format!("cannot be read: {e}")))?;
        TrainConfig::parse(&text, &path.display().to_string())
    }

    /// Ranges and choices; `file` names where the values came from.
    pub fn validate(&self, file: &str) -> Result<()> {
        if let Some(l) = &self.lora {
            l.validate(file)?;
        }
        let r = &self.rl;
        let positive = |field: &str, v: f32| if v.is_finite() && v > 0.0 { Ok(()) } else { Err(bad(file, field, format!("must be above 0, got {v}"))) };
        positive("sft.lr", self.sft.lr)?;
        positive("rl.lr", r.lr)?;
        positive("rl.temperature", r.temperature)?;
        positive("rl.max_grad_norm", r.max_grad_norm)?;
        positive("rl.eps", r.eps)?;
        let unit = |field: &str, v: f32| if (0.0..=1.0).contains(&v) { Ok(()) } else { Err(bad(file, field, format!("must be in [0, 1], got {v}"))) };
        unit("rl.tau", r.tau)?;
        unit("rl.floor", r.floor)?;
        unit("rl.clip_low", r.clip_low)?;
        if !(r.top_p > 0.0 && r.top_p <= 1.0) {
            return Err(bad(file, "rl.top_p", format!("must be in (0, 1], got {}", r.top_p)));
        }
        for (field, v) in [("rl.beta", r.beta), ("rl.clip_high", r.clip_high), ("rl.weight_decay", r.weight_decay), ("rl.accuracy_weight", r.accuracy_weight), ("rl.format_weight", r.format_weight)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(file, field, format!("must be 0 or more, got {v}")));
            }
        }
        if r.dual_clip != 0.0 && r.dual_clip <= 1.0 {
            return Err(bad(file, "rl.dual_clip", format!("must be 0 (off) or above 1, got {}", r.dual_clip)));
        }
        if r.group < 2 {
            return Err(bad(file, "rl.group", format!("G must be at least 2 for a group method, got {}", r.group)));
        }
        let b = self.backend.as_str();
        if !crate::device::Device::is_backend_name(b) {
            return Err(bad(file, "backend", format!("is {b:?}; choose one of auto, cpu, wgpu, cuda, cuda:N, cuda-emu")));
        }
        if r.importance == Importance::Sequence && r.loss_agg != LossAgg::SeqMeanTokenMean {
            return Err(bad(file, "rl.loss_agg", format!("is {:?}, but GSPO's sequence ratio (rl.importance = \"sequence\") is defined with seq-mean-token-mean only", r.loss_agg)));
        }
        if !(r.kl_coef.is_finite() && r.kl_coef >= 0.0) {
            return Err(bad(file, "rl.kl_coef", format!("must be 0 (off) or more, got {}", r.kl_coef)));
        }
        for (field, v) in [("rl.prompts", r.prompts), ("rl.max_new_tokens", r.max_new_tokens), ("rl.mini_batch", r.mini_batch), ("rl.epochs", r.epochs), ("sft.batch", self.sft.batch), ("data.eval_size", self.data.eval_size), ("data.train_size", self.data.train_size), ("checkpoint.keep", self.checkpoint.keep), ("checkpoint.max_bad_steps", self.checkpoint.max_bad_steps)] {
            if v == 0 {
                return Err(bad(file, field, "must be at least 1"));
            }
        }
        // The fresh model's shape (4 heads of an even size, M-RoPE bands) and sizes that keep
        // every product of counts far from overflow; the memory estimate covers the rest.
        if self.tiny.hidden < 32 || self.tiny.hidden > 8192 || self.tiny.hidden % 32 != 0 {
            return Err(bad(file, "tiny.hidden", format!("must be a multiple of 32 between 32 and 8192, got {}", self.tiny.hidden)));
        }
        if !(1..=64).contains(&self.tiny.layers) {
            return Err(bad(file, "tiny.layers", format!("must be between 1 and 64, got {}", self.tiny.layers)));
        }
        if !(64..=1 << 17).contains(&self.tiny.vocab) {
            return Err(bad(file, "tiny.vocab", format!("must be between 64 and 131072, got {}", self.tiny.vocab)));
        }
        for (field, v) in [("rl.prompts", r.prompts), ("rl.group", r.group), ("rl.mini_batch", r.mini_batch), ("rl.max_new_tokens", r.max_new_tokens), ("rl.epochs", r.epochs), ("sft.batch", self.sft.batch), ("data.eval_size", self.data.eval_size)] {
            if v > 1 << 24 {
                return Err(bad(file, field, format!("is {v}; at most {} is supported", 1 << 24)));
            }
        }
        if self.data.train_seed == self.data.eval_seed {
            return Err(bad(file, "data.eval_seed", "must differ from data.train_seed, or the held-out split is the training data"));
        }
        if !(self.memory_gb.is_finite() && self.memory_gb >= 0.0) {
            return Err(bad(file, "memory_gb", format!("must be 0 (detect) or a size in GB, got {}", self.memory_gb)));
        }
        if !(r.d_clamp > 0.0) {
            return Err(bad(file, "rl.d_clamp", format!("must be above 0, got {}", r.d_clamp)));
        }
        Ok(())
    }

    /// The run's folder.
    pub fn run_dir(&self) -> PathBuf {
        self.out_dir.join(&self.name)
    }
}
