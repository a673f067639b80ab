//! `pgpo plan`: the trainer's memory estimate (`memory::estimate`, the figure a run checks
//! before its first step) for a configuration and a model's config.json alone, without
//! weights; and, for a configuration over the budget, the first knob that brings it under.

use super::config::TrainConfig;
use super::memory::{estimate, ChunkLimits, Estimate, Lengths, Sizes};
use crate::model::lora::linear_modules;
use crate::model::{names, ModelConfig, Recompute};

/// Qwen2.5-VL-3B-Instruct's published config.json.
pub const QWEN2_5_VL_3B: &str = include_str!("../model/configs/qwen2_5_vl_3b_instruct.json");

/// What the plan assumes of the data and the checkpoint.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// One image per prompt, in pixels (height, width; resized by the processor's rule to
    /// multiples of patch x merge).
    pub image: [usize; 2],
    /// Text tokens of a prompt (template and question), besides the image's.
    pub prompt_text: usize,
    /// Bytes per value of the checkpoint's matrices (2 for bf16).
    pub stored_bytes: u64,
    /// The device's memory, in bytes (sets the fused losses' row chunk; None: unknown).
    pub memory: Option<u64>,
}

/// The parameter counts and bytes of `c` trained as `cfg` says (LoRA adapters included).
pub fn sizes(cfg: &TrainConfig, c: &ModelConfig, stored_bytes: u64) -> Sizes {
    let mut s = Sizes { values: 0, trained: 0, frozen_bytes: 0, stored_bytes: 0 };
    for (name, shape) in names::parameters(c) {
        let n: u64 = shape.iter().product::<usize>() as u64;
        let bytes = n * if shape.len() >= 2 { stored_bytes } else { 4 };
        s.values += n;
        s.stored_bytes += bytes;
        if cfg.trains(&name) {
            s.trained += n;
        } else {
            s.frozen_bytes += bytes;
        }
    }
    if let Some(l) = &cfg.lora {
        let adapters: u64 = linear_modules(c).iter().filter(|(m, _)| l.targets.iter().any(|t| t.selects(m))).map(|(_, [o, i])| (l.r * (o + i)) as u64).sum();
        s.values += adapters;
        s.trained += adapters;
        s.stored_bytes += 4 * adapters;
    }
    s
}

/// The lengths of one prompt with an image of `shape.image` and of a response.
pub fn lengths(cfg: &TrainConfig, c: &ModelConfig, shape: &Shape) -> Lengths {
    let unit = c.vision.patch_size * c.vision.spatial_merge_size;
    let side = |x: usize| (x.div_ceil(unit).max(1)) * unit / c.vision.patch_size;
    let patches = side(shape.image[0]) * side(shape.image[1]);
    let merged = patches / (c.vision.spatial_merge_size * c.vision.spatial_merge_size);
    // + <|vision_start|> and <|vision_end|>
    Lengths { prompt: shape.prompt_text + merged + 2, target: cfg.rl.max_new_tokens, patches }
}

pub fn plan(cfg: &TrainConfig, c: &ModelConfig, shape: &Shape) -> Estimate {
    estimate(cfg, c, sizes(cfg, c, shape.stored_bytes), lengths(cfg, c, shape), ChunkLimits { free: shape.memory, max_binding: None })
}

/// The changes, tried one after another in the order a user would (recomputation, LoRA
/// r 64 for full fine-tuning, halving the batch behind the largest activation term: the SFT
/// batch, the mini-batch or the prompts per step; then halving the LoRA rank), that first bring the config under `budget` bytes, with the estimate then.
/// `None` when it fits as it is or all of them together do not suffice.
pub fn fitting_change(cfg: &TrainConfig, c: &ModelConfig, shape: &Shape, budget: u64) -> Option<(String, Estimate)> {
    if plan(cfg, c, shape).peak <= budget {
        return None;
    }
    let mut x = cfg.clone();
    let mut knobs: Vec<(&str, String)> = Vec::new();
    let set = |knobs: &mut Vec<(&str, String)>, key: &'static str, value: String| match knobs.iter_mut().find(|k| k.0 == key) {
        Some(k) => k.1 = value,
        None => knobs.push((key, value)),
    };
    let done = |x: &TrainConfig, knobs: &Vec<(&str, String)>| {
        let e = plan(x, c, shape);
        (e.peak <= budget).then(|| (knobs.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "), e))
    };
    if x.recompute_for(sizes(&x, c, shape.stored_bytes).values as f64) != Recompute::Layer {
        x.recompute = Some(Recompute::Layer);
        set(&mut knobs, "recompute", "\"layer\"".into());
        if let Some(d) = done(&x, &knobs) {
            return Some(d);
        }
    }
    if x.lora.is_none() {
        x.lora = Some(Default::default());
        set(&mut knobs, "lora.r", "64".into());
        if let Some(d) = done(&x, &knobs) {
            return Some(d);
        }
    }
    // Then halve the batch behind the largest activation term, until it fits.
    loop {
        let e = plan(&x, c, shape);
        let largest = e.parts.iter().skip(2).filter(|p| p.0 != "SFT activations and one chunk of logits" || x.sft.steps > 0).max_by_key(|p| p.1).map(|p| p.0);
        let (key, n) = match largest {
            Some(p) if p.starts_with("SFT") && x.sft.batch > 1 => ("sft.batch", &mut x.sft.batch),
            Some(p) if p.starts_with("RL update") && x.rl.mini_batch > 1 => ("rl.mini_batch", &mut x.rl.mini_batch),
            _ if x.rl.prompts > 1 => ("rl.prompts", &mut x.rl.prompts),
            _ if x.rl.mini_batch > 1 => ("rl.mini_batch", &mut x.rl.mini_batch),
            _ => break,
        };
        *n /= 2;
        let v = n.to_string();
        set(&mut knobs, key, v);
        if let Some(d) = done(&x, &knobs) {
            return Some(d);
        }
    }
    while let Some(l) = x.lora.as_mut().filter(|l| l.r > 1) {
        l.r /= 2;
        let r = l.r.to_string();
        set(&mut knobs, "lora.r", r);
        if let Some(d) = done(&x, &knobs) {
            return Some(d);
        }
    }
    None
}
