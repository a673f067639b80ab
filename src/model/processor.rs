//! A checkpoint's processor, as transformers' Qwen2_5_VLProcessor: the image processor, the
//! tokenizer and chat template, and the generation defaults (stop and pad ids), turning an
//! image and a question into model inputs.

use super::chat::{Chat, IMAGE_PAD};
use super::config::ModelConfig;
use crate::image::processor::{preprocess, ImageProcessorConfig, RgbImage};
use super::inputs::ModelInputs;
use crate::json_fields::{read_object, Fields};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct Processor {
    pub chat: Chat,
    pub images: ImageProcessorConfig,
    /// Tokens that end an answer.
    pub stop_ids: Vec<u32>,
    /// Fills sequences after they stop.
    pub pad_id: u32,
}

/// One prompt: ids [T], patches [N, patch_dim] and one grid per image.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub ids: Vec<u32>,
    pub pixels: Vec<f32>,
    pub grids: Vec<[usize; 3]>,
}

impl Prompt {
    /// The same prompt: the same object, or equal ids, grids and pixels (bit for bit). Equal
    /// ids alone are not enough: one question about two images of the same size gives the
    /// same ids, and scoring one with the other's KV cache scores it against the wrong image.
    pub fn same_as(&self, other: &Prompt) -> bool {
        std::ptr::eq(self, other)
            || (self.ids == other.ids
                && self.grids == other.grids
                && self.pixels.len() == other.pixels.len()
                && self.pixels.iter().zip(&other.pixels).all(|(a, b)| a.to_bits() == b.to_bits()))
    }
}

/// (stop ids, pad id): generation_config.json's eos_token_id and pad_token_id, else
/// config.json's (top level or text_config), else the tokenizer's eos and pad tokens.
pub fn generation_ids(dir: &Path, chat: Option<&Chat>) -> Result<(Vec<u32>, u32)> {
    let gen_path = dir.join("generation_config.json");
    let cfg_path = dir.join("config.json");
    let (gen_file, cfg_file) = (gen_path.display().to_string(), cfg_path.display().to_string());
    let (gen_map, cfg_map) = (read_object(&gen_path)?.unwrap_or_default(), read_object(&cfg_path)?.unwrap_or_default());
    let generation = Fields { file: &gen_file, prefix: String::new(), map: &gen_map };
    let cfg = Fields { file: &cfg_file, prefix: String::new(), map: &cfg_map };
    // transformers 5 keeps the special ids in config.json's text_config.
    let text = match cfg.get("text_config") {
        Some(Value::Object(_)) => Some(cfg.object("text_config")?),
        _ => None,
    };
    let from = |key: &str| -> Result<Option<Vec<u32>>> {
        for f in [Some(&generation), Some(&cfg), text.as_ref()].into_iter().flatten() {
            if let Some(ids) = f.ids(key)?.filter(|v| !v.is_empty()) {
                return Ok(Some(ids));
            }
        }
        Ok(None)
    };
    let stop_ids = match from("eos_token_id")? {
        Some(ids) => ids,
        None => chat.and_then(|c| c.special("eos_token")).into_iter().collect(),
    };
    if stop_ids.is_empty() {
        return Err(Error::Config {
            file: gen_path.display().to_string(),
            field: "eos_token_id".into(),
            msg: "is missing here, in config.json and in tokenizer_config.json: name the stop tokens with --stop-id".into(),
        });
    }
    let pad_id = match from("pad_token_id")? {
        Some(ids) => ids[0],
        None => chat.and_then(|c| c.special("pad_token")).unwrap_or(stop_ids[0]),
    };
    Ok((stop_ids, pad_id))
}

impl Processor {
    /// Loads the processor files of `dir` and, given the model's config, checks them against
    /// it: the tokenizer's ids must fit the vocabulary, its `<|image_pad|>` must be the
    /// config's, and the patch geometry must be the vision tower's.
    pub fn load(dir: &Path, config: Option<&ModelConfig>) -> Result<Processor> {
        let chat = Chat::load(dir)?;
        let (stop_ids, pad_id) = generation_ids(dir, Some(&chat))?;
        let images = ImageProcessorConfig::load(dir)?;
        let p = Processor { chat, images, stop_ids, pad_id };
        match config {
            Some(c) => p.check(dir, c).map(|()| p),
            None => Ok(p),
        }
    }

    fn check(&self, dir: &Path, config: &ModelConfig) -> Result<()> {
        let tok: PathBuf = dir.join("tokenizer.json");
        let bad = |msg: String| Error::Config { file: tok.display().to_string(), field: String::new(), msg };
        if self.chat.vocab_size() > config.text.vocab_size {
            return Err(bad(format!("has {} tokens, more than the model's vocab_size {}", self.chat.vocab_size(), config.text.vocab_size)));
        }
        let pad_token = self.chat.id(IMAGE_PAD)?;
        if pad_token != config.image_token_id {
            return Err(bad(format!("{IMAGE_PAD} is id {pad_token} but config.json's image_token_id is {}", config.image_token_id)));
        }
        let images = &self.images;
        let v = &config.vision;
        let pairs = [("patch_size", images.patch_size, v.patch_size), ("merge_size", images.merge_size, v.spatial_merge_size), ("temporal_patch_size", images.temporal_patch_size, v.temporal_patch_size)];
        if let Some((key, ours, model)) = pairs.iter().find(|(_, a, b)| a != b) {
            let file = dir.join("preprocessor_config.json").display().to_string();
            return Err(Error::Config { file, field: key.to_string(), msg: format!("is {ours} but the model's vision_config has {model}") });
        }
        Ok(())
    }

    /// Values per patch: 3 x temporal x patch x patch.
    pub fn patch_dim(&self) -> usize {
        3 * self.images.temporal_patch_size * self.images.patch_size * self.images.patch_size
    }

    /// One user turn: the images (in order), then `text`, with the generation prompt.
    pub fn prompt(&self, images: &[RgbImage], text: &str) -> Result<Prompt> {
        let mut pixels = Vec::new();
        let mut grids = Vec::new();
        for img in images {
            let p = preprocess(img, &self.images)?;
            pixels.extend_from_slice(&p.pixels);
            grids.push(p.grid);
        }
        let ids = self.chat.prompt_ids(text, &grids, self.images.merge_size)?;
        Ok(Prompt { ids, pixels, grids })
    }

    /// The prompt as a batch of one for the model, checked against its config.
    pub fn inputs(&self, p: &Prompt, config: &ModelConfig, device: &Device) -> Result<ModelInputs> {
        let width = self.patch_dim();
        let pixels = if p.grids.is_empty() { None } else { Some(Tensor::from_slice(&p.pixels, &[p.pixels.len() / width, width], device)?) };
        ModelInputs::new(config, 1, p.ids.len(), p.ids.clone(), None, pixels, p.grids.clone())
    }
}
