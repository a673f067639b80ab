//! Qwen2.5-VL's config.json, in both forms found in the wild: the flat form of published
//! checkpoints (text fields at the top, `rope_theta`, `rope_scaling: {type: mrope,
//! mrope_section}`, `vision_config`) and the nested form that transformers 5 writes
//! (`text_config` with `rope_parameters: {rope_type, rope_theta, mrope_section}`). Fields
//! that fix the architecture are required: a missing or ill-typed one is an error naming
//! its path in the file. Fields transformers defaults (special token ids, tie_word_embeddings,
//! the vision rope theta) take transformers' defaults.

use crate::error::{Error, Result};
use crate::json_fields::Fields;
use serde_json::Value;
use std::path::Path;

/// The decoder (Qwen2) part.
#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// M-RoPE bands over head_dim / 2 frequencies: temporal, height, width.
    pub mrope_section: Vec<usize>,
    pub hidden_act: String,
    /// The context length: prompt plus generated tokens may not exceed it.
    pub max_position_embeddings: usize,
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// The vision tower.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    pub window_size: usize,
    /// Width of the merger's output: the decoder's hidden size.
    pub out_hidden_size: usize,
    /// Blocks with full attention; the others attend within windows.
    pub fullatt_block_indexes: Vec<usize>,
    pub hidden_act: String,
}

impl VisionConfig {
    /// Values per patch: channels x temporal x patch x patch (3 x 2 x 14 x 14 = 1176).
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub tie_word_embeddings: bool,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
}


/// Bounds on sizes and counts, far above any published model (Qwen2.5-VL-72B: 80 layers,
/// hidden 8192, vocabulary 152064), so that a corrupt config is an error, not an allocation
/// of terabytes.
const MAX_DIM: usize = 1 << 20;
const MAX_VOCAB: usize = 1 << 24;
const MAX_LAYERS: usize = 1024;

fn text_config(t: &Fields, rope: &Fields, theta_from: &Fields) -> Result<TextConfig> {
    let c = TextConfig {
        vocab_size: t.between("vocab_size", 1, MAX_VOCAB)?,
        hidden_size: t.between("hidden_size", 1, MAX_DIM)?,
        intermediate_size: t.between("intermediate_size", 1, MAX_DIM)?,
        num_hidden_layers: t.between("num_hidden_layers", 1, MAX_LAYERS)?,
        num_attention_heads: t.between("num_attention_heads", 1, MAX_DIM)?,
        num_key_value_heads: t.between("num_key_value_heads", 1, MAX_DIM)?,
        rms_norm_eps: t.f64("rms_norm_eps")?,
        rope_theta: theta_from.f64("rope_theta")?,
        mrope_section: rope.usizes("mrope_section")?,
        hidden_act: t.silu("decoder")?,
        // transformers' Qwen2_5_VLTextConfig default when the file leaves it out.
        max_position_embeddings: match t.get("max_position_embeddings") {
            Some(_) => t.between("max_position_embeddings", 1, 1 << 30)?,
            None => 128_000,
        },
    };
    if c.hidden_size % c.num_attention_heads != 0 || c.head_dim() % 2 != 0 {
        return Err(t.err("num_attention_heads", &format!("must divide hidden_size {} into heads of even size", c.hidden_size)));
    }
    if c.num_attention_heads % c.num_key_value_heads != 0 {
        return Err(t.err("num_key_value_heads", &format!("must divide num_attention_heads {}", c.num_attention_heads)));
    }
    if t.bool_or("use_sliding_window", false)? {
        return Err(t.err("use_sliding_window", "is true; sliding-window attention is not implemented (Qwen2.5-VL checkpoints leave it off)"));
    }
    if c.mrope_section.len() != 3 || c.mrope_section.iter().try_fold(0usize, |a, &x| a.checked_add(x)) != Some(c.head_dim() / 2) {
        return Err(rope.err(
            "mrope_section",
            &format!("must be three bands summing to head_dim / 2 = {}, got {:?}", c.head_dim() / 2, c.mrope_section),
        ));
    }
    Ok(c)
}

fn vision_config(v: &Fields) -> Result<VisionConfig> {
    // Published checkpoints spell the channel count `in_chans`, transformers `in_channels`.
    let in_channels = if v.get("in_channels").is_some() { v.between("in_channels", 1, 16)? } else { v.between("in_chans", 1, 16)? };
    let c = VisionConfig {
        depth: v.between("depth", 1, MAX_LAYERS)?,
        hidden_size: v.between("hidden_size", 1, MAX_DIM)?,
        intermediate_size: v.between("intermediate_size", 1, MAX_DIM)?,
        num_heads: v.between("num_heads", 1, MAX_DIM)?,
        in_channels,
        patch_size: v.between("patch_size", 1, 1024)?,
        spatial_merge_size: v.between("spatial_merge_size", 1, 64)?,
        temporal_patch_size: v.between("temporal_patch_size", 1, 64)?,
        window_size: v.between("window_size", 1, 1 << 16)?,
        out_hidden_size: v.between("out_hidden_size", 1, MAX_DIM)?,
        fullatt_block_indexes: v.usizes("fullatt_block_indexes")?,
        hidden_act: v.silu("vision MLP")?,
    };
    if c.hidden_size % c.num_heads != 0 || (c.hidden_size / c.num_heads) % 4 != 0 {
        return Err(v.err("num_heads", &format!("must divide hidden_size {} into heads of a size divisible by 4 (the 2-D rotary)", c.hidden_size)));
    }
    if let Some(&bad) = c.fullatt_block_indexes.iter().find(|&&i| i >= c.depth) {
        return Err(v.err("fullatt_block_indexes", &format!("index {bad} is past depth {}", c.depth)));
    }
    if c.window_size % (c.patch_size * c.spatial_merge_size) != 0 {
        return Err(v.err("window_size", "must be a multiple of patch_size * spatial_merge_size"));
    }
    Ok(c)
}

impl ModelConfig {
    /// The image and video pad tokens and the vision markers: tokens a response must not
    /// contain when it is fed back with its prompt (they would be taken for image slots).
    pub fn vision_token_ids(&self) -> Vec<u32> {
        vec![self.image_token_id, self.video_token_id, self.vision_start_token_id, self.vision_end_token_id]
    }

    /// Parses config.json text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<ModelConfig> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| Error::Config { file: file.to_string(), field: String::new(), msg: format!("is not valid JSON: {e}") })?;
        let Value::Object(map) = &root else {
            return Err(Error::Config { file: file.to_string(), field: String::new(), msg: "must be a JSON object".into() });
        };
        let top = Fields { file, prefix: String::new(), map };
        let text = if top.get("text_config").is_some() {
            // transformers 5: text_config with rope_parameters (or a legacy rope_scaling).
            let t = top.object("text_config")?;
            let rope = if t.get("rope_parameters").is_some() { t.object("rope_parameters")? } else { t.object("rope_scaling")? };
            let theta = if rope.get("rope_theta").is_some() { &rope } else { &t };
            text_config(&t, &rope, theta)?
        } else {
            let rope = top.object("rope_scaling")?;
            text_config(&top, &rope, &top)?
        };
        let vision = vision_config(&top.object("vision_config")?)?;
        if vision.out_hidden_size != text.hidden_size {
            return Err(top.err(
                "vision_config.out_hidden_size",
                &format!("{} must equal the decoder's hidden_size {}", vision.out_hidden_size, text.hidden_size),
            ));
        }
        // tie_word_embeddings sits at the top in both forms; transformers 5 also repeats it in
        // text_config.
        let tie_default = match top.get("text_config") {
            Some(_) => top.object("text_config")?.bool_or("tie_word_embeddings", false)?,
            None => false,
        };
        Ok(ModelConfig {
            tie_word_embeddings: top.bool_or("tie_word_embeddings", tie_default)?,
            image_token_id: top.token_or("image_token_id", 151_655)?,
            video_token_id: top.token_or("video_token_id", 151_656)?,
            vision_start_token_id: top.token_or("vision_start_token_id", 151_652)?,
            vision_end_token_id: top.token_or("vision_end_token_id", 151_653)?,
            text,
            vision,
        })
    }

    /// Reads `dir/config.json`.
    pub fn load(dir: &Path) -> Result<ModelConfig> {
        Ok(ModelConfig::load_with_text(dir)?.0)
    }

    /// Reads `dir/config.json`; also returns its text, which a checkpoint saves back unchanged.
    pub fn load_with_text(dir: &Path) -> Result<(ModelConfig, String)> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
            file: path.display().to_string(),
            field: String::new(),
            msg: format!("cannot be read: {e}"),
        })?;
        Ok((ModelConfig::parse(&text, &path.display().to_string())?, text))
    }
}
