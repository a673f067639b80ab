//! Trainer checkpoints: the HF layout (weights, config.json, tokenizer and processor files),
//! or for a LoRA run PEFT's adapter folder, plus trainer_state.json and optimizer.safetensors. A checkpoint is written into a hidden
//! temporary folder, flushed to disk, and renamed into place; old ones are renamed to a
//! hidden name before they are deleted. So a crash at any moment (SIGKILL, a full disk)
//! leaves every visible checkpoint complete, and only hidden leftovers, which `clean` removes.

use super::optimizer::AdamW;
use crate::error::Result;
use crate::io::{bad, write_f32};
use crate::model::Weights;
use std::path::{Path, PathBuf};

/// The processor files copied from the model folder into each checkpoint.
pub const PROCESSOR_FILES: [&str; 5] = ["tokenizer.json", "tokenizer_config.json", "chat_template.json", "preprocessor_config.json", "generation_config.json"];

const STATE: &str = "trainer_state.json";

/// Saves `checkpoints/<tag>`; returns its path.
pub fn save(run: &Path, tag: &str, w: &Weights, opt: Option<&AdamW>, source: &Path, state: &serde_json::Value, keep: usize) -> Result<PathBuf> {
    let root = run.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| bad(&root, format!("cannot create: {e}")))?;
    let dir = root.join(tag);
    let tmp = root.join(format!(".tmp-{tag}"));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        // A LoRA run's checkpoint holds the adapters in PEFT's format, not the frozen base.
        if w.lora.is_some() { w.save_adapter(&tmp)? } else { w.save(&tmp)? }
        for f in PROCESSOR_FILES {
            let from = source.join(f);
            if from.exists() {
                std::fs::copy(&from, tmp.join(f)).map_err(|e| bad(&from, format!("cannot copy into the checkpoint: {e}")))?;
            }
        }
        if let Some(opt) = opt {
            let (m, v) = opt.moments();
            let data: Vec<(String, Vec<usize>, Vec<f32>)> = w
                .names()
                .iter()
                .zip(m.iter().zip(v))
                // A frozen parameter has no moments and writes none.
                .filter_map(|(n, (m, v))| Some((n, m.as_ref()?, v.as_ref()?)))
                .flat_map(|(n, m, v)| [(format!("m.{n}"), m.shape().to_vec(), m.to_vec()), (format!("v.{n}"), v.shape().to_vec(), v.to_vec())])
                .map(|(n, s, d)| d.map(|d| (n, s, d)))
                .collect::<Result<_>>()?;
            let arrays: Vec<_> = data.iter().map(|(n, s, d)| (n.as_str(), s.clone(), d.as_slice())).collect();
            write_f32(&tmp.join("optimizer.safetensors"), &arrays)?;
        }
        // The state goes last: a folder with a readable state is a complete checkpoint.
        let state_path = tmp.join(STATE);
        std::fs::write(&state_path, serde_json::to_string_pretty(state).unwrap_or_default()).map_err(|e| bad(&state_path, format!("cannot write: {e}")))?;
        sync_folder(&tmp)?;
        // Replacing a checkpoint of the same tag: hide the old one first, so that at every
        // moment one complete copy is visible or hidden, never a half-deleted one.
        let trash = root.join(format!(".trash-{tag}"));
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&trash);
            std::fs::rename(&dir, &trash).map_err(|e| bad(&dir, format!("cannot move the old checkpoint aside: {e}")))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| bad(&dir, format!("cannot rename into place: {e}")))?;
        let _ = std::fs::remove_dir_all(&trash);
        sync(&root)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    prune(&root, keep);
    Ok(dir)
}

/// Flushes every file of `dir`, then `dir` itself, to the disk.
fn sync_folder(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| bad(dir, format!("cannot list: {e}")))?.flatten() {
        sync(&e.path())?;
    }
    sync(dir)
}

fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| bad(path, format!("cannot flush to disk: {e}")))
}

/// Removes the hidden leftovers of interrupted writes and deletions.
pub fn clean(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".tmp-") || name.starts_with(".trash-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The visible checkpoints with a readable trainer state, newest (most global steps) first.
pub fn complete(root: &Path) -> Vec<(PathBuf, serde_json::Value)> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut all: Vec<(u64, PathBuf, serde_json::Value)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join(STATE)).ok()?;
            let state: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some((state["global"].as_u64()?, e.path(), state))
        })
        .collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    all.into_iter().map(|(_, p, s)| (p, s)).collect()
}

/// Removes every checkpoint of the run (a fresh run replacing an earlier one); returns how
/// many there were.
pub fn remove_all(root: &Path) -> usize {
    clean(root);
    let all = complete(root);
    prune(root, 0);
    all.len()
}

/// Removes all but the newest `keep` complete checkpoints (by global step), each renamed to a
/// hidden name before it is deleted.
fn prune(root: &Path, keep: usize) {
    for (path, _) in complete(root).into_iter().skip(keep) {
        let Some(name) = path.file_name() else { continue };
        let trash = root.join(format!(".trash-{}", name.to_string_lossy()));
        if std::fs::rename(&path, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(trash);
        }
    }
}
