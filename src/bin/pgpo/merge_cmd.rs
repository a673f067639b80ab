//! `pgpo merge`: a PEFT LoRA adapter folded into its base, written as a Hugging Face
//! checkpoint in the base's dtype and shard layout, with the base's tokenizer and processor
//! files, so that transformers (or `pgpo generate`) loads it without peft.

use pgpo::model::peft::load_with_adapter;
use pgpo::train::checkpoint::PROCESSOR_FILES;
use pgpo::{Device, Result};
use std::path::Path;

pub fn merge(model: &Path, adapter: &Path, out: &Path) -> Result<bool> {
    if out.exists() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(pgpo::Error::input("out", format!("{} exists and is not empty; give a new folder", out.display())));
    }
    // The CPU holds the weights: the merge is one product per layer, and the files are
    // written from the host anyway.
    let w = load_with_adapter(model, Some(adapter), &Device::Cpu)?;
    let layers = w.lora.as_ref().map_or(0, |l| l.modules.len());
    let merged = w.merged()?;
    let tmp = out.with_file_name(format!(".tmp-{}", out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        merged.save(&tmp)?;
        for f in PROCESSOR_FILES {
            let from = model.join(f);
            if from.exists() {
                std::fs::copy(&from, tmp.join(f)).map_err(|e| pgpo::Error::input("model", format!("cannot copy {}: {e}", from.display())))?;
            }
        }
        let _ = std::fs::remove_dir(out);
        std::fs::rename(&tmp, out).map_err(|e| pgpo::Error::input("out", format!("cannot rename into {}: {e}", out.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    println!("merged {layers} adapted layers into {}; wrote {}", model.display(), out.display());
    Ok(true)
}
