//! Trainer checkpoints: the HF layout (weights, config.json, tokenizer and processor files)
//! plus trainer_state.json and optimizer.safetensors, written into a temporary folder and
//! renamed into place, so a crash never leaves a half-written checkpoint; the last `keep`
//! are kept.

use super::optimizer::AdamW;
use crate::error::Result;
use crate::io::{bad, write_f32};
use crate::model::Weights;
use std::path::{Path, PathBuf};

/// The processor files copied from the model folder into each checkpoint.
pub const PROCESSOR_FILES: [&str; 5] = ["tokenizer.json", "tokenizer_config.json", "chat_template.json", "preprocessor_config.json", "generation_config.json"];

/// Saves `checkpoints/<tag>`; returns its path.
pub fn save(run: &Path, tag: &str, w: &Weights, opt: Option<&AdamW>, source: &Path, state: &serde_json::Value, keep: usize) -> Result<PathBuf> {
    let root = run.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| bad(&root, format!("cannot create: {e}")))?;
    let dir = root.join(tag);
    let tmp = root.join(format!(".tmp-{tag}"));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        w.save(&tmp)?;
        for f in PROCESSOR_FILES {
            let from = source.join(f);
            if from.exists() {
                std::fs::copy(&from, tmp.join(f)).map_err(|e| bad(&from, format!("cannot copy into the checkpoint: {e}")))?;
            }
        }
        if let Some(opt) = opt {
            let (m, v) = opt.moments();
            let mut arrays = Vec::new();
            let data: Vec<(String, Vec<usize>, Vec<f32>)> = w
                .names()
                .iter()
                .zip(m.iter().zip(v))
                .flat_map(|(n, (m, v))| [(format!("m.{n}"), m.shape().to_vec(), m.to_vec()), (format!("v.{n}"), v.shape().to_vec(), v.to_vec())])
                .map(|(n, s, d)| d.map(|d| (n, s, d)))
                .collect::<Result<_>>()?;
            arrays.extend(data.iter().map(|(n, s, d)| (n.as_str(), s.clone(), d.as_slice())));
            write_f32(&tmp.join("optimizer.safetensors"), &arrays)?;
        }
        let state_path = tmp.join("trainer_state.json");
        std::fs::write(&state_path, serde_json::to_string_pretty(state).unwrap_or_default()).map_err(|e| bad(&state_path, format!("cannot write: {e}")))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| bad(&dir, format!("cannot rename into place: {e}")))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    prune(&root, keep);
    Ok(dir)
}

/// Removes all but the newest `keep` complete checkpoints (oldest by modification time).
fn prune(root: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let mut all: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    all.sort();
    let n = all.len();
    for (_, p) in all.into_iter().take(n.saturating_sub(keep)) {
        let _ = std::fs::remove_dir_all(p);
    }
}
