//! LoRA adapters on the model's linear layers, as PEFT defines them (Hu et al., 2021):
//! y = x W^T + b + s (x A^T) B^T with A [r, in], B [out, r] and s = alpha / r (alpha / sqrt(r)
//! with rsLoRA). The base stays frozen in its stored dtype; A and B are f32 parameters named
//! after the layer they adapt: `{module}.lora_A.weight` and `{module}.lora_B.weight`, where a
//! module is a linear layer's weight name without `.weight` (`model.layers.0.self_attn.q_proj`).

use super::config::ModelConfig;
use super::names;
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// A family of linear layers `[lora] targets` can name.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
    VisualQkv,
    VisualProj,
    VisualGateProj,
    VisualUpProj,
    VisualDownProj,
    /// The two layers of the patch merger (`visual.merger.mlp.0` and `.2`).
    VisualMerger,
}

impl Target {
    /// The decoder's seven projections: the default.
    pub const DECODER: [Target; 7] = [Target::QProj, Target::KProj, Target::VProj, Target::OProj, Target::GateProj, Target::UpProj, Target::DownProj];

    /// Whether pgpo module `m` belongs to this family.
    pub fn selects(self, m: &str) -> bool {
        let dec = |s: &str| m.starts_with("model.layers.") && m.ends_with(s);
        let vis = |s: &str| m.starts_with("visual.blocks.") && m.ends_with(s);
        match self {
            Target::QProj => dec(".self_attn.q_proj"),
            Target::KProj => dec(".self_attn.k_proj"),
            Target::VProj => dec(".self_attn.v_proj"),
            Target::OProj => dec(".self_attn.o_proj"),
            Target::GateProj => dec(".mlp.gate_proj"),
            Target::UpProj => dec(".mlp.up_proj"),
            Target::DownProj => dec(".mlp.down_proj"),
            Target::VisualQkv => vis(".attn.qkv"),
            Target::VisualProj => vis(".attn.proj"),
            Target::VisualGateProj => vis(".mlp.gate_proj"),
            Target::VisualUpProj => vis(".mlp.up_proj"),
            Target::VisualDownProj => vis(".mlp.down_proj"),
            Target::VisualMerger => m.starts_with("visual.merger.mlp."),
        }
    }

    /// The family as a Python regular expression over PEFT's module names (re.fullmatch),
    /// under both namings (transformers 5's nested one and the published one).
    fn pattern(self) -> &'static str {
        match self {
            Target::QProj => r"(?:model\.language_model|model)\.layers\.\d+\.self_attn\.q_proj",
            Target::KProj => r"(?:model\.language_model|model)\.layers\.\d+\.self_attn\.k_proj",
            Target::VProj => r"(?:model\.language_model|model)\.layers\.\d+\.self_attn\.v_proj",
            Target::OProj => r"(?:model\.language_model|model)\.layers\.\d+\.self_attn\.o_proj",
            Target::GateProj => r"(?:model\.language_model|model)\.layers\.\d+\.mlp\.gate_proj",
            Target::UpProj => r"(?:model\.language_model|model)\.layers\.\d+\.mlp\.up_proj",
            Target::DownProj => r"(?:model\.language_model|model)\.layers\.\d+\.mlp\.down_proj",
            Target::VisualQkv => r"(?:model\.visual|visual)\.blocks\.\d+\.attn\.qkv",
            Target::VisualProj => r"(?:model\.visual|visual)\.blocks\.\d+\.attn\.proj",
            Target::VisualGateProj => r"(?:model\.visual|visual)\.blocks\.\d+\.mlp\.gate_proj",
            Target::VisualUpProj => r"(?:model\.visual|visual)\.blocks\.\d+\.mlp\.up_proj",
            Target::VisualDownProj => r"(?:model\.visual|visual)\.blocks\.\d+\.mlp\.down_proj",
            Target::VisualMerger => r"(?:model\.visual|visual)\.merger\.mlp\.(?:0|2)",
        }
    }
}

/// `[lora]` of the trainer config: adapters instead of full fine-tuning.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// The rank r of every adapter.
    pub r: usize,
    /// lora_alpha: the adapter's output is scaled by alpha / r (alpha / sqrt(r) with rslora).
    pub alpha: f64,
    /// rsLoRA's scaling (Kalajdzievski, 2023).
    pub rslora: bool,
    /// lora_dropout on the adapter's input while training, in [0, 1): the masks come from a
    /// hash of (seed, element) on the device (`ops::dropout`), so a recomputed block and the
    /// backward redraw them without storing them.
    pub dropout: f64,
    /// The layers adapted (default: the decoder's seven projections; the vision tower's on request).
    pub targets: Vec<Target>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { r: 64, alpha: 64.0, rslora: false, dropout: 0.0, targets: Target::DECODER.to_vec() }
    }
}

impl LoraConfig {
    pub fn validate(&self, file: &str) -> Result<()> {
        let err = |field: &str, msg: &str| Err(Error::Config { file: file.into(), field: format!("lora.{field}"), msg: msg.into() });
        if self.r == 0 {
            return err("r", "must be at least 1");
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return err("alpha", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err("dropout", "must be in [0, 1)");
        }
        if self.targets.is_empty() {
            return err("targets", "names no layer; list at least one (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, visual_qkv, ...)");
        }
        Ok(())
    }

    /// PEFT's target_modules for these targets: one regular expression.
    pub fn target_regex(&self) -> String {
        let alts: Vec<&str> = self.targets.iter().map(|t| t.pattern()).collect();
        format!("(?:{})", alts.join("|"))
    }
}

/// One adapted layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraModule {
    /// pgpo's module name (the layer's weight name without `.weight`).
    pub name: String,
    pub r: usize,
    /// alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub scale: f32,
}

/// The adapters attached to a model, and the adapter_config.json they are saved with.
#[derive(Clone, Debug)]
pub struct Lora {
    pub modules: Vec<LoraModule>,
    /// How adapter_model.safetensors names the modules (fresh adapters: transformers 5's).
    pub naming: super::names::Naming,
    /// adapter_config.json, written back as read (a fresh adapter's is made from `LoraConfig`).
    pub config_json: serde_json::Value,
}

pub fn a_name(module: &str) -> String {
    format!("{module}.lora_A.weight")
}

pub fn b_name(module: &str) -> String {
    format!("{module}.lora_B.weight")
}

/// Whether parameter `name` is an adapter's (A or B).
pub fn is_adapter(name: &str) -> bool {
    name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight")
}

/// The linear layers of the model (pgpo module names) with their [out, in], in the model's
/// order: every matrix but the token embedding, the LM head and the patch embedding (a Conv3d).
pub fn linear_modules(c: &ModelConfig) -> Vec<(String, [usize; 2])> {
    names::parameters(c)
        .into_iter()
        .filter(|(n, s)| s.len() == 2 && n != "model.embed_tokens.weight" && n != "lm_head.weight")
        .filter_map(|(n, s)| Some((n.strip_suffix(".weight")?.to_string(), [s[0], s[1]])))
        .collect()
}

/// The scale of an adapter of rank `r` with `alpha`.
pub fn scale(alpha: f64, r: usize, rslora: bool) -> f32 {
    (if rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 }) as f32
}

impl Weights {
    /// Attaches fresh adapters to the layers `cfg.targets` selects, initialised as PEFT does:
    /// A uniform in ±1/sqrt(in) (Kaiming-uniform with a = sqrt(5)), B zero, so the model's
    /// output is unchanged until B trains. `base` is recorded as base_model_name_or_path.
    pub fn attach_lora(&mut self, cfg: &LoraConfig, base: &str, seed: u64) -> Result<()> {
        cfg.validate("the LoRA config")?;
        if self.lora.is_some() {
            return Err(Error::input("lora", "the model already has adapters"));
        }
        let mut rng = Rng::new(seed ^ 0x10BA);
        let mut modules = Vec::new();
        for (m, [out, inp]) in linear_modules(&self.config) {
            if !cfg.targets.iter().any(|t| t.selects(&m)) {
                continue;
            }
            let bound = 1.0 / (inp as f32).sqrt();
            let device = self.tensors()[0].device().clone();
            self.push(a_name(&m), Tensor::from_vec(rng.vec(cfg.r * inp, -bound, bound), &[cfg.r, inp], &device)?);
            self.push(b_name(&m), Tensor::zeros(&[out, cfg.r], &device)?);
            modules.push(LoraModule { name: m, r: cfg.r, scale: scale(cfg.alpha, cfg.r, cfg.rslora) });
        }
        if modules.is_empty() {
            return Err(Error::Config { file: "the LoRA config".into(), field: "lora.targets".into(), msg: "selects no layer of this model".into() });
        }
        let config_json = super::peft::fresh_config(cfg, base);
        self.lora = Some(Lora { modules, naming: super::names::Naming::Nested, config_json });
        Ok(())
    }

    /// The base with every adapter merged into its layer (W + s B A, rounded to the layer's
    /// stored dtype when saved) and no adapters: what `pgpo merge` writes.
    pub fn merged(&self) -> Result<Weights> {
        let Some(lora) = &self.lora else { return Err(Error::input("adapter", "the model has no adapters to merge")) };
        let mut out = self.without_adapters();
        for m in &lora.modules {
            let w = format!("{}.weight", m.name);
            let (a, b) = (self.get(&a_name(&m.name))?, self.get(&b_name(&m.name))?);
            let delta = crate::ops::scale(&crate::ops::matmul(b, a, crate::ops::Transpose::NN)?, m.scale)?;
            let base = self.get(&w)?.to_dtype(crate::tensor::Dtype::F32)?;
            out.set(&w, crate::ops::add(&base, &delta)?)?;
        }
        Ok(out)
    }
}
