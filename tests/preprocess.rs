//! Image preprocessing, tokenizer and chat template against transformers' Qwen2_5_VLProcessor
//! with its PIL image processor (tests/fixtures/qwen/processor, made by
//! scripts/make_hf_fixtures.py): PNG and JPEG images of odd sizes, one below min_pixels and
//! one above max_pixels, one with alpha, one with an Exif orientation. Through the library
//! and through `pgpo preprocess`.

use pgpo::io::TensorFile;
use pgpo::model::chat::Chat;
use pgpo::image::processor::{decode_image, load_image, preprocess, ImageProcessorConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen/processor")
}

/// (image file, prompt).
fn cases() -> Vec<(String, String)> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap();
    json.as_array().unwrap().iter().map(|c| (c["image"].as_str().unwrap().to_string(), c["prompt"].as_str().unwrap().to_string())).collect()
}

struct Expected {
    ids: Vec<i64>,
    pixels: Vec<f32>,
    grid: Vec<i64>,
}

fn expected(image: &str) -> Expected {
    let f = TensorFile::open(&dir().join(format!("{image}.safetensors"))).unwrap();
    Expected { ids: f.i64("input_ids", 2).unwrap().1, pixels: f.f32("pixel_values", 2).unwrap().1, grid: f.i64("image_grid_thw", 2).unwrap().1 }
}

/// (max, mean) |a - b|.
fn diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let d: Vec<f32> = a.iter().zip(b).map(|(x, y)| (x - y).abs()).collect();
    (d.iter().cloned().fold(0.0, f32::max), d.iter().sum::<f32>() / d.len() as f32)
}

/// Bit-for-bit equality, as the README states: PIL's resampler is reproduced exactly and the
/// JPEG decoder is bit-exact with Pillow's libjpeg-turbo. Catches any rounding difference,
/// which a one-level tolerance would let through.
fn assert_identical(image: &str, got: &[f32], want: &[f32]) {
    let (max, mean) = diff(got, want);
    assert!(got.len() == want.len() && got.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()), "{image}: pixel values differ (max |d| {max}, mean {mean})");
}

#[test]
fn pixels_and_grids_equal_the_pil_processor_to_the_last_bit() {
    let cfg = ImageProcessorConfig::load(&dir()).unwrap();
    assert_eq!((cfg.min_pixels, cfg.max_pixels), (28 * 28 * 4, 28 * 28 * 16));
    for (image, _) in cases() {
        let want = expected(&image);
        let got = preprocess(&load_image(&dir().join(&image)).unwrap(), &cfg).unwrap();
        let grid: Vec<i64> = got.grid.iter().map(|&g| g as i64).collect();
        assert_eq!(grid, want.grid, "{image}: grid");
        assert_identical(&image, &got.pixels, &want.pixels);
    }
}

/// Every Exif orientation (1-8), in a JPEG (APP1) and in a PNG (eXIf), is turned upright
/// exactly as PIL's ImageOps.exif_transpose turns it, which transformers' load_image applies
/// before its processor sees a file: a phone photo is not fed to the model on its side.
#[test]
fn exif_orientation_turns_the_image_as_pil_does() {
    let d = dir().join("orientation");
    for k in 1..=8 {
        for ext in ["jpg", "png"] {
            let got = load_image(&d.join(format!("{k}.{ext}"))).unwrap();
            let want = load_image(&d.join(format!("{k}.{ext}.upright.png"))).unwrap();
            // The stored image is 9 x 5; orientations 5-8 turn it a quarter.
            assert_eq!((want.width, want.height), if k >= 5 { (5, 9) } else { (9, 5) }, "{k}.{ext}: fixture");
            assert_eq!((got.width, got.height), (want.width, want.height), "{k}.{ext}: size");
            assert!(got.data == want.data, "{k}.{ext}: pixels differ from PIL's exif_transpose");
        }
    }
}

#[test]
fn templated_prompt_ids_equal_the_processor_ids() {
    let chat = Chat::load(&dir()).unwrap();
    assert!(chat.template_source.ends_with("chat_template.json"), "{}", chat.template_source);
    for (image, prompt) in cases() {
        let want = expected(&image);
        let grid = [want.grid[0] as usize, want.grid[1] as usize, want.grid[2] as usize];
        let ids: Vec<i64> = chat.prompt_ids(&prompt, &[grid], 2).unwrap().iter().map(|&i| i64::from(i)).collect();
        assert_eq!(ids, want.ids, "{image}");
    }
}

#[test]
fn a_checkpoint_without_a_template_falls_back_to_qwen2_vl() {
    let tmp = std::env::temp_dir().join(format!("pgpo-notemplate-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(dir().join("tokenizer.json"), tmp.join("tokenizer.json")).unwrap();
    let chat = Chat::load(&tmp).unwrap();
    assert!(chat.template_source.contains("Qwen2-VL"), "{}", chat.template_source);
    let (image, prompt) = &cases()[0];
    let want = expected(image);
    let grid = [want.grid[0] as usize, want.grid[1] as usize, want.grid[2] as usize];
    let ids: Vec<i64> = chat.prompt_ids(prompt, &[grid], 2).unwrap().iter().map(|&i| i64::from(i)).collect();
    assert_eq!(ids, want.ids);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn corrupt_and_empty_images_are_errors_naming_the_file() {
    let tmp = std::env::temp_dir().join(format!("pgpo-badimage-{}.png", std::process::id()));
    let mut bytes = std::fs::read(dir().join("odd.png")).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&tmp, &bytes).unwrap();
    let err = load_image(&tmp).err().expect("a truncated PNG must not decode").to_string();
    assert!(err.contains(&tmp.display().to_string()) && err.contains("decode"), "{err}");
    std::fs::remove_file(&tmp).unwrap();
    let err = decode_image(b"not an image at all").err().expect("garbage must not decode").to_string();
    assert!(err.contains("image"), "{err}");
    let err = load_image(Path::new("/nonexistent/pgpo.png")).err().unwrap().to_string();
    assert!(err.contains("/nonexistent/pgpo.png"), "{err}");
}

#[test]
fn preprocessor_config_errors_name_the_field() {
    for (text, field) in [
        (r#"{"min_pixels": "many"}"#, "min_pixels"),
        (r#"{"min_pixels": 5000, "max_pixels": 4000}"#, "min_pixels"),
        (r#"{"resample": 2}"#, "resample"),
        (r#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
        (r#"{"patch_size": 0}"#, "patch_size"),
    ] {
        let err = ImageProcessorConfig::parse(text, "preprocessor_config.json").unwrap_err().to_string();
        assert!(err.contains("preprocessor_config.json") && err.contains(field), "{text}: {err}");
    }
    let published = r#"{"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
        "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"}"#;
    let c = ImageProcessorConfig::parse(published, "p.json").unwrap();
    assert_eq!((c.min_pixels, c.max_pixels), (3136, 12_845_056));
    // smart_resize of transformers for a 1000 x 700 photo and for a half-way case (Python's
    // round half to even: 42 / 28 = 1.5 rounds to 2, 70 / 28 = 2.5 rounds to 2).
    assert_eq!(c.smart_resize(700, 1000).unwrap(), (700, 1008));
    assert_eq!(c.smart_resize(42, 70).unwrap(), (56, 56));
}

#[test]
fn pgpo_preprocess_writes_what_the_processor_gives() {
    let tmp = std::env::temp_dir().join(format!("pgpo-preprocess-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for (image, prompt) in cases() {
        let out = tmp.join(format!("{image}.safetensors"));
        let run = Command::new(env!("CARGO_BIN_EXE_pgpo"))
            .args(["preprocess", "--model"])
            .arg(dir())
            .arg("--image")
            .arg(dir().join(&image))
            .args(["--prompt", &prompt, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let f = TensorFile::open(&out).unwrap();
        let want = expected(&image);
        assert_eq!(f.i64("input_ids", 2).unwrap().1, want.ids, "{image}");
        assert_eq!(f.i64("image_grid_thw", 2).unwrap().1, want.grid, "{image}");
        assert_identical(&image, &f.f32("pixel_values", 2).unwrap().1, &want.pixels);
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_pgpo"))
        .args(["preprocess", "--model"])
        .arg(dir())
        .arg("--image")
        .arg(dir().join("tokenizer.json"))
        .args(["--prompt", "hi", "--out"])
        .arg(tmp.join("bad.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(err.contains("tokenizer.json") && !tmp.join("bad.safetensors").exists(), "{err}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
