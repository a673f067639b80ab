//! Model rows of `pgpo bench`: Qwen2.5-VL forward and forward+backward in tokens/s, and
//! batched greedy generation in new tokens/s, at the configurations of model_configs.json (the PyTorch peer script reads the same file and
//! builds the same batches). Weights are random; times do not depend on their values.

use super::{Case, Work};
use crate::autograd::Tape;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::{forward, generate, lm_loss, ForwardOptions, GenerateOptions, ModelConfig, ModelInputs, ParamVars, Recompute, Weights};
use crate::rng::Rng;
use crate::tensor::{Dtype, Tensor};
use std::rc::Rc;

const CONFIGS: &str = include_str!("model_configs.json");

/// One workload: a config, and a batch of `batch` sequences of `seq` tokens, each holding
/// one image of `grid` patches.
pub struct Workload {
    pub name: String,
    pub config: ModelConfig,
    pub config_json: String,
    pub batch: usize,
    pub seq: usize,
    pub grid: [usize; 3],
    /// Generation: (batch, prompt length, new tokens).
    pub generate: (usize, usize, usize),
}

pub fn workloads() -> Result<Vec<Workload>> {
    let bad = |m: String| Error::Config { file: "src/bench/model_configs.json".into(), field: String::new(), msg: m };
    let all: serde_json::Value = serde_json::from_str(CONFIGS).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for name in ["tiny", "small"] {
        let w = &all[name];
        let config_json = w["config"].to_string();
        let usize_of = |v: &serde_json::Value| v.as_u64().map(|x| x as usize).ok_or_else(|| bad(format!("{name}: batch, seq and grid must be integers")));
        let g: Vec<usize> = w["grid"].as_array().ok_or_else(|| bad(format!("{name}: grid")))?.iter().map(usize_of).collect::<Result<_>>()?;
        let gw = &w["generate"];
        let generate = (usize_of(&gw["batch"])?, usize_of(&gw["seq"])?, usize_of(&gw["new_tokens"])?);
        out.push(Workload {
            name: name.to_string(),
            config: ModelConfig::parse(&config_json, &format!("model_configs.json ({name})"))?,
            config_json,
            batch: usize_of(&w["batch"])?,
            seq: usize_of(&w["seq"])?,
            grid: [g[0], g[1], g[2]],
            generate,
        });
    }
    Ok(out)
}

impl Workload {
    /// Each sequence: 4 text tokens, <vision_start>, the image's pads, <vision_end>, text.
    /// Text ids follow (7 i + 3) mod 100 + 3 (the peer script builds the same).
    pub fn inputs(&self, dev: &Device) -> Result<(ModelInputs, Vec<i64>)> {
        self.batch_of(self.batch, self.seq, dev)
    }

    pub fn batch_of(&self, batch: usize, seq: usize, dev: &Device) -> Result<(ModelInputs, Vec<i64>)> {
        let c = &self.config;
        let m = c.vision.spatial_merge_size;
        let pads = self.grid.iter().product::<usize>() / (m * m);
        let mut ids = Vec::with_capacity(batch * seq);
        for _ in 0..batch {
            for i in 0..seq {
                ids.push(match i {
                    4 => c.vision_start_token_id,
                    _ if i > 4 && i <= 4 + pads => c.image_token_id,
                    _ if i == 5 + pads => c.vision_end_token_id,
                    _ => ((7 * i + 3) % 100 + 3) as u32,
                });
            }
        }
        let labels = ids.iter().map(|&x| i64::from(x)).collect();
        let patches = batch * self.grid.iter().product::<usize>();
        let pd = c.vision.patch_dim();
        let pixels = Tensor::from_vec(Rng::new(5).vec(patches * pd, -1.0, 1.0), &[patches, pd], dev)?;
        let grids = vec![self.grid; batch];
        Ok((ModelInputs::new(c, batch, seq, ids, None, Some(pixels), grids)?, labels))
    }
}

/// `w` as a bf16 checkpoint loads: every weight rounded to the nearest bf16 (ties to even),
/// the matrices stored in bf16 (half the bytes, read by the half-precision matmul and gather),
/// the norm weights and biases widened to f32.
fn bf16_checkpoint(w: &Weights) -> Result<Weights> {
    let mut out = w.clone();
    for (name, t) in w.names().iter().zip(w.tensors()) {
        let half = t.to_dtype(Dtype::BF16)?;
        out.set(name, if t.rank() >= 2 { half } else { half.to_dtype(Dtype::F32)? })?;
    }
    Ok(out)
}

pub fn cases(dev: &Device) -> Result<Vec<Case>> {
    let mut out = Vec::new();
    for w in workloads()? {
        // The small model at full size takes minutes per step on a software adapter.
        if w.name == "small" && super::software(dev) {
            continue;
        }
        let weights = Rc::new(Weights::random(&w.config, &w.config_json, 3, dev)?);
        let (inputs, labels) = w.inputs(dev)?;
        let (inputs, labels) = (Rc::new(inputs), Rc::new(labels));
        let tokens = (w.batch * w.seq) as f64;
        let shape = format!("{} B{} T{} image {:?}", w.name, w.batch, w.seq, w.grid);
        let bf16_weights = Rc::new(bf16_checkpoint(&weights)?);
        for (wt, suffix) in [(weights.clone(), ""), (bf16_weights.clone(), ", bf16 checkpoint")] {
            let (it, d) = (inputs.clone(), dev.clone());
            out.push(Case {
                kernel: "model fwd",
                shape: format!("{shape}{suffix}"),
                work: Work::Tokens(tokens),
                run: Box::new(move || {
                    let tape = Tape::new();
                    let pv = ParamVars::frozen(&tape, &wt);
                    let logits = forward(&pv, &wt.config, &it, &ForwardOptions::default())?;
                    d.synchronize()?;
                    drop(logits);
                    Ok(())
                }),
            });
        }
        let (gb, gt, gn) = w.generate;
        let prompts = Rc::new(w.batch_of(gb, gt, dev)?.0);
        // The same model in f32, and as a bf16 checkpoint (its matrices held in bf16).
        for (wt, suffix) in [(weights.clone(), ""), (bf16_weights.clone(), ", bf16 checkpoint")] {
            let (prompts, d) = (prompts.clone(), dev.clone());
            out.push(Case {
                kernel: "model generate",
                shape: format!("{} B{gb} prompt {gt} + {gn} new, image {:?}, greedy{suffix}", w.name, w.grid),
                work: Work::Tokens((gb * gn) as f64),
                run: Box::new(move || {
                    let tape = Tape::new();
                    let pv = ParamVars::frozen(&tape, &wt);
                    // No stop ids: every sequence generates all its tokens, as in the peer script.
                    let o = GenerateOptions { max_new_tokens: gn, ..Default::default() };
                    let g = generate(&pv, &wt.config, &prompts, &o, |_, _| {})?;
                    d.synchronize()?;
                    drop(g);
                    Ok(())
                }),
            });
        }
        // Keeping every activation, and recomputing each block in the backward: the rows'
        // peak_bytes are the memory recomputation saves, their times what it costs.
        for recompute in [Recompute::None, Recompute::Layer] {
            let (weights, inputs, labels, d) = (weights.clone(), inputs.clone(), labels.clone(), dev.clone());
            out.push(Case {
                kernel: "model fwd+bwd",
                shape: if recompute == Recompute::None { shape.clone() } else { format!("{shape}, recompute layer") },
                work: Work::Tokens(tokens),
                run: Box::new(move || {
                    let tape = Tape::new();
                    let pv = ParamVars::trainable(&tape, &weights);
                    let logits = forward(&pv, &weights.config, &inputs, &ForwardOptions { recompute, ..Default::default() })?;
                    let loss = lm_loss(&logits, &labels, inputs.batch, inputs.seq)?;
                    let grads = tape.backward(&loss)?;
                    d.synchronize()?;
                    drop(grads);
                    Ok(())
                }),
            });
        }
    }
    Ok(out)
}
