//! Fuzzing of every parser that user input reaches, as seeded arbitrary-bytes property tests
//! that run in `cargo test`: the safetensors and shard-index loader, config.json, the trainer's
//! TOML, JSONL rows, the answer extractor, the chat template, and image decoding. Each target
//! mutates real seed inputs (bit flips, byte edits, insertions, deletions, splices, and for
//! JSON and TOML, values of every type put into every field) and requires an `Ok` or a clean
//! `Err`: a panic fails the test and writes the input to target/fuzz-crashes/. The seeds are
//! fixed, so a run is repeatable; PGPO_FUZZ_SCALE=k runs k times as many cases.
//!
//! Regression tests for what the fuzzing found are at the end, named after the finding.

use pgpo::model::chat::Chat;
use pgpo::image::processor::{decode_image, preprocess, ImageProcessorConfig};
use pgpo::model::{ModelConfig, Weights};
use pgpo::rl::rewards::{equivalent, format_ok, last_boxed, reward, RewardConfig};
use pgpo::rng::Rng;
use pgpo::train::TrainConfig;
use pgpo::Device;
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen").join(rel)
}

fn cases(n: usize) -> usize {
    n * std::env::var("PGPO_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgpo-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `target` on `input`; a panic saves the input and fails with the case number.
fn run_case(name: &str, case: usize, input: &[u8], target: impl FnOnce()) {
    if std::env::var_os("PGPO_FUZZ_TRACE").is_some() {
        // Each input before it runs, to find one that aborts or hangs instead of panicking.
        let _ = std::fs::write(std::env::temp_dir().join(format!("pgpo-fuzz-{name}.last")), input);
    }
    if catch_unwind(AssertUnwindSafe(target)).is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{name}-{case}.bin"));
        let _ = std::fs::write(&path, input);
        panic!("fuzz target {name} panicked on case {case}; input saved to {}", path.display());
    }
}

const INTERESTING: [&[u8]; 14] = [b"0", b"-1", b"1e309", b"NaN", b"\"", b"{", b"}", b"[", b"\\", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"18446744073709551615", b"-9223372036854775808", b"\xe4\xb8\xad"];

/// One to four random edits of `seed`.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if b.is_empty() { 0 } else { rng.below(b.len() + 1) };
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = rng.below(256) as u8;
            }
            2 => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
                b.splice(at..at, bytes);
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at.min(end)..end);
            }
            4 => b.truncate(at),
            5 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                b.splice(at..at, piece.iter().copied());
            }
            _ if !b.is_empty() => {
                // Copy a chunk of the input somewhere else (repeats structure).
                let from = rng.below(b.len());
                let len = (1 + rng.below(32)).min(b.len() - from);
                let chunk = b[from..from + len].to_vec();
                b.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    b
}

/// A random JSON value of any type, with the sizes and signs that break arithmetic.
fn any_value(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(0),
        3 => Value::from(-1 - rng.below(1000) as i64),
        4 => Value::from(u64::MAX),
        5 => Value::from(1u64 << (20 + rng.below(40))),
        6 => Value::from(rng.below(200)),
        7 => serde_json::json!(rng.range(-2.0, 2.0)),
        8 => serde_json::json!(1e300),
        9 => Value::from("x"),
        10 => serde_json::json!([1, 2]),
        _ => serde_json::json!({}),
    }
}

/// Puts a random value into a random field (nested ones too), or removes the field.
fn mutate_json(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            match rng.below(5) {
                0 => {
                    map.remove(key);
                }
                1 | 2 => {
                    if let Some(child) = map.get_mut(key) {
                        mutate_json(rng, child);
                    }
                }
                _ => {
                    map.insert(key.clone(), any_value(rng));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            if rng.below(3) == 0 { items[i] = any_value(rng) } else { mutate_json(rng, &mut items[i]) }
        }
        other => *other = any_value(rng),
    }
}

#[test]
fn fuzz_config_json() {
    let mut rng = Rng::new(1);
    let seeds = [std::fs::read_to_string(fixture("base/config.json")).unwrap(), std::fs::read_to_string(fixture("flat_bf16/config.json")).unwrap()];
    for case in 0..cases(3000) {
        let seed = &seeds[case % 2];
        let text = if case % 3 == 0 {
            String::from_utf8_lossy(&mutate(&mut rng, seed.as_bytes())).into_owned()
        } else {
            let mut v: Value = serde_json::from_str(seed).unwrap();
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut rng, &mut v);
            }
            v.to_string()
        };
        run_case("config_json", case, text.as_bytes(), || {
            if let Ok(c) = ModelConfig::parse(&text, "config.json") {
                // A config that parses is one the model can use.
                let _ = (c.text.head_dim(), c.vision.patch_dim(), c.vision_token_ids());
                let _ = pgpo::model::names::parameters(&c);
            }
        });
    }
}

/// TOML values of every type, for every field of the trainer config.
fn any_toml(rng: &mut Rng) -> toml::Value {
    match rng.below(9) {
        0 => toml::Value::Integer(0),
        1 => toml::Value::Integer(-1),
        2 => toml::Value::Integer(i64::MAX),
        3 => toml::Value::Integer(rng.below(100) as i64),
        4 => toml::Value::Float(f64::NAN),
        5 => toml::Value::Float(rng.range(-1.0, 2.0).into()),
        6 => toml::Value::Boolean(true),
        7 => toml::Value::String("grpo".into()),
        _ => toml::Value::String(String::new()),
    }
}

#[test]
fn fuzz_trainer_toml() {
    let mut rng = Rng::new(2);
    let full = toml::to_string(&TrainConfig::default()).unwrap();
    let table: toml::Table = full.parse().unwrap();
    for case in 0..cases(3000) {
        let text = if case % 3 == 0 {
            String::from_utf8_lossy(&mutate(&mut rng, full.as_bytes())).into_owned()
        } else {
            let mut t = table.clone();
            for _ in 0..1 + rng.below(3) {
                let sections: Vec<String> = t.iter().filter(|(_, v)| v.is_table()).map(|(k, _)| k.clone()).collect();
                let section = &sections[rng.below(sections.len())];
                if let Some(toml::Value::Table(s)) = t.get_mut(section) {
                    let keys: Vec<String> = s.keys().cloned().collect();
                    let key = keys[rng.below(keys.len())].clone();
                    s.insert(key, any_toml(&mut rng));
                }
            }
            toml::to_string(&t).unwrap()
        };
        run_case("trainer_toml", case, text.as_bytes(), || {
            let _ = TrainConfig::parse(&text, "fuzz.toml");
        });
    }
}

#[test]
fn fuzz_jsonl_rows() {
    let mut rng = Rng::new(3);
    let dir = scratch("jsonl");
    std::fs::copy(fixture("processor/odd.png"), dir.join("a.png")).unwrap();
    let seed = r#"{"images": ["a.png"], "problem": "How many circles?", "answer": "3"}"#;
    let path = dir.join("data.jsonl");
    for case in 0..cases(400) {
        let lines: Vec<Vec<u8>> = (0..1 + rng.below(4))
            .map(|_| {
                if rng.below(2) == 0 {
                    mutate(&mut rng, seed.as_bytes())
                } else {
                    let mut v: Value = serde_json::from_str(seed).unwrap();
                    mutate_json(&mut rng, &mut v);
                    v.to_string().into_bytes()
                }
            })
            .collect();
        let bytes = lines.join(&b'\n');
        std::fs::write(&path, &bytes).unwrap();
        run_case("jsonl_rows", case, &bytes, || {
            let (rows, skipped) = pgpo::train::data::read_jsonl(&path).unwrap();
            let nonblank = bytes.split(|&b| b == b'\n').filter(|l| !String::from_utf8_lossy(l).trim().is_empty()).count();
            assert_eq!(rows.len() + skipped.len(), nonblank, "every line is a row or a reported skip");
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fuzz_answer_extractor() {
    let mut rng = Rng::new(4);
    let parts = ["\\boxed{", "}", "{", "\\frac", "\\dfrac", "1", "2", "/", ".", "-", "e", "5", " ", "<think>", "</think>", "é", "中", "\u{301}", "\\", "$", "%", "\\text{", "x^2", ",", "0.5", "1e999", "\n"];
    let c = RewardConfig { accuracy_weight: 0.9, format_weight: 0.1 };
    for case in 0..cases(20000) {
        let make = |rng: &mut Rng| -> String { (0..rng.below(12)).map(|_| parts[rng.below(parts.len())]).collect() };
        let (text, truth) = (make(&mut rng), make(&mut rng));
        let input = format!("{text}\u{0}{truth}");
        run_case("answer_extractor", case, input.as_bytes(), || {
            let r = reward(&text, &truth, &c);
            assert!(r.total.is_finite());
            let _ = (last_boxed(&text), format_ok(&text), equivalent(&text, &truth));
            // Equivalence is symmetric on what both sides parse to.
            if equivalent(&text, &truth) {
                assert!(equivalent(&truth, &text), "{text:?} vs {truth:?}");
            }
        });
    }
}

#[test]
fn fuzz_chat_template() {
    let mut rng = Rng::new(5);
    let chat = Chat::load(&fixture("processor")).unwrap();
    let dir = scratch("chat");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("processor").join(f), dir.join(f)).unwrap();
    }
    let template: Value = serde_json::from_str(&std::fs::read_to_string(fixture("processor/chat_template.json")).unwrap()).unwrap();
    let seed = template["chat_template"].as_str().unwrap().to_string();
    let message = serde_json::json!([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]);
    for case in 0..cases(600) {
        // Half the cases mutate the template, half the messages rendered with the real one.
        let input = if case % 2 == 0 {
            let t = String::from_utf8_lossy(&mutate(&mut rng, seed.as_bytes())).into_owned();
            std::fs::write(dir.join("chat_template.json"), serde_json::json!({ "chat_template": t }).to_string()).unwrap();
            t
        } else {
            let mut m = message.clone();
            mutate_json(&mut rng, &mut m);
            m.to_string()
        };
        run_case("chat_template", case, input.as_bytes(), || {
            if case % 2 == 0 {
                if let Ok(c) = Chat::load(&dir) {
                    let _ = c.render(&message, true).and_then(|s| c.encode(&s));
                }
            } else if let Ok(m) = serde_json::from_str::<Value>(&input) {
                let _ = chat.render(&m, true);
            }
            let _ = chat.prompt_ids(&String::from_utf8_lossy(&mutate(&mut Rng::new(case as u64), b"<|vision_start|><|image_pad|><|vision_end|>hi")), &[[1, 4, 4]], 2);
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fuzz_image_decoding() {
    let mut rng = Rng::new(6);
    let seeds: Vec<Vec<u8>> = ["small.png", "alpha.png", "odd.jpg"].iter().map(|f| std::fs::read(fixture("processor").join(f)).unwrap()).collect();
    let c = ImageProcessorConfig::load(&fixture("processor")).unwrap();
    for case in 0..cases(1500) {
        let seed = &seeds[case % seeds.len()];
        // Most edits go to the headers, where sizes and chunk lengths live.
        let head = seed.len().min(600);
        let mut bytes = mutate(&mut rng, &seed[..head]);
        bytes.extend_from_slice(&seed[head..]);
        run_case("image_decoding", case, &bytes, || {
            if let Ok(img) = decode_image(&bytes) {
                assert!(img.width > 0 && img.height > 0 && img.data.len() == img.width * img.height * 3);
                let _ = preprocess(&img, &c);
            }
        });
    }
}

#[test]
fn fuzz_safetensors_and_index_loader() {
    let mut rng = Rng::new(7);
    let single = std::fs::read(fixture("base/model.safetensors")).unwrap();
    let header_len = 8 + u64::from_le_bytes(single[..8].try_into().unwrap()) as usize;
    let index = std::fs::read_to_string(fixture("flat_bf16/model.safetensors.index.json")).unwrap();
    let (a, b) = (scratch("st-single"), scratch("st-sharded"));
    std::fs::copy(fixture("base/config.json"), a.join("config.json")).unwrap();
    for e in std::fs::read_dir(fixture("flat_bf16")).unwrap().flatten() {
        std::fs::copy(e.path(), b.join(e.file_name())).unwrap();
    }
    for case in 0..cases(300) {
        let (dir, input) = if case % 2 == 0 {
            // Mostly the JSON header (names, dtypes, shapes, offsets), sometimes the data.
            let cut = if rng.below(4) == 0 { single.len() } else { header_len };
            let mut bytes = mutate(&mut rng, &single[..cut]);
            bytes.extend_from_slice(&single[cut..]);
            std::fs::write(a.join("model.safetensors"), &bytes).unwrap();
            (&a, bytes)
        } else {
            let text = if rng.below(2) == 0 {
                String::from_utf8_lossy(&mutate(&mut rng, index.as_bytes())).into_owned()
            } else {
                let mut v: Value = serde_json::from_str(&index).unwrap();
                mutate_json(&mut rng, &mut v);
                v.to_string()
            };
            std::fs::write(b.join("model.safetensors.index.json"), &text).unwrap();
            (&b, text.into_bytes())
        };
        run_case("safetensors_loader", case, &input, || {
            if let Ok(w) = Weights::load(dir, &Device::Cpu) {
                assert!(w.tensors().iter().all(|t| t.to_vec().unwrap().iter().all(|x| x.is_finite())));
            }
        });
    }
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// Found by fuzz_jsonl_rows: one line of invalid UTF-8 made the whole file unreadable.
#[test]
fn a_jsonl_line_that_is_not_utf8_is_skipped_not_fatal() {
    let dir = scratch("jsonl-utf8");
    std::fs::copy(fixture("processor/odd.png"), dir.join("a.png")).unwrap();
    let good = br#"{"images": ["a.png"], "problem": "How many circles?", "answer": "3"}"#;
    let bytes = [&good[..], b"\n{\"images\": \xff\xfe}\n", &good[..]].concat();
    std::fs::write(dir.join("d.jsonl"), bytes).unwrap();
    let (rows, skipped) = pgpo::train::data::read_jsonl(&dir.join("d.jsonl")).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(skipped, vec![(2, "is not UTF-8 text".to_string())]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by fuzz_config_json: num_hidden_layers = 2^40 passed the checks and the parameter
/// list then asked for terabytes. Sizes beyond any real model are now errors naming the field.
#[test]
fn a_config_with_an_absurd_layer_count_is_refused_not_allocated() {
    let text = std::fs::read_to_string(fixture("flat_bf16/config.json")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["num_hidden_layers"] = Value::from(1u64 << 40);
    let e = ModelConfig::parse(&v.to_string(), "config.json").unwrap_err().to_string();
    assert!(e.contains("num_hidden_layers") && e.contains("at most 1024"), "{e}");
    v["num_hidden_layers"] = Value::from(2);
    v["vocab_size"] = Value::from(u64::MAX);
    let e = ModelConfig::parse(&v.to_string(), "config.json").unwrap_err().to_string();
    assert!(e.contains("vocab_size"), "{e}");
}

/// Image headers that claim a huge or zero size are errors, never an attempt to allocate.
#[test]
fn images_whose_headers_claim_huge_or_zero_sizes_are_errors() {
    let jpg = std::fs::read(fixture("processor/odd.jpg")).unwrap();
    // The baseline frame header: FF C0, length (2), precision (1), height (2), width (2).
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG");
    for (h, w) in [(65535u16, 65535u16), (0, 100), (100, 0)] {
        let mut bytes = jpg.clone();
        bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        assert!(decode_image(&bytes).is_err(), "a JPEG claiming {w}x{h}");
    }
    let png = std::fs::read(fixture("processor/small.png")).unwrap();
    // IHDR: width and height, big-endian, at bytes 16..24 (the CRC no longer matches either).
    for (w, h) in [(1u32 << 30, 1u32 << 30), (0, 10)] {
        let mut bytes = png.clone();
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        assert!(decode_image(&bytes).is_err(), "a PNG claiming {w}x{h}");
    }
}

/// A template that never ends (a checkpoint's template is code) is an error, not a hang.
#[test]
fn an_endless_chat_template_is_an_error_not_a_hang() {
    let dir = scratch("chat-endless");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("processor").join(f), dir.join(f)).unwrap();
    }
    let endless = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
    std::fs::write(dir.join("chat_template.json"), serde_json::json!({ "chat_template": endless }).to_string()).unwrap();
    let chat = Chat::load(&dir).unwrap();
    let e = chat.render(&serde_json::json!([]), true).unwrap_err().to_string();
    assert!(e.contains("chat_template") && e.contains("fuel"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
