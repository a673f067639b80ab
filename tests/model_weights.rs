//! Loading and saving Qwen2.5-VL checkpoints: the layout read is the layout written (files,
//! shards, tensor names, dtypes, config), byte for byte; and a broken checkpoint is an error
//! naming the file and the tensor.

use pgpo::model::names::Naming;
use pgpo::model::Weights;
use pgpo::tensor::Dtype;
use pgpo::Device;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgpo-weights-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// name -> (file, dtype, shape, bytes) over every safetensors file in `dir`.
fn contents(dir: &Path) -> BTreeMap<String, (String, String, Vec<usize>, Vec<u8>)> {
    let mut all = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            let bytes = std::fs::read(&p).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            for (n, v) in st.tensors() {
                let file = p.file_name().unwrap().to_string_lossy().to_string();
                all.insert(n, (file, format!("{:?}", v.dtype()), v.shape().to_vec(), v.data().to_vec()));
            }
        }
    }
    all
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn saving_writes_back_the_layout_it_loaded_byte_for_byte() {
    for ckpt in ["flat_bf16", "base", "tied"] {
        let w = Weights::load(&fixture(ckpt), &Device::Cpu).unwrap();
        let out = scratch(&format!("save-{ckpt}"));
        w.save(&out).unwrap();
        let (a, b) = (contents(&fixture(ckpt)), contents(&out));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{ckpt}: tensor names");
        for (name, x) in &a {
            assert!(x == &b[name], "{ckpt}: `{name}` differs in file, dtype, shape or bytes");
        }
        let config = |d: &Path| std::fs::read_to_string(d.join("config.json")).unwrap();
        assert_eq!(config(&fixture(ckpt)), config(&out), "{ckpt}: config.json");
        let index = out.join("model.safetensors.index.json");
        assert_eq!(index.exists(), ckpt == "flat_bf16", "{ckpt}: the index exactly when sharded");
        assert!(!std::fs::read_dir(&out).unwrap().any(|e| e.unwrap().path().to_string_lossy().contains("tmp-pgpo")), "no temporary file left");
        let again = Weights::load(&out, &Device::Cpu).unwrap();
        for (n, t) in w.names().iter().zip(w.tensors()) {
            assert_eq!(t.to_vec().unwrap(), again.get(n).unwrap().to_vec().unwrap(), "{ckpt}: {n} reloads");
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// Catches a bf16 checkpoint widened on load (twice the bytes) or a reference copy that
/// differs from what its saved copy loads back: matrices stay bf16, vectors become f32,
/// `load_f32` widens every value exactly, and `stored()` of the f32 weights equals the load.
#[test]
fn bf16_sharded_published_checkpoint_loads_as_stored_or_widened() {
    let w = Weights::load(&fixture("flat_bf16"), &Device::Cpu).unwrap();
    assert_eq!(w.layout.naming, Naming::Published);
    assert_eq!(w.layout.files.len(), 2);
    assert_eq!(w.config.vision.patch_dim(), 1176);
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert_eq!(w.get(q).unwrap().dtype(), Dtype::BF16, "a matrix keeps its stored dtype");
    assert_eq!(w.get("model.norm.weight").unwrap().dtype(), Dtype::F32, "a norm weight is f32");
    let wide = Weights::load_f32(&fixture("flat_bf16"), &Device::Cpu).unwrap();
    assert!(wide.tensors().iter().all(|t| t.dtype() == Dtype::F32));
    // Every bf16 value widens exactly: the low 16 bits of each f32 are zero.
    let t = wide.get(q).unwrap().to_vec().unwrap();
    assert!(t.iter().all(|x| x.to_bits() & 0xffff == 0) && t.iter().any(|&x| x != 0.0));
    assert_eq!(t, w.get(q).unwrap().to_vec().unwrap());
    let half: usize = w.tensors().iter().map(|t| t.numel() * t.dtype().size()).sum();
    assert_eq!(wide.stored_bytes(), half as u64);
    assert!((half as f64) < 0.55 * (4 * wide.tensors().iter().map(|t| t.numel()).sum::<usize>()) as f64);
    let back = wide.stored().unwrap();
    for (name, (a, b)) in w.names().iter().zip(w.tensors().iter().zip(back.tensors())) {
        assert_eq!(a.dtype(), b.dtype(), "{name}");
        assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap(), "{name}");
    }
}

#[test]
fn tied_checkpoint_has_no_lm_head() {
    let w = Weights::load(&fixture("tied"), &Device::Cpu).unwrap();
    assert!(w.config.tie_word_embeddings);
    assert!(w.get("lm_head.weight").is_err());
}

#[test]
fn transformers_5_nested_names_map_to_published_names() {
    let n = Naming::Nested;
    assert_eq!(n.to_file("model.layers.3.mlp.up_proj.weight"), "model.language_model.layers.3.mlp.up_proj.weight");
    assert_eq!(n.to_file("visual.blocks.0.attn.qkv.bias"), "model.visual.blocks.0.attn.qkv.bias");
    assert_eq!(n.to_file("lm_head.weight"), "lm_head.weight");
    assert_eq!(Naming::detect(["model.language_model.norm.weight"]), Naming::Nested);
    assert_eq!(Naming::detect(["model.norm.weight", "visual.merger.ln_q.weight"]), Naming::Published);
}

/// A checkpoint whose one tensor is renamed or reshaped: the error names the tensor.
fn broken(tag: &str, edit: impl Fn(&str) -> Option<(String, Vec<usize>)>) -> String {
    let out = scratch(tag);
    copy_dir(&fixture("base"), &out);
    let path = out.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept = Vec::new();
    for (n, v) in st.tensors() {
        let (name, shape) = edit(&n).unwrap_or((n.clone(), v.shape().to_vec()));
        let n_new: usize = shape.iter().product();
        let data = v.data()[..n_new * 4].to_vec();
        kept.push((name, shape, data));
    }
    let views: Vec<_> = kept.iter().map(|(n, s, d)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let err = Weights::load(&out, &Device::Cpu).err().expect("a broken checkpoint must not load").to_string();
    let _ = std::fs::remove_dir_all(&out);
    err
}

#[test]
fn a_missing_tensor_is_named() {
    let e = broken("missing", |n| (n == "model.layers.1.mlp.up_proj.weight").then(|| ("unrelated.weight".to_string(), vec![64, 32])));
    assert!(e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("model.safetensors"), "{e}");
}

#[test]
fn a_misshapen_tensor_is_named_with_both_shapes() {
    let e = broken("misshapen", |n| (n == "visual.blocks.0.attn.qkv.bias").then(|| (n.to_string(), vec![95])));
    assert!(e.contains("visual.blocks.0.attn.qkv.bias") && e.contains("[95]") && e.contains("[96]"), "{e}");
}

#[test]
fn a_folder_without_weights_is_an_error() {
    let out = scratch("empty");
    std::fs::copy(fixture("base").join("config.json"), out.join("config.json")).unwrap();
    let e = Weights::load(&out, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

/// A copy of fixture `name` with `edit` applied to its folder; the load error.
fn load_error(name: &str, tag: &str, edit: impl Fn(&Path)) -> String {
    let out = scratch(tag);
    copy_dir(&fixture(name), &out);
    edit(&out);
    let err = Weights::load(&out, &Device::Cpu).err().expect("a broken checkpoint must not load").to_string();
    let _ = std::fs::remove_dir_all(&out);
    err
}

#[test]
fn a_truncated_safetensors_file_is_named() {
    let e = load_error("base", "truncated", |d| {
        let f = d.join("model.safetensors");
        let len = std::fs::metadata(&f).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len - 100).unwrap();
    });
    assert!(e.contains("model.safetensors") && e.contains("not a safetensors file"), "{e}");
}

#[test]
fn a_corrupt_safetensors_header_is_named() {
    for (tag, bytes) in [("garbage-header", b"{\"x\": [1,".to_vec()), ("huge-header", u64::MAX.to_le_bytes().to_vec()), ("empty-file", Vec::new())] {
        let e = load_error("base", tag, |d| {
            let f = d.join("model.safetensors");
            let mut all = std::fs::read(&f).unwrap();
            if bytes.len() == 8 {
                all[..8].copy_from_slice(&bytes);
            } else if bytes.is_empty() {
                all.clear();
            } else {
                all[8..8 + bytes.len()].copy_from_slice(&bytes);
            }
            std::fs::write(&f, all).unwrap();
        });
        assert!(e.contains("model.safetensors") && e.contains("not a safetensors file"), "{tag}: {e}");
    }
}

#[test]
fn a_tensor_of_the_wrong_dtype_is_named() {
    let e = load_error("base", "dtype", |d| {
        let f = d.join("model.safetensors");
        let bytes = std::fs::read(&f).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                // The same bytes, read as I32: a plausible mislabelled export.
                let dtype = if n == "model.norm.weight" { safetensors::Dtype::I32 } else { v.dtype() };
                (n, dtype, v.shape().to_vec(), v.data().to_vec())
            })
            .collect();
        let views: Vec<_> = owned.iter().map(|(n, t, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*t, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, None, &f).unwrap();
    });
    assert!(e.contains("model.norm.weight") && e.contains("I32") && e.contains("F32, BF16 or F16"), "{e}");
}

#[test]
fn a_shard_the_index_names_but_that_is_missing_is_named() {
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("flat_bf16").join("model.safetensors.index.json")).unwrap()).unwrap();
    let shard = index["weight_map"].as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string();
    let e = load_error("flat_bf16", "missing-shard", |d| std::fs::remove_file(d.join(&shard)).unwrap());
    assert!(e.contains(&shard) && e.contains("cannot open"), "{e}");
}

#[test]
fn a_broken_shard_index_is_named() {
    let e = load_error("flat_bf16", "bad-index", |d| std::fs::write(d.join("model.safetensors.index.json"), "{\"weight_map\": [1, 2]}").unwrap());
    assert!(e.contains("model.safetensors.index.json") && e.contains("weight_map"), "{e}");
    let e = load_error("flat_bf16", "escaping-index", |d| {
        let p = d.join("model.safetensors.index.json");
        let text = std::fs::read_to_string(&p).unwrap().replacen("model-0000", "../model-0000", 1);
        std::fs::write(&p, text).unwrap();
    });
    assert!(e.contains("not a file in the checkpoint folder"), "{e}");
}
