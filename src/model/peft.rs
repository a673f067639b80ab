//! Adapters in PEFT's format: a folder with `adapter_config.json` (r, lora_alpha,
//! target_modules as a list, a regular expression or "all-linear", use_rslora, rank_pattern,
//! alpha_pattern) and `adapter_model.safetensors`, whose keys are
//! `base_model.model.<module>.lora_A.weight` with the module named as transformers 5 does
//! (`model.language_model.layers.N…`) or as older versions did (`model.layers.N…`). Reading
//! checks every key against the base (a layer of it, the rank, the shapes, the targets) and
//! names the key that does not fit; features pgpo does not implement (DoRA, biases,
//! modules_to_save, …) are refused by their field.

use super::lora::{self, a_name, b_name, linear_modules, Lora, LoraConfig, LoraModule};
use super::names::Naming;
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::io::bad;
use crate::tensor::Tensor;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const CONFIG: &str = "adapter_config.json";
pub const WEIGHTS: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";

/// The key of adapter matrix `name` (`{module}.lora_A.weight`, pgpo's name) in
/// adapter_model.safetensors under `naming`.
pub fn peft_key(name: &str, naming: Naming) -> String {
    format!("{PREFIX}{}", naming.to_file(name))
}

/// The checkpoint in `model` (matrices in their stored dtype) with the PEFT adapter in
/// `adapter` on it, when one is given.
pub fn load_with_adapter(model: &Path, adapter: Option<&Path>, device: &crate::device::Device) -> Result<Weights> {
    let mut w = Weights::load(model, device)?;
    if let Some(a) = adapter {
        w.load_adapter(a)?;
    }
    Ok(w)
}

/// adapter_config.json for fresh adapters made from `cfg` on the base at `base`.
pub fn fresh_config(cfg: &LoraConfig, base: &str) -> Value {
    json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": base,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": cfg.target_regex(),
        "bias": "none",
        "use_rslora": cfg.rslora,
        "use_dora": false,
        "fan_in_fan_out": false,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "inference_mode": true,
    })
}

/// Which modules a target_modules value selects.
enum Selection {
    /// PEFT's list form: a module whose name is an entry or ends with `.` + an entry.
    Suffixes(Vec<String>),
    /// A regular expression that must match the whole name (Python's re.fullmatch).
    Regex(fancy_regex::Regex),
    /// "all-linear": every linear layer but the output head.
    AllLinear,
}

impl Selection {
    /// Whether the module (pgpo name) is selected under either naming.
    fn selects(&self, module: &str) -> bool {
        let names = [Naming::Nested.to_file(module), module.to_string()];
        names.iter().any(|n| match self {
            Selection::Suffixes(list) => list.iter().any(|t| n == t || n.ends_with(&format!(".{t}"))),
            Selection::Regex(re) => re.is_match(n).unwrap_or(false),
            Selection::AllLinear => true,
        })
    }
}

/// A PEFT pattern key (rank_pattern, alpha_pattern) matches a module as PEFT's
/// get_pattern_key does: the whole name, or its end after a `.`.
fn pattern_matches(pattern: &str, module: &str) -> bool {
    let Ok(re) = fancy_regex::Regex::new(&format!(r"^(?:.*\.)?(?:{pattern})$")) else { return false };
    [Naming::Nested.to_file(module), module.to_string()].iter().any(|n| n == pattern || re.is_match(n).unwrap_or(false))
}

/// The parsed adapter_config.json.
struct AdapterConfig {
    r: usize,
    alpha: f64,
    rslora: bool,
    selection: Selection,
    rank_pattern: BTreeMap<String, usize>,
    alpha_pattern: BTreeMap<String, f64>,
}

fn parse_config(path: &Path, v: &Value) -> Result<AdapterConfig> {
    let err = |field: &str, msg: String| Error::Config { file: path.display().to_string(), field: field.into(), msg };
    let unset = |f: &str| v.get(f).is_none_or(|x| x.is_null() || x == &json!([]) || x == &json!({}));
    if let Some(t) = v.get("peft_type").and_then(Value::as_str)
        && t != "LORA"
    {
        return Err(err("peft_type", format!("is {t:?}; pgpo reads LoRA adapters (\"LORA\")")));
    }
    let r = v.get("r").and_then(Value::as_u64).filter(|&r| r > 0).ok_or_else(|| err("r", "must be a positive integer".into()))? as usize;
    let alpha = match v.get("lora_alpha") {
        None => 8.0, // PEFT's default
        Some(a) => a.as_f64().filter(|a| a.is_finite()).ok_or_else(|| err("lora_alpha", "must be a number".into()))?,
    };
    let flag = |f: &str| -> Result<bool> {
        match v.get(f) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(err(f, "must be true or false".into())),
        }
    };
    let rslora = flag("use_rslora")?;
    for f in ["use_dora", "fan_in_fan_out"] {
        if flag(f)? {
            return Err(err(f, "is true; pgpo implements plain LoRA (false)".into()));
        }
    }
    if let Some(b) = v.get("bias").and_then(Value::as_str)
        && b != "none"
    {
        return Err(err("bias", format!("is {b:?}; pgpo's adapters train no biases (\"none\")")));
    }
    for f in ["modules_to_save", "layers_to_transform", "layers_pattern", "exclude_modules", "trainable_token_indices"] {
        if !unset(f) {
            return Err(err(f, "is set; pgpo does not implement it (leave it null)".into()));
        }
    }
    let selection = match v.get("target_modules") {
        Some(Value::String(s)) if s == "all-linear" => Selection::AllLinear,
        Some(Value::String(s)) => Selection::Regex(fancy_regex::Regex::new(&format!("^(?:{s})$")).map_err(|e| err("target_modules", format!("is not a regular expression pgpo can read: {e}")))?),
        Some(Value::Array(a)) => Selection::Suffixes(a.iter().map(|x| x.as_str().map(str::to_string).ok_or_else(|| err("target_modules", "must list module names (strings)".into()))).collect::<Result<_>>()?),
        _ => return Err(err("target_modules", "must be a list of module names, a regular expression or \"all-linear\"".into())),
    };
    let pattern = |f: &str| -> Result<Vec<(String, f64)>> {
        match v.get(f) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Object(o)) => o.iter().map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)).ok_or_else(|| err(&format!("{f}.{k}"), "must be a number".into()))).collect(),
            Some(_) => Err(err(f, "must be an object of pattern: value".into())),
        }
    };
    let rank_pattern = pattern("rank_pattern")?.into_iter().map(|(k, x)| (k, x as usize)).collect();
    let alpha_pattern = pattern("alpha_pattern")?.into_iter().collect();
    Ok(AdapterConfig { r, alpha, rslora, selection, rank_pattern, alpha_pattern })
}

/// Whether `dir` is an adapter folder (adapter_config.json, and no config.json of a model).
pub fn is_adapter_folder(dir: &Path) -> bool {
    dir.join(CONFIG).exists() && !dir.join("config.json").exists()
}

/// The adapter folder `dir` on the base its adapter_config.json names
/// (base_model_name_or_path, a local folder), and that base's folder.
pub fn load_adapter_folder(dir: &Path, device: &crate::device::Device) -> Result<(Weights, std::path::PathBuf)> {
    let cfg_path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| bad(&cfg_path, format!("cannot read: {e}")))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(&cfg_path, format!("is not valid JSON: {e}")))?;
    let base = json.get("base_model_name_or_path").and_then(Value::as_str).map(std::path::PathBuf::from).filter(|p| p.join("config.json").exists()).ok_or_else(|| Error::Config {
        file: cfg_path.display().to_string(),
        field: "base_model_name_or_path".into(),
        msg: "must name the base checkpoint's local folder (or give the base and the adapter separately)".into(),
    })?;
    Ok((load_with_adapter(&base, Some(dir), device)?, base))
}

/// A checkpoint folder, or an adapter folder on its base (`load_adapter_folder`).
pub fn load_model_or_adapter(dir: &Path, device: &crate::device::Device) -> Result<Weights> {
    if is_adapter_folder(dir) { Ok(load_adapter_folder(dir, device)?.0) } else { Weights::load(dir, device) }
}

impl Weights {
    /// Loads the PEFT adapter in `dir` onto these weights (as f32 parameters, in the model's
    /// order of layers).
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        if self.lora.is_some() {
            return Err(bad(dir, "the model already has adapters"));
        }
        let cfg_path = dir.join(CONFIG);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| bad(&cfg_path, format!("cannot read: {e}")))?;
        let config_json: Value = serde_json::from_str(&text).map_err(|e| bad(&cfg_path, format!("is not valid JSON: {e}")))?;
        let cfg = parse_config(&cfg_path, &config_json)?;
        let path = dir.join(WEIGHTS);
        if !path.exists() && dir.join("adapter_model.bin").exists() {
            return Err(bad(dir, "holds adapter_model.bin (a pickle); pgpo reads adapter_model.safetensors only"));
        }
        let bytes = std::fs::read(&path).map_err(|e| bad(&path, format!("cannot read: {e}")))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(&path, format!("not a safetensors file: {e}")))?;
        let layers: HashMap<String, [usize; 2]> = linear_modules(&self.config).into_iter().collect();
        // module -> (A, B) keys, from the file.
        let mut found: BTreeMap<String, [Option<String>; 2]> = BTreeMap::new();
        let naming = Naming::detect(st.names().into_iter().filter_map(|k| k.strip_prefix(PREFIX)));
        for key in st.names() {
            let rest = key.strip_prefix(PREFIX).ok_or_else(|| bad(&path, format!("key `{key}` does not start with `{PREFIX}`")))?;
            let (module, which) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
                (m, 0)
            } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
                (m, 1)
            } else {
                return Err(bad(&path, format!("key `{key}` is not a LoRA A or B matrix (`….lora_A.weight`, `….lora_B.weight`); pgpo reads plain LoRA adapters")));
            };
            let module = Naming::to_pgpo(module);
            if !layers.contains_key(&module) {
                return Err(bad(&path, format!("key `{key}` adapts `{module}`, which is not a linear layer of the base model")));
            }
            if !cfg.selection.selects(&module) {
                return Err(bad(&path, format!("key `{key}` adapts `{module}`, which the config's target_modules does not select")));
            }
            found.entry(module).or_default()[which] = Some(key.to_string());
        }
        let mut modules = Vec::new();
        for (module, [out, inp]) in linear_modules(&self.config) {
            if !cfg.selection.selects(&module) {
                continue;
            }
            let Some(keys) = found.get(&module) else {
                return Err(bad(&path, format!("has no `{PREFIX}{}.lora_A.weight`, though target_modules selects `{module}`", Naming::Nested.to_file(&module))));
            };
            let r = cfg.rank_pattern.iter().find(|(p, _)| pattern_matches(p, &module)).map_or(cfg.r, |(_, &r)| r);
            let alpha = cfg.alpha_pattern.iter().find(|(p, _)| pattern_matches(p, &module)).map_or(cfg.alpha, |(_, &a)| a);
            for (which, want, name) in [(0, [r, inp], a_name(&module)), (1, [out, r], b_name(&module))] {
                let key = keys[which].as_ref().ok_or_else(|| bad(&path, format!("has the other matrix of `{module}` but not `{PREFIX}{}.lora_{}.weight`", Naming::Nested.to_file(&module), ["A", "B"][which])))?;
                let view = st.tensor(key).map_err(|e| bad(&path, format!("`{key}`: {e}")))?;
                if view.shape() != want {
                    return Err(bad(&path, format!("tensor `{key}` has shape {:?}; rank {r} on `{module}` ([{out}, {inp}]) needs {want:?}", view.shape())));
                }
                let data = super::weights::widen(&path, key, &view)?;
                if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                    return Err(bad(&path, format!("tensor `{key}` holds a non-finite value at element {i}")));
                }
                let device = self.tensors()[0].device().clone();
                self.push(name, Tensor::from_vec(data, &want, &device)?);
            }
            modules.push(LoraModule { scale: lora::scale(alpha, r, cfg.rslora), name: module, r });
        }
        if modules.is_empty() {
            return Err(bad(&cfg_path, "target_modules selects no linear layer of the base model"));
        }
        self.lora = Some(Lora { modules, naming, config_json });
        Ok(())
    }

    /// Writes the adapters in PEFT's format (f32, keys named as they were read; fresh
    /// adapters as transformers 5 names them) to `dir`, each file atomically.
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        let Some(l) = &self.lora else { return Err(bad(dir, "the model has no adapters to save")) };
        std::fs::create_dir_all(dir).map_err(|e| bad(dir, format!("cannot create: {e}")))?;
        let mut data = Vec::new();
        for m in &l.modules {
            for name in [a_name(&m.name), b_name(&m.name)] {
                let t = self.get(&name)?;
                data.push((peft_key(&name, l.naming), t.shape().to_vec(), t.to_vec()?));
            }
        }
        let path = dir.join(WEIGHTS);
        let bytes: Vec<Vec<u8>> = data.iter().map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views = data
            .iter()
            .zip(&bytes)
            .map(|((n, s, _), b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)).map_err(|e| bad(&path, format!("`{n}`: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        crate::io::atomic(&path, |tmp| safetensors::serialize_to_file(views, Some(meta), tmp).map_err(|e| bad(&path, e)))?;
        let cfg_path = dir.join(CONFIG);
        let text = serde_json::to_string_pretty(&l.config_json).map_err(|e| bad(&cfg_path, e))?;
        crate::io::atomic(&cfg_path, |tmp| Ok(std::fs::write(tmp, text + "\n")?))
    }
}
