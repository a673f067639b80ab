//! The default tiny model, made from scratch: a byte-level BPE tokenizer trained with the
//! `tokenizers` crate on the synthetic corpus (Qwen2-VL's special tokens first), a
//! Qwen2.5-VL configuration of about a million parameters sized to it, random weights, and
//! the processor files (tokenizer_config.json, chat_template.json, preprocessor_config.json,
//! generation_config.json) beside them, so the folder is a checkpoint like a published one.

use crate::device::Device;
use crate::error::{Error, Result};
use crate::model::chat::QWEN2_VL_TEMPLATE;
use crate::model::{ModelConfig, Weights};
use serde_json::json;
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper, PostProcessorWrapper, Tokenizer, TokenizerImpl};

/// In this order, so they take ids 0..7.
pub const SPECIAL_TOKENS: [&str; 7] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"];

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::input("tokenizer", format!("training failed: {e}"))
}

/// Trains the BPE tokenizer on `corpus` (at most `vocab` ids).
pub fn train_tokenizer(corpus: &[String], vocab: usize) -> Result<Tokenizer> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .show_progress(false)
        .special_tokens(SPECIAL_TOKENS.iter().map(|s| AddedToken::from(s.to_string(), true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer: TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, PostProcessorWrapper, ByteLevel> = TokenizerImpl::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer.train(&mut trainer, corpus.iter()).map_err(tok_err)?;
    Ok(Tokenizer::from(tokenizer))
}

/// The model's config.json for a vocabulary of `vocab` ids (the flat published form).
pub fn config_json(vocab: usize, hidden: usize, layers: usize) -> String {
    // M-RoPE bands over head_dim / 2 frequencies in Qwen2.5-VL's proportions (16, 24, 24).
    let half = hidden / 4 / 2;
    let t = half / 4;
    let h = (half - t) / 2;
    let section = [t, h, half - t - h];
    json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": hidden * 3,
        "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
        "max_position_embeddings": 512, "tie_word_embeddings": true,
        "rope_scaling": {"type": "mrope", "mrope_section": section},
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0,
        "vision_start_token_id": 3, "vision_end_token_id": 4, "image_token_id": 5, "video_token_id": 6,
        "vision_config": {
            "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "in_chans": 3,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
            "out_hidden_size": hidden, "fullatt_block_indexes": [1], "hidden_act": "silu", "tokens_per_second": 2
        }
    })
    .to_string()
}

fn write(path: &Path, text: &str) -> Result<()> {
    crate::io::atomic(path, |tmp| Ok(std::fs::write(tmp, text)?))
}

/// Writes a fresh checkpoint into `dir`: tokenizer, processor files, config and random weights.
pub fn create(dir: &Path, vocab: usize, hidden: usize, layers: usize, seed: u64, device: &Device) -> Result<Weights> {
    std::fs::create_dir_all(dir).map_err(|e| crate::io::bad(dir, format!("cannot create: {e}")))?;
    let tokenizer = train_tokenizer(&super::synthetic::corpus(), vocab)?;
    let tok_path = dir.join("tokenizer.json");
    tokenizer.save(&tok_path, false).map_err(|e| crate::io::bad(&tok_path, e))?;
    let ids = tokenizer.get_vocab_size(true);
    write(&dir.join("tokenizer_config.json"), &json!({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "tokenizer_class": "Qwen2TokenizerFast"}).to_string())?;
    write(&dir.join("chat_template.json"), &json!({ "chat_template": QWEN2_VL_TEMPLATE }).to_string())?;
    write(&dir.join("preprocessor_config.json"), &json!({"min_pixels": 3136, "max_pixels": 12_845_056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "image_processor_type": "Qwen2VLImageProcessor"}).to_string())?;
    write(&dir.join("generation_config.json"), &json!({"eos_token_id": [2], "pad_token_id": 0}).to_string())?;
    let text = config_json(ids, hidden, layers);
    let config = ModelConfig::parse(&text, "config.json")?;
    let w = Weights::random(&config, &text, seed, device)?;
    w.save(dir)?;
    Ok(w)
}
