//! Regression tests for what an audit of every index, division and allocation on the paths
//! user input reaches found (each panicked, aborted or asked for terabytes before its fix).
//! Each test is named after its finding.

use pgpo::image::processor::ImageProcessorConfig;
use pgpo::model::{ModelConfig, ModelInputs};
use pgpo::rl::rewards::{equivalent, reward, RewardConfig};
use pgpo::train::TrainConfig;
use serde_json::Value;
use std::path::Path;

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen").join(rel)
}

#[test]
fn a_boxed_fraction_reaching_i128_min_divided_by_minus_one_scores_zero_instead_of_panicking() {
    let text = r"\boxed{\frac{\frac{-18446744073709551616}{1/9223372036854775808}}{-1}}";
    let r = reward(text, "1", &RewardConfig { accuracy_weight: 0.9, format_weight: 0.1 });
    assert_eq!(r.accuracy, 0.0);
    assert!(!equivalent(text, "2"));
}

#[test]
fn an_image_grid_whose_patch_count_overflows_is_refused() {
    let c = ModelConfig::load(&fixture("base")).unwrap();
    let grid = [(1usize << 62) + 1, 2, 2];
    let ids = vec![c.vision_start_token_id, c.image_token_id, c.vision_end_token_id];
    let e = ModelInputs::new(&c, 1, 3, ids, None, None, vec![grid]).unwrap_err().to_string();
    assert!(e.contains("image_grid_thw"), "{e}");
}

#[test]
fn mrope_bands_whose_sum_wraps_are_refused() {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(fixture("flat_bf16/config.json")).unwrap()).unwrap();
    let half = v["hidden_size"].as_u64().unwrap() / v["num_attention_heads"].as_u64().unwrap() / 2;
    v["rope_scaling"]["mrope_section"] = serde_json::json!([1u64 << 63, 1u64 << 63, half]);
    let e = ModelConfig::parse(&v.to_string(), "config.json").unwrap_err().to_string();
    assert!(e.contains("mrope_section"), "{e}");
}

#[test]
fn patch_and_merge_sizes_whose_product_wraps_to_zero_are_refused() {
    let e = ImageProcessorConfig::parse(r#"{"patch_size": 4294967296, "merge_size": 4294967296}"#, "preprocessor_config.json").unwrap_err().to_string();
    assert!(e.contains("patch_size"), "{e}");
    // In range one by one, but a 65536-pixel patch grid would resize any image to 4 GP.
    let c = ImageProcessorConfig::parse(r#"{"patch_size": 1024, "merge_size": 64}"#, "preprocessor_config.json").unwrap();
    let e = c.smart_resize(100, 100).unwrap_err().to_string();
    assert!(e.contains("pixel limit"), "{e}");
}

#[test]
fn min_and_max_pixels_that_would_upscale_to_terabytes_are_refused() {
    let e = ImageProcessorConfig::parse(r#"{"min_pixels": 10000000000000, "max_pixels": 10000000000000}"#, "preprocessor_config.json").unwrap_err().to_string();
    assert!(e.contains("max_pixels") && e.contains("limit"), "{e}");
}

#[test]
fn avg_at_zero_samples_is_an_error_not_a_division_by_zero() {
    let mut cfg = TrainConfig { name: "k0".into(), backend: "cpu".into(), ..Default::default() };
    cfg.out_dir = std::env::temp_dir().join(format!("pgpo-k0-{}", std::process::id()));
    (cfg.tiny.hidden, cfg.tiny.layers, cfg.data.eval_size) = (64, 1, 2);
    let mut t = pgpo::train::trainer::Trainer::new(cfg.clone()).unwrap();
    let e = t.evaluate(0, false).unwrap_err().to_string();
    assert!(e.contains("k >= 1"), "{e}");
    let _ = std::fs::remove_dir_all(&cfg.out_dir);
}

#[test]
fn a_tiny_model_of_absurd_width_and_counts_that_overflow_are_refused_before_allocating() {
    for (text, field) in [("[tiny]\nhidden = 349520", "tiny.hidden"), ("[tiny]\nlayers = 100000", "tiny.layers"), ("[rl]\nprompts = 4611686018427387904", "rl.prompts"), ("[rl]\ngroup = 4611686018427387904", "rl.group")] {
        let e = TrainConfig::parse(text, "t.toml").unwrap_err().to_string();
        assert!(e.contains(field), "{text}: {e}");
    }
}
