//! The adapter commands end to end: `pgpo forward --adapter` (peft's logits, loss and one
//! gradient per key of adapter_model.safetensors, none for the base), `pgpo generate
//! --adapter`, `pgpo merge` (the base's dtype and shards; the weights equal W + s B A computed
//! here in f64 from the files), and adapters that do not fit the base refused with the key named.

use half::bf16;
use pgpo::io::TensorFile;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgpo-lora-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn pgpo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgpo")).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every tensor of the safetensors files in `dir` (or one file), widened to f64.
fn tensors(path: &Path) -> HashMap<String, (Dtype, Vec<usize>, Vec<f64>)> {
    let files: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "safetensors")).collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = HashMap::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for (n, v) in SafeTensors::deserialize(&bytes).unwrap().tensors() {
            let data = match v.dtype() {
                Dtype::F32 => v.data().chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect(),
                Dtype::BF16 => v.data().chunks_exact(2).map(|c| f64::from(bf16::from_le_bytes(c.try_into().unwrap()).to_f32())).collect(),
                _ => continue,
            };
            out.insert(n, (v.dtype(), v.shape().to_vec(), data));
        }
    }
    out
}

#[test]
fn forward_with_an_adapter_writes_peft_logits_and_one_gradient_per_adapter_key() {
    let out = scratch("forward.safetensors");
    let o = pgpo(&["forward", "--backend", "cpu", "--model", s(&fixture("base")), "--adapter", s(&fixture("lora_list")), "--inputs", s(&fixture("lora_list.safetensors")), "--out", s(&out), "--labels"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = tensors(&out);
    let want = tensors(&fixture("lora_list.safetensors"));
    let keys = tensors(&fixture("lora_list/adapter_model.safetensors"));
    let grads: Vec<&String> = got.keys().filter(|k| k.starts_with("grad.")).collect();
    // Exactly the adapter's keys: nothing for the frozen base.
    assert_eq!(grads.len(), keys.len());
    for k in keys.keys() {
        let (g, w) = (&got[&format!("grad.{k}")].2, &want[&format!("grad.{k}")].2);
        let scale = w.iter().fold(0f64, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{k}: no signal");
        let err = g.iter().zip(w).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-3 * scale, "{k}: off by {err} of {scale}");
    }
    std::fs::remove_file(out).unwrap();
}

#[test]
fn generate_with_an_adapter_differs_from_the_base_alone() {
    let run = |adapter: bool, tag: &str| {
        let (out, base, inputs, a) = (scratch(tag), fixture("base"), fixture("lora_list.safetensors"), fixture("lora_list"));
        let mut args = vec!["generate", "--backend", "cpu", "--model", s(&base), "--inputs", s(&inputs), "--out", s(&out), "--max-new-tokens", "6", "--stop-id", "2"];
        if adapter {
            args.extend(["--adapter", s(&a)]);
        }
        let o = pgpo(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (_, seqs) = TensorFile::open(&out).unwrap().i64("sequences", 2).unwrap();
        std::fs::remove_file(out).unwrap();
        seqs
    };
    // The adapter moves the logits by about 13: the greedy tokens cannot all stay the same.
    assert_ne!(run(true, "gen-a.safetensors"), run(false, "gen-b.safetensors"));
}

/// The merged weights against W + s B A formed here in f64 from the files and rounded to the
/// base's dtype. Catches a merge that transposes B A, forgets the scale (rsLoRA's or a
/// pattern's), drops the vision layers or writes another dtype or layout.
#[test]
fn merge_writes_w_plus_scaled_ba_in_the_base_layout() {
    // (base, adapter, scale of every layer as the adapter_config says)
    let cases: [(&str, &str, fn(&str) -> f64); 2] = [
        ("flat_bf16", "lora_regex", |_| 6.0 / 2.0), // rsLoRA: alpha 6 / sqrt(r 4)
        ("base", "lora_list", |m| if m.ends_with("qkv") { 3.0 / 4.0 } else if m.ends_with("down_proj") { 8.0 / 2.0 } else { 8.0 / 4.0 }),
    ];
    for (base, adapter, scale) in cases {
        let out = scratch(&format!("merged-{base}"));
        let o = pgpo(&["merge", "--model", s(&fixture(base)), "--adapter", s(&fixture(adapter)), "--out", s(&out)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let files = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.ends_with(".safetensors") || n.ends_with(".json")).collect();
            v.sort();
            v
        };
        assert_eq!(files(&out), files(&fixture(base)), "{base}: the merged checkpoint's files");
        let (b, m, a) = (tensors(&fixture(base)), tensors(&out), tensors(&fixture(&format!("{adapter}/adapter_model.safetensors"))));
        let mut changed = 0;
        for (name, (dtype, shape, w)) in &b {
            let (mdtype, mshape, merged) = &m[name];
            assert_eq!((mdtype, mshape), (dtype, shape), "{name}");
            let module = name.strip_suffix(".weight").unwrap_or(name);
            // The adapter may name the module as published checkpoints do or as transformers 5 does.
            let nested = if let Some(r) = module.strip_prefix("visual.") { format!("model.visual.{r}") } else { module.replacen("model.", "model.language_model.", 1) };
            let key = |ab: &str| [module.to_string(), nested.clone()].into_iter().map(|m| format!("base_model.model.{m}.lora_{ab}.weight")).find(|k| a.contains_key(k));
            let want: Vec<f64> = match (key("A"), key("B")) {
                (Some(ka), Some(kb)) => {
                    changed += 1;
                    let ((_, sa, av), (_, sb, bv)) = (&a[&ka], &a[&kb]);
                    let (r, inp, out_) = (sa[0], sa[1], sb[0]);
                    (0..out_ * inp).map(|i| {
                        let (o, c) = (i / inp, i % inp);
                        w[i] + scale(module) * (0..r).map(|k| bv[o * r + k] * av[k * inp + c]).sum::<f64>()
                    }).collect()
                }
                _ => w.clone(),
            };
            let round = |x: f64| if *dtype == Dtype::BF16 { f64::from(bf16::from_f64(x).to_f32()) } else { f64::from(x as f32) };
            let largest = want.iter().fold(0f64, |m, x| m.max(x.abs()));
            let bad = want.iter().zip(merged).filter(|(x, y)| {
                let r = round(**x);
                // bf16: the f32 sum may land on the other side of a rounding boundary (one
                // ulp); f32: the f32 product and sum round a few times, against the tensor's size.
                let tol = if *dtype == Dtype::BF16 { r.abs() * 2f64.powi(-7) } else { largest * 1e-6 };
                (r - **y).abs() > tol
            }).count();
            assert_eq!(bad, 0, "{base}: {name}: {bad} values are not W + s B A");
        }
        assert_eq!(changed, a.len() / 2, "{base}: every adapted layer merged");
        std::fs::remove_dir_all(out).unwrap();
    }
}

/// Adapters that do not fit the base: the error names the key or field, exit non-zero, and
/// nothing is written.
#[test]
fn adapters_that_do_not_fit_the_base_are_refused_with_the_key_named() {
    let src = tensors(&fixture("lora_list/adapter_model.safetensors"));
    let config = std::fs::read_to_string(fixture("lora_list/adapter_config.json")).unwrap();
    let write = |tag: &str, edit: &dyn Fn(&mut Vec<(String, Vec<usize>, Vec<f32>)>, &mut serde_json::Value)| -> PathBuf {
        let d = scratch(tag);
        std::fs::create_dir_all(&d).unwrap();
        let mut arrays: Vec<(String, Vec<usize>, Vec<f32>)> = src.iter().map(|(n, (_, s, v))| (n.clone(), s.clone(), v.iter().map(|&x| x as f32).collect())).collect();
        arrays.sort_by(|a, b| a.0.cmp(&b.0));
        let mut cfg: serde_json::Value = serde_json::from_str(&config).unwrap();
        edit(&mut arrays, &mut cfg);
        let bytes: Vec<Vec<u8>> = arrays.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views: Vec<_> = arrays.iter().zip(&bytes).map(|((n, s, _), b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, None, &d.join("adapter_model.safetensors")).unwrap();
        std::fs::write(d.join("adapter_config.json"), cfg.to_string()).unwrap();
        d
    };
    let q = "base_model.model.model.language_model.layers.1.self_attn.q_proj.lora_A.weight";
    let cases: Vec<(&str, Box<dyn Fn(&mut Vec<(String, Vec<usize>, Vec<f32>)>, &mut serde_json::Value)>, &str)> = vec![
        ("shape", Box::new(|a, _| {
            let t = a.iter_mut().find(|t| t.0 == q).unwrap();
            t.1 = vec![3, 32];
            t.2.truncate(96);
        }), q),
        ("missing", Box::new(|a, _| a.retain(|t| t.0 != q)), "layers.1.self_attn.q_proj.lora_A.weight"),
        ("no-layer", Box::new(|a, _| {
            let t = a.iter().find(|t| t.0 == q).unwrap().clone();
            a.push((t.0.replace("layers.1.", "layers.7."), t.1, t.2));
        }), "layers.7.self_attn.q_proj.lora_A.weight"),
        ("untargeted", Box::new(|_, c| c["target_modules"] = serde_json::json!(["k_proj"])), "target_modules"),
        ("dora", Box::new(|_, c| c["use_dora"] = serde_json::json!(true)), "use_dora"),
    ];
    for (tag, edit, named) in cases {
        let d = write(tag, &*edit);
        let out = scratch(&format!("{tag}-out.safetensors"));
        let o = pgpo(&["forward", "--backend", "cpu", "--model", s(&fixture("base")), "--adapter", s(&d), "--inputs", s(&fixture("lora_list.safetensors")), "--out", s(&out)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{tag}: {err}");
        assert!(err.contains(named) && !err.contains("panicked"), "{tag}: {err}");
        assert!(!out.exists(), "{tag}: wrote output");
        std::fs::remove_dir_all(d).unwrap();
    }
}
