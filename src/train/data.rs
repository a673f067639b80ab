//! Training data: the synthetic task (examples made on demand from a seed and an index) or an
//! EasyR1 / ViRL39K-style JSONL file of `{"images": [path], "problem": text, "answer": text}`
//! rows, image paths relative to the file. A malformed row, or one whose image is missing or
//! does not decode, is skipped and reported with its line number.

use super::batch::{self, Item};
use super::config::DataConfig;
use super::synthetic;
use crate::error::{Error, Result};
use crate::image::processor::{load_image, RgbImage};
use crate::model::processor::Processor;
use std::path::{Path, PathBuf};

/// The format instruction after each JSONL problem: EasyR1's math prompt (the framework the
/// paper trains with), asking for the `<think>` block and the boxed answer the reward checks.
pub const FORMAT_PROMPT: &str = " You FIRST think about the reasoning process as an internal monologue and then provide the final answer. The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}.";

pub struct Row {
    pub image: PathBuf,
    pub problem: String,
    pub answer: String,
}

pub enum Source {
    Synthetic { train_seed: u64, eval_seed: u64, train_size: usize, eval_size: usize },
    Jsonl { train: Vec<Row>, eval: Vec<Row>, skipped: Vec<(usize, String)> },
}

/// Reads a JSONL file; returns the good rows and (line, reason) for each skipped one.
pub fn read_jsonl(path: &Path) -> Result<(Vec<Row>, Vec<(usize, String)>)> {
    let bytes = std::fs::read(path).map_err(|e| crate::io::bad(path, format!("cannot be read: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    // Line by line from the bytes: one line that is not UTF-8 is a bad row, not a bad file.
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(raw) else {
            skipped.push((i + 1, "is not UTF-8 text".to_string()));
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line, base) {
            Ok(r) => rows.push(r),
            Err(why) => skipped.push((i + 1, why)),
        }
    }
    Ok((rows, skipped))
}

fn parse_row(line: &str, base: &Path) -> std::result::Result<Row, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = |k: &str| match &v[k] {
        serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        serde_json::Value::Number(n) if k == "answer" => Ok(n.to_string()),
        _ => Err(format!("`{k}` must be a non-empty string")),
    };
    let images = v["images"].as_array().ok_or("`images` must be a list of one image path")?;
    let [img] = images.as_slice() else { return Err(format!("`images` must hold exactly one path, it holds {}", images.len())) };
    let rel = img.as_str().ok_or("`images` must hold a path string")?;
    let image = base.join(rel);
    if !image.is_file() {
        return Err(format!("image {} does not exist", image.display()));
    }
    Ok(Row { image, problem: text("problem")?, answer: text("answer")? })
}

impl Source {
    pub fn new(c: &DataConfig) -> Result<Source> {
        let Some(path) = &c.jsonl else {
            return Ok(Source::Synthetic { train_seed: c.train_seed, eval_seed: c.eval_seed, train_size: c.train_size, eval_size: c.eval_size });
        };
        let (mut train, skipped) = read_jsonl(path)?;
        if train.len() < 2 {
            return Err(Error::Config { file: path.display().to_string(), field: String::new(), msg: format!("has {} usable rows; training needs at least 2", train.len()) });
        }
        // The last rows (up to a tenth) are held out.
        let n_eval = c.eval_size.min(train.len() / 10).max(1);
        let eval = train.split_off(train.len() - n_eval);
        Ok(Source::Jsonl { train, eval, skipped })
    }

    /// Rows skipped while reading (line, reason).
    pub fn skipped(&self) -> &[(usize, String)] {
        match self {
            Source::Jsonl { skipped, .. } => skipped,
            Source::Synthetic { .. } => &[],
        }
    }

    pub fn train_item(&self, p: &Processor, index: usize) -> Result<Item> {
        match self {
            Source::Synthetic { train_seed, train_size, .. } => synthetic_item(p, synthetic::example_at(*train_seed, index % train_size)),
            Source::Jsonl { train, .. } => row_item(p, &train[index % train.len()]),
        }
    }

    pub fn eval_items(&self, p: &Processor) -> Result<Vec<Item>> {
        match self {
            Source::Synthetic { eval_seed, eval_size, .. } => (0..*eval_size).map(|i| synthetic_item(p, synthetic::example_at(*eval_seed, i))).collect(),
            Source::Jsonl { eval, .. } => eval.iter().map(|r| row_item(p, r)).collect(),
        }
    }
}

fn synthetic_item(p: &Processor, e: synthetic::Example) -> Result<Item> {
    batch::item(p, &e.image, &e.question, &e.answer, &e.response, Some(e.grounded))
}

fn row_item(p: &Processor, r: &Row) -> Result<Item> {
    let image: RgbImage = load_image(&r.image)?;
    let response = format!("<think></think>\\boxed{{{}}}", r.answer);
    batch::item(p, &image, &format!("{}{FORMAT_PROMPT}", r.problem), &r.answer, &response, None)
}
