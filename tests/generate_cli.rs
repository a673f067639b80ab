//! `pgpo generate`: the cross-check form against transformers' greedy generate, and a user's
//! question about a PNG answered by a checkpoint with its own tokenizer, template and image
//! processor; a corrupt image, a missing weights file, a tokenizer that does not fit the model
//! and a prompt over the context length are clear errors with exit code 1.

use pgpo::io::TensorFile;
use pgpo::model::{ModelConfig, Weights};
use pgpo::Device;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen")
}

fn pgpo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgpo")).args(args).output().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgpo-gencli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn batch_form_writes_transformers_greedy_sequences() {
    let dir = tmp("batch");
    for (case, ckpt) in [("padded_batch", "base"), ("tied_gqa_off", "tied")] {
        let g = TensorFile::open(&fixtures().join(format!("generate_{case}.safetensors"))).unwrap();
        let (shape, want) = g.i64("sequences", 2).unwrap();
        let eos = g.i64("eos_token_id", 1).unwrap().1[0].to_string();
        let t = TensorFile::open(&fixtures().join(format!("{case}.safetensors"))).unwrap().i64("input_ids", 2).unwrap().0[1];
        let out = dir.join(format!("{case}.safetensors"));
        let n = (shape[1] - t).to_string();
        let run = pgpo(&[
            "generate",
            "--model",
            fixtures().join(ckpt).to_str().unwrap(),
            "--inputs",
            fixtures().join(format!("{case}.safetensors")).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--max-new-tokens",
            &n,
            "--greedy",
            "--stop-id",
            &eos,
            "--pad-id",
            "0",
            "--backend",
            "cpu",
        ]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let (got_shape, got) = TensorFile::open(&out).unwrap().i64("sequences", 2).unwrap();
        assert_eq!((got_shape, got), (shape, want), "{case}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A random checkpoint shaped for the processor fixture's tokenizer (400 ids, specials 0-6,
/// 14-pixel patches), saved with the tokenizer, template and image processor beside it.
fn chat_checkpoint(name: &str, vocab: usize, context: usize) -> PathBuf {
    let dir = tmp(name);
    let text = std::fs::read_to_string(fixtures().join("flat_bf16/config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (key, v) in [("vocab_size", vocab), ("max_position_embeddings", context), ("eos_token_id", 2), ("pad_token_id", 0), ("bos_token_id", 1)] {
        json[key] = v.into();
    }
    for (key, v) in [("vision_start_token_id", 3), ("vision_end_token_id", 4), ("image_token_id", 5), ("video_token_id", 6)] {
        json[key] = v.into();
    }
    let text = serde_json::to_string_pretty(&json).unwrap();
    let config = ModelConfig::parse(&text, "config.json").unwrap();
    Weights::random(&config, &text, 5, &Device::Cpu).unwrap().save(&dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.json", "preprocessor_config.json"] {
        std::fs::copy(fixtures().join("processor").join(f), dir.join(f)).unwrap();
    }
    dir
}

fn ask(model: &Path, image: &Path, prompt: &str) -> Output {
    pgpo(&["generate", "--model", model.to_str().unwrap(), "--image", image.to_str().unwrap(), "--prompt", prompt, "--max-new-tokens", "6", "--backend", "cpu"])
}

#[test]
fn a_png_question_is_answered_and_bad_inputs_are_clear_errors() {
    let model = chat_checkpoint("answer", 400, 512);
    let png = fixtures().join("processor/odd.png");
    let run = ask(&model, &png, "How many red circles are there?");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("tokens"), "{err}");
    // Sampling with a seed repeats.
    let sample = |seed: &str| {
        let o = pgpo(&["generate", "--model", model.to_str().unwrap(), "--image", png.to_str().unwrap(), "--prompt", "Is there a triangle?", "--max-new-tokens", "8", "--temperature", "1.0", "--top-p", "0.9", "--seed", seed, "--backend", "cpu"]);
        assert!(o.status.success());
        o.stdout
    };
    assert_eq!(sample("4"), sample("4"));

    let corrupt = model.join("corrupt.png");
    let bytes = std::fs::read(&png).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let run = ask(&model, &corrupt, "What is this?");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("corrupt.png"), "{err}");

    let long = "circle ".repeat(600);
    let run = ask(&model, &png, &long);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("context"), "{err}");

    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let run = ask(&model, &png, "What is this?");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains(&model.display().to_string()), "{err}");
    std::fs::remove_dir_all(&model).unwrap();
}

#[test]
fn a_tokenizer_larger_than_the_vocabulary_is_refused() {
    let model = chat_checkpoint("small_vocab", 128, 512);
    let run = ask(&model, &fixtures().join("processor/odd.png"), "Hi");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(err.contains("tokenizer.json") && err.contains("vocab_size"), "{err}");
    std::fs::remove_dir_all(&model).unwrap();
}
