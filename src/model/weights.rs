//! Qwen2.5-VL weights in safetensors: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Files are memory-mapped and each tensor goes straight from
//! the mapping onto the device, so a sharded checkpoint is never held twice: matrices in their
//! stored dtype (a bf16 checkpoint takes half the bytes of f32) or widened to f32 for training
//! (`Precision`). Saving writes the layout the weights came from (file names, shards,
//! tensor names, dtypes, config.json) back, each file atomically.

use super::config::ModelConfig;
use super::names::{self, Naming};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::io::{atomic, bad};
use crate::rng::Rng;
use crate::tensor::Tensor;
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// Where and how the tensors are stored, so that saving reproduces it.
#[derive(Clone, Debug)]
pub struct Layout {
    pub naming: Naming,
    /// The files, in order; one entry for an unsharded checkpoint.
    pub files: Vec<String>,
    /// Per parameter (pgpo name): index into `files` and the stored dtype.
    placement: HashMap<String, (usize, Dtype)>,
    /// config.json as read, written back unchanged.
    pub config_json: String,
}

/// How loaded weights are held on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Matrices in their stored dtype (bf16 and f16 stay half; matmul and gather read them
    /// directly), the one-axis norm weights and biases in f32: for inference and frozen copies.
    Stored,
    /// Every tensor widened to f32: the master copy of weights an optimizer trains.
    F32,
}

/// The parameters, as tensors on one device, by pgpo name (see `names`). A clone shares
/// the tensors' buffers.
#[derive(Clone)]
pub struct Weights {
    pub config: ModelConfig,
    names: Vec<String>,
    tensors: Vec<Tensor>,
    index: HashMap<String, usize>,
    pub layout: Layout,
    /// LoRA adapters, whose A and B are parameters after the base's (`lora`).
    pub lora: Option<super::lora::Lora>,
}

/// A memory-mapped safetensors file.
struct Mapped {
    path: PathBuf,
    map: memmap2::Mmap,
}

impl Mapped {
    fn open(path: &Path) -> Result<Mapped> {
        let file = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
        // SAFETY: the mapping is read-only and every tensor is copied out before it is dropped;
        // a file truncated by another process meanwhile is the one hazard, as with any mmap reader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(path, format!("cannot map: {e}")))?;
        SafeTensors::deserialize(&map).map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        Ok(Mapped { path: path.to_path_buf(), map })
    }

    fn tensors(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.map).map_err(|e| bad(&self.path, format!("not a safetensors file: {e}")))
    }
}

/// Widens a stored tensor (a weight or an adapter matrix) to f32.
pub(super) fn widen(path: &Path, name: &str, v: &TensorView<'_>) -> Result<Vec<f32>> {
    let b = v.data();
    Ok(match v.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(bad(path, format!("tensor `{name}` is {other:?}; it must be F32, BF16 or F16"))),
    })
}

/// The half-precision dtype a tensor stored as `d` keeps on the device (`Precision::Stored`):
/// a bf16 or f16 matrix stays so; f32 and the one-axis norm weights and biases are f32.
fn kept_half(d: Dtype, rank: usize) -> Option<crate::tensor::Dtype> {
    match d {
        _ if rank < 2 => None,
        Dtype::BF16 => Some(crate::tensor::Dtype::BF16),
        Dtype::F16 => Some(crate::tensor::Dtype::F16),
        _ => None,
    }
}

/// The shard files of `dir` and, per stored tensor name, its file index.
fn shard_map(dir: &Path) -> Result<(Vec<String>, HashMap<String, usize>)> {
    let index_path = dir.join(INDEX);
    if !index_path.exists() {
        if !dir.join(SINGLE).exists() {
            return Err(bad(dir, format!("holds neither {SINGLE} nor {INDEX}")));
        }
        return Ok((vec![SINGLE.to_string()], HashMap::new()));
    }
    let text = std::fs::read_to_string(&index_path).map_err(|e| bad(&index_path, format!("cannot read: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&index_path, format!("is not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Config { file: index_path.display().to_string(), field: "weight_map".into(), msg: "is missing or not an object".into() })?;
    let mut pairs = Vec::with_capacity(map.len());
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| Error::Config {
            file: index_path.display().to_string(),
            field: format!("weight_map.{name}"),
            msg: "must be a file name".into(),
        })?;
        if file.contains('/') || file.contains("..") {
            return Err(bad(&index_path, format!("weight_map.{name} names {file:?}, which is not a file in the checkpoint folder")));
        }
        pairs.push((name.clone(), file.to_string()));
    }
    let mut files: Vec<String> = pairs.iter().map(|(_, f)| f.clone()).collect();
    files.sort();
    files.dedup();
    let of = pairs.into_iter().filter_map(|(n, f)| files.binary_search(&f).ok().map(|i| (n, i))).collect();
    Ok((files, of))
}

impl Weights {
    /// Loads `dir` (config.json and the safetensors files) onto `device`, matrices in their
    /// stored dtype (`Precision::Stored`). Every parameter the config implies must be present
    /// with its shape; a tied `lm_head.weight` is ignored.
    pub fn load(dir: &Path, device: &Device) -> Result<Weights> {
        Weights::load_as(dir, device, Precision::Stored)
    }

    /// Loads `dir` with every tensor widened to f32, for training.
    pub fn load_f32(dir: &Path, device: &Device) -> Result<Weights> {
        Weights::load_as(dir, device, Precision::F32)
    }

    pub fn load_as(dir: &Path, device: &Device, precision: Precision) -> Result<Weights> {
        let (config, config_json) = ModelConfig::load_with_text(dir)?;
        let (files, by_name) = shard_map(dir)?;
        let mapped = files.iter().map(|f| Mapped::open(&dir.join(f))).collect::<Result<Vec<_>>>()?;
        let stored: Vec<SafeTensors<'_>> = mapped.iter().map(Mapped::tensors).collect::<Result<_>>()?;
        let naming = Naming::detect(stored.iter().flat_map(|s| s.names()));
        let wanted = names::parameters(&config);
        let (mut names, mut tensors, mut placement) = (Vec::new(), Vec::new(), HashMap::new());
        for (name, shape) in wanted {
            let file_name = naming.to_file(&name);
            let fi = if files.len() == 1 { 0 } else {
                *by_name.get(&file_name).ok_or_else(|| bad(&dir.join(INDEX), format!("weight_map has no entry for `{file_name}`")))?
            };
            let (m, st) = (&mapped[fi], &stored[fi]);
            let view = st.tensor(&file_name).map_err(|_| bad(&m.path, format!("missing tensor `{file_name}` (shape {shape:?})")))?;
            if view.shape() != shape.as_slice() {
                return Err(bad(&m.path, format!("tensor `{file_name}` has shape {:?}, the config implies {shape:?}", view.shape())));
            }
            let data = widen(&m.path, &file_name, &view)?;
            if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                return Err(bad(&m.path, format!("tensor `{file_name}` holds a non-finite value at element {i}")));
            }
            placement.insert(name.clone(), (fi, view.dtype()));
            tensors.push(match kept_half(view.dtype(), shape.len()).filter(|_| precision == Precision::Stored) {
                Some(dt) => Tensor::from_half_bits(view.data().chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect(), dt, &shape, device)?,
                None => Tensor::from_vec(data, &shape, device)?,
            });
            names.push(name);
        }
        Ok(Weights::assemble(config, names, tensors, Layout { naming, files, placement, config_json }))
    }

    /// The same weights with every matrix in its stored dtype (rounded to nearest even where
    /// the checkpoint is bf16 or f16): a frozen copy, such as the KL term's reference policy,
    /// at the checkpoint's size, equal to what `save` then `load` gives back.
    pub fn stored(&self) -> Result<Weights> {
        let mut out = self.clone();
        for (name, t) in out.names.iter().zip(out.tensors.iter_mut()) {
            if let Some(dt) = self.kept_half(name, t) {
                *t = t.to_dtype(dt)?;
            }
        }
        Ok(out)
    }

    /// Widens to f32 the tensors `which` names (the master copies of trained weights); the
    /// others keep their dtype.
    pub fn widen_where(&mut self, which: impl Fn(&str) -> bool) -> Result<()> {
        for (name, t) in self.names.iter().zip(self.tensors.iter_mut()) {
            if which(name) {
                *t = t.to_dtype(crate::tensor::Dtype::F32)?;
            }
        }
        Ok(())
    }

    /// Bytes the tensors take on the device.
    pub fn bytes_where(&self, which: impl Fn(&str) -> bool) -> u64 {
        self.names.iter().zip(&self.tensors).filter(|(n, _)| which(n)).map(|(_, t)| (t.numel() * t.dtype().size()) as u64).sum()
    }

    /// Bytes the tensors of `stored()` take on the device, without making them.
    pub fn stored_bytes(&self) -> u64 {
        self.names.iter().zip(&self.tensors).map(|(n, t)| (t.numel() * self.kept_half(n, t).map_or(4, |dt| dt.size())) as u64).sum()
    }

    /// The half-precision dtype parameter `name` keeps in `stored()`, from its checkpoint's.
    fn kept_half(&self, name: &str, t: &Tensor) -> Option<crate::tensor::Dtype> {
        self.layout.placement.get(name).and_then(|&(_, d)| kept_half(d, t.rank()))
    }

    fn assemble(config: ModelConfig, names: Vec<String>, tensors: Vec<Tensor>, layout: Layout) -> Weights {
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Weights { config, names, tensors, index, layout, lora: None }
    }

    /// Appends a parameter (an adapter's A or B).
    pub(super) fn push(&mut self, name: String, t: Tensor) {
        self.index.insert(name.clone(), self.names.len());
        self.names.push(name);
        self.tensors.push(t);
    }

    /// The base alone: the adapters' parameters dropped.
    pub fn without_adapters(&self) -> Weights {
        let keep: Vec<usize> = (0..self.names.len()).filter(|&i| !super::lora::is_adapter(&self.names[i])).collect();
        let names = keep.iter().map(|&i| self.names[i].clone()).collect();
        let tensors = keep.iter().map(|&i| self.tensors[i].clone()).collect();
        Weights::assemble(self.config.clone(), names, tensors, self.layout.clone())
    }

    /// Random weights for `config`, for benchmarks and tests: matrices uniform with variance
    /// 1 / fan_in, the embedding uniform in ±1, norm weights in [0.8, 1.2], biases in ±0.1.
    /// Saved as one f32 file.
    pub fn random(config: &ModelConfig, config_json: &str, seed: u64, device: &Device) -> Result<Weights> {
        Weights::random_as(config, config_json, seed, crate::tensor::Dtype::F32, device)
    }

    /// `random` with the matrices held (and saved) in `dtype`, each rounded as it is made, so
    /// a bf16 model of N values never needs 4N bytes at once (Qwen2.5-VL-3B's shapes for the
    /// benchmarks: 7.5 GB).
    pub fn random_as(config: &ModelConfig, config_json: &str, seed: u64, dtype: crate::tensor::Dtype, device: &Device) -> Result<Weights> {
        let file_dtype = match dtype {
            crate::tensor::Dtype::F32 => Dtype::F32,
            crate::tensor::Dtype::BF16 => Dtype::BF16,
            crate::tensor::Dtype::F16 => Dtype::F16,
        };
        let mut rng = Rng::new(seed);
        let (mut names, mut tensors, mut placement) = (Vec::new(), Vec::new(), HashMap::new());
        for (name, shape) in names::parameters(config) {
            let n: usize = shape.iter().product();
            // The one-axis parameters are the biases and the RMSNorm weights.
            let data = if name.ends_with(".bias") {
                rng.vec(n, -0.1, 0.1)
            } else if shape.len() == 1 {
                rng.vec(n, 0.8, 1.2)
            } else if name == "model.embed_tokens.weight" {
                rng.vec(n, -1.0, 1.0)
            } else {
                let fan_in: usize = shape[1..].iter().product();
                let a = (3.0 / fan_in as f32).sqrt();
                rng.vec(n, -a, a)
            };
            let stored = if shape.len() >= 2 { file_dtype } else { Dtype::F32 };
            placement.insert(name.clone(), (0, stored));
            tensors.push(match kept_half(stored, shape.len()) {
                Some(dt) => Tensor::from_half_bits(data.iter().map(|&x| dt.narrow(x)).collect(), dt, &shape, device)?,
                None => Tensor::from_vec(data, &shape, device)?,
            });
            names.push(name);
        }
        let layout = Layout { naming: Naming::Published, files: vec![SINGLE.into()], placement, config_json: config_json.to_string() };
        Ok(Weights::assemble(config.clone(), names, tensors, layout))
    }

    /// Parameter names in the model's fixed order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i]).ok_or_else(|| Error::shape("weights", format!("no parameter named `{name}`")))
    }

    /// Replaces a parameter's value (after an optimizer step); the shape must not change.
    pub fn set(&mut self, name: &str, value: Tensor) -> Result<()> {
        let &i = self.index.get(name).ok_or_else(|| Error::shape("weights", format!("no parameter named `{name}`")))?;
        if value.shape() != self.tensors[i].shape() {
            return Err(Error::shape("weights", format!("`{name}` is {:?}, got {:?}", self.tensors[i].shape(), value.shape())));
        }
        self.tensors[i] = value;
        Ok(())
    }

    /// Writes config.json and the base weights to `dir` in the layout they were loaded from:
    /// same files, tensor names and dtypes (f32 rounds to bf16/f16 where the source was half).
    /// Each file is written to a temporary name and renamed into place; the index goes last.
    /// Adapters are not part of it (`save_adapter`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| bad(dir, format!("cannot create: {e}")))?;
        let l = &self.layout;
        let mut per_file: Vec<Vec<(String, Dtype, Vec<usize>, Vec<u8>)>> = vec![Vec::new(); l.files.len()];
        for (name, t) in self.names.iter().zip(&self.tensors).filter(|(n, _)| !super::lora::is_adapter(n)) {
            let &(fi, dtype) = l.placement.get(name).ok_or_else(|| Error::shape("weights", format!("`{name}` has no file in the layout")))?;
            let v = t.to_vec()?;
            let bytes: Vec<u8> = match dtype {
                Dtype::BF16 => v.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect(),
                Dtype::F16 => v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            per_file.get_mut(fi).ok_or_else(|| Error::shape("weights", format!("`{name}` is placed in file {fi} of {}", l.files.len())))?.push((l.naming.to_file(name), dtype, t.shape().to_vec(), bytes));
        }
        let mut weight_map = BTreeMap::new();
        let mut total = 0usize;
        for (file, tensors) in l.files.iter().zip(&per_file) {
            let path = dir.join(file);
            let views = tensors
                .iter()
                .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)).map_err(|e| bad(&path, format!("`{n}`: {e}"))))
                .collect::<Result<Vec<_>>>()?;
            let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
            atomic(&path, |tmp| safetensors::serialize_to_file(views, Some(meta), tmp).map_err(|e| bad(&path, e)))?;
            for (n, _, _, b) in tensors {
                weight_map.insert(n.clone(), file.clone());
                total += b.len();
            }
        }
        atomic(&dir.join("config.json"), |tmp| Ok(std::fs::write(tmp, &l.config_json)?))?;
        if l.files.len() > 1 {
            let index = serde_json::json!({ "metadata": { "total_size": total }, "weight_map": weight_map });
            let text = serde_json::to_string_pretty(&index).map_err(|e| bad(&dir.join(INDEX), e))?;
            atomic(&dir.join(INDEX), |tmp| Ok(std::fs::write(tmp, text)?))?;
        }
        Ok(())
    }
}
