//! Typed reads of one JSON object's fields for the checkpoint's JSON files (config.json,
//! preprocessor_config.json, generation_config.json): every error names the file and the
//! field's path.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Parses `text` as a JSON object, or an error naming `file`.
pub(crate) fn object(text: &str, file: &str) -> Result<Map<String, Value>> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| Error::Config { file: file.to_string(), field: String::new(), msg: format!("is not valid JSON: {e}") })?;
    match root {
        Value::Object(map) => Ok(map),
        _ => Err(Error::Config { file: file.to_string(), field: String::new(), msg: "must be a JSON object".into() }),
    }
}

/// Reads one JSON object's fields, naming `file` and the field's path in errors.
pub(crate) struct Fields<'a> {
    pub file: &'a str,
    pub prefix: String,
    pub map: &'a Map<String, Value>,
}

/// The JSON object in the file at `path`, or None when there is no such file.
pub(crate) fn read_object(path: &Path) -> Result<Option<Map<String, Value>>> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(object(&text, &file)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Config { file, field: String::new(), msg: format!("cannot be read: {e}") }),
    }
}

impl<'a> Fields<'a> {
    pub fn err(&self, key: &str, what: &str) -> Error {
        Error::Config { file: self.file.to_string(), field: format!("{}{key}", self.prefix), msg: what.to_string() }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn object(&self, key: &str) -> Result<Fields<'a>> {
        match self.get(key) {
            Some(Value::Object(map)) => Ok(Fields { file: self.file, prefix: format!("{}{key}.", self.prefix), map }),
            Some(_) => Err(self.err(key, "must be an object")),
            None => Err(self.err(key, "is missing")),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).ok_or_else(|| self.err(key, "is missing"))?;
        v.as_u64().and_then(|x| usize::try_from(x).ok()).ok_or_else(|| self.err(key, &format!("must be a non-negative integer, got {v}")))
    }

    /// An integer in [lo, hi]; the bounds keep corrupt sizes from reaching an allocation.
    pub fn between(&self, key: &str, lo: usize, hi: usize) -> Result<usize> {
        match self.usize(key)? {
            n if n < lo => Err(self.err(key, &format!("must be at least {lo}"))),
            n if n > hi => Err(self.err(key, &format!("is {n}, beyond any real model: at most {hi}"))),
            n => Ok(n),
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key).ok_or_else(|| self.err(key, "is missing"))?;
        v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| self.err(key, &format!("must be a number, got {v}")))
    }

    pub fn string(&self, key: &str) -> Result<String> {
        let v = self.get(key).ok_or_else(|| self.err(key, "is missing"))?;
        v.as_str().map(str::to_string).ok_or_else(|| self.err(key, &format!("must be a string, got {v}")))
    }

    /// `hidden_act`, which must be "silu": the one activation `part` has in Qwen2.5-VL and the
    /// only one pgpo implements.
    pub fn silu(&self, part: &str) -> Result<String> {
        let act = self.string("hidden_act")?;
        if act != "silu" {
            return Err(self.err("hidden_act", &format!("is {act:?}; Qwen2.5-VL's {part} uses \"silu\", the only activation pgpo implements")));
        }
        Ok(act)
    }

    pub fn usizes(&self, key: &str) -> Result<Vec<usize>> {
        let v = self.get(key).ok_or_else(|| self.err(key, "is missing"))?;
        let bad = || self.err(key, &format!("must be a list of non-negative integers, got {v}"));
        v.as_array().ok_or_else(bad)?.iter().map(|x| x.as_u64().map(|x| x as usize).ok_or_else(bad)).collect()
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(key, &format!("must be true or false, got {v}"))),
        }
    }

    pub fn token_or(&self, key: &str, default: u32) -> Result<u32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| self.err(key, &format!("must be a token id, got {v}"))),
        }
    }

    /// A token id or a list of them (`eos_token_id` may be either); None when absent.
    pub fn ids(&self, key: &str) -> Result<Option<Vec<u32>>> {
        let bad = || self.err(key, "must be a token id or a list of token ids");
        let id = |v: &Value| v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(bad);
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items.iter().map(id).collect::<Result<Vec<_>>>().map(Some),
            Some(v) => Ok(Some(vec![id(v)?])),
        }
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() { self.usize(key) } else { Ok(default) }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        if self.get(key).is_some() { self.f64(key) } else { Ok(default) }
    }

    pub fn f64s_or(&self, key: &str, default: &[f64]) -> Result<Vec<f64>> {
        let Some(v) = self.get(key) else { return Ok(default.to_vec()) };
        let bad = || self.err(key, &format!("must be a list of numbers, got {v}"));
        v.as_array().ok_or_else(bad)?.iter().map(|x| x.as_f64().filter(|x| x.is_finite()).ok_or_else(bad)).collect()
    }
}
