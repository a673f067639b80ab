//! config.json of Qwen2.5-VL in the flat form of published checkpoints and the nested form
//! of transformers 5; a missing or ill-typed field is an error that names it.

use pgpo::model::ModelConfig;
use pgpo::Error;

/// Qwen2.5-VL-3B-Instruct's published config.json (flat form).
const PUBLISHED_3B: &str = r#"{
  "architectures": ["Qwen2_5_VLForConditionalGeneration"],
  "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
  "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
  "image_token_id": 151655, "video_token_id": 151656,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 11008,
  "max_position_embeddings": 128000, "max_window_layers": 70, "model_type": "qwen2_5_vl",
  "num_attention_heads": 16, "num_hidden_layers": 36, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.41.2",
  "use_cache": true, "use_sliding_window": false,
  "vision_config": {
    "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
    "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14,
    "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2
  },
  "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
  "vocab_size": 151936
}"#;

/// The same model in the nested layout of transformers 5 (Qwen2_5_VLConfig with
/// text_config and rope_parameters), written from its configuration class.
const NESTED_3B: &str = r#"{
  "model_type": "qwen2_5_vl", "image_token_id": 151655, "video_token_id": 151656,
  "vision_start_token_id": 151652, "vision_end_token_id": 151653, "tie_word_embeddings": true,
  "text_config": {
    "model_type": "qwen2_5_vl_text", "vocab_size": 151936, "hidden_size": 2048,
    "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
    "num_key_value_heads": 2, "hidden_act": "silu", "rms_norm_eps": 1e-06,
    "tie_word_embeddings": true,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}
  },
  "vision_config": {
    "model_type": "qwen2_5_vl", "depth": 32, "hidden_act": "silu", "hidden_size": 1280,
    "intermediate_size": 3420, "num_heads": 16, "in_channels": 3, "out_hidden_size": 2048,
    "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2
  }
}"#;

#[test]
fn published_flat_config_and_nested_transformers_5_config_read_alike() {
    let flat = ModelConfig::parse(PUBLISHED_3B, "flat.json").unwrap();
    let nested = ModelConfig::parse(NESTED_3B, "nested.json").unwrap();
    assert_eq!(flat, nested);
    let t = &flat.text;
    assert_eq!((t.vocab_size, t.hidden_size, t.num_hidden_layers, t.head_dim()), (151_936, 2048, 36, 128));
    assert_eq!((t.num_attention_heads, t.num_key_value_heads, t.rope_theta), (16, 2, 1e6));
    assert_eq!(t.mrope_section, vec![16, 24, 24]);
    assert_eq!(flat.vision.patch_dim(), 1176);
    assert_eq!(flat.vision.fullatt_block_indexes, vec![7, 15, 23, 31]);
    assert!(flat.tie_word_embeddings);
    assert_eq!((flat.image_token_id, flat.vision_start_token_id, flat.vision_end_token_id), (151_655, 151_652, 151_653));
}

fn field_error(text: &str, field: &str) {
    match ModelConfig::parse(text, "config.json") {
        Err(e @ Error::Config { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{field}`")) && msg.contains("config.json"), "{msg}");
        }
        Err(e) => panic!("expected a config error naming {field}, got {e}"),
        Ok(_) => panic!("expected a config error naming {field}, got Ok"),
    }
}

#[test]
fn a_missing_or_ill_typed_field_is_an_error_naming_it() {
    field_error(&PUBLISHED_3B.replace(r#""hidden_size": 2048, "initializer_range""#, r#""initializer_range""#), "hidden_size");
    field_error(&NESTED_3B.replace(r#""num_key_value_heads": 2, "#, ""), "text_config.num_key_value_heads");
    field_error(&PUBLISHED_3B.replace(r#""depth": 32"#, r#""depth": "32""#), "vision_config.depth");
    field_error(&PUBLISHED_3B.replace("[16, 24, 24]", "[16, 24, 20]"), "rope_scaling.mrope_section");
    field_error(&NESTED_3B.replace("[16, 24, 24]", "16"), "text_config.rope_parameters.mrope_section");
    field_error(&PUBLISHED_3B.replace(r#""rms_norm_eps": 1e-06"#, r#""rms_norm_eps": null"#), "rms_norm_eps");
    field_error(&PUBLISHED_3B.replace(r#""tie_word_embeddings": true"#, r#""tie_word_embeddings": 1"#), "tie_word_embeddings");
    field_error(&PUBLISHED_3B.replace("[7, 15, 23, 31]", "[7, 15, 23, 32]"), "vision_config.fullatt_block_indexes");
    field_error(&PUBLISHED_3B.replace(r#""out_hidden_size": 2048"#, r#""out_hidden_size": 1024"#), "vision_config.out_hidden_size");
    field_error(&PUBLISHED_3B.replace(r#""num_key_value_heads": 2"#, r#""num_key_value_heads": 3"#), "num_key_value_heads");
}

#[test]
fn invalid_json_and_a_missing_file_name_the_file() {
    let e = ModelConfig::parse("{ not json", "/models/x/config.json").unwrap_err();
    assert!(e.to_string().contains("/models/x/config.json") && e.to_string().contains("not valid JSON"), "{e}");
    let e = ModelConfig::load(std::path::Path::new("/nonexistent-model-dir")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent-model-dir/config.json"), "{e}");
}
