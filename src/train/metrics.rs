//! runs/NAME/metrics.jsonl: one JSON object per line, each with `phase` ("sft", "rl" or
//! "eval") and `step`. Lines are flushed as written, so a crash loses at most the last one.

use crate::error::Result;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Metrics {
    path: PathBuf,
    file: std::fs::File,
    lines: usize,
    /// Keep the wall-clock `time_*` fields and the process's memory high-water marks
    /// `peak_bytes*` (see `TrainConfig::log_timings`): measurements of this run, not results.
    pub timings: bool,
}

impl Metrics {
    /// Appends to `path` (a resumed run continues the same file).
    pub fn open(path: &Path) -> Result<Metrics> {
        let lines = std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| crate::io::bad(path, format!("cannot open: {e}")))?;
        Ok(Metrics { path: path.to_path_buf(), file, lines, timings: true })
    }

    /// Keeps the first `n` lines (a resumed run drops what followed its checkpoint).
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let kept: String = text.lines().take(n).map(|l| format!("{l}\n")).collect();
        crate::io::atomic(&self.path, |tmp| Ok(std::fs::write(tmp, &kept)?))?;
        let timings = self.timings;
        *self = Metrics::open(&self.path)?;
        self.timings = timings;
        Ok(())
    }

    /// Lines written so far.
    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn write(&mut self, phase: &str, step: usize, fields: &[(&str, f64)]) -> Result<()> {
        let mut row = Map::new();
        row.insert("phase".into(), Value::from(phase));
        row.insert("step".into(), Value::from(step));
        for (k, v) in fields.iter().filter(|(k, _)| self.timings || !is_measurement(k)) {
            // JSON has no NaN: a non-finite value is written as null.
            row.insert((*k).into(), serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number));
        }
        writeln!(self.file, "{}", Value::Object(row)).and_then(|()| self.file.flush()).map_err(|e| crate::io::bad(&self.path, format!("cannot write: {e}")))?;
        self.lines += 1;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A field that measures this run on this machine (wall-clock `time_*`, memory `peak_bytes*`,
/// host-device `transfers_*`), not a result of training: written only with
/// `TrainConfig::log_timings`, and left out when runs on two backends are compared.
pub fn is_measurement(field: &str) -> bool {
    ["time_", "peak_bytes", "transfers_"].iter().any(|p| field.starts_with(p))
}
