//! LoRA training on a Hugging Face checkpoint folder (the trainer's tiny model after full SFT,
//! saved in the HF layout with its tokenizer): only the adapters move, the checkpoints are
//! PEFT adapter folders that `pgpo forward --adapter` and `pgpo eval` load, a resumed run
//! equals the uninterrupted one, JSONL data trains, and wgpu matches the CPU.

mod common;

use pgpo::model::lora::is_adapter;
use pgpo::model::LoraConfig;
use pgpo::train::rl_step::rl_step;
use pgpo::train::trainer::Trainer;
use pgpo::train::{run, Event, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn out_dir() -> PathBuf {
    std::env::temp_dir().join(format!("pgpo-lora-training-{}", std::process::id()))
}

/// The tiny model after enough full SFT that its rollouts finish and earn different rewards.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| common::sft_checkpoint(&out_dir(), "base"))
}

/// LoRA (r 8 on every decoder projection, dropout 0.1) from the base: 2 SFT steps, 3 RL
/// steps with different rewards, checkpoints every 2 steps.
fn cfg(name: &str, backend: &str) -> TrainConfig {
    let mut c = common::toy_train_config(name, backend);
    c.out_dir = out_dir();
    c.model = Some(base().to_path_buf());
    c.lora = Some(LoraConfig { r: 8, alpha: 16.0, dropout: 0.1, ..Default::default() });
    (c.sft.steps, c.sft.lr) = (2, 1e-3);
    (c.rl.steps, c.rl.prompts, c.rl.max_new_tokens, c.rl.lr) = (3, 4, 24, 1e-3);
    (c.checkpoint.every, c.checkpoint.keep) = (2, 10);
    c
}

fn rows(path: &Path) -> Vec<serde_json::Value> {
    common::metric_rows(path)
}

fn comparable(path: &Path) -> Vec<serde_json::Value> {
    common::comparable_rows(path)
}

fn bits(t: &Trainer, adapters: bool) -> Vec<Vec<u32>> {
    let w = &t.weights;
    w.names().iter().zip(w.tensors()).filter(|(n, _)| is_adapter(n) == adapters).map(|(_, x)| x.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()).collect()
}

/// An RL step with non-zero advantages moves the adapters and leaves every base weight as it
/// was (held in its stored dtype, without moments). Catches a trainer that steps the frozen
/// base (full fine-tuning under a LoRA config) or never reaches the adapters.
#[test]
fn an_rl_step_moves_the_adapters_and_no_base_weight() {
    let mut t = Trainer::new(cfg("step", "cpu")).unwrap();
    assert_eq!(t.weights.lora.as_ref().unwrap().modules.len(), 7, "7 projections x 1 layer");
    let (base, adapters) = (bits(&t, false), bits(&t, true));
    let s = rl_step(&mut t, 1).unwrap();
    let trace = s.trace.unwrap();
    assert!(trace.seq_adv.iter().any(|a| a.abs() > 1e-3), "all advantages are zero: {:?}", trace.rewards);
    assert!(s.applied);
    assert_eq!(bits(&t, false), base, "a base weight moved");
    assert_ne!(bits(&t, true), adapters, "the adapters did not move");
    let (m, _) = t.opt.moments();
    for ((name, _), m) in t.weights.names().iter().zip(t.weights.tensors()).zip(m) {
        assert_eq!(m.is_some(), is_adapter(name), "{name}: moments only for the adapters");
    }
    let _ = std::fs::remove_dir_all(&t.run_dir);
}

/// Adapter checkpoints (no base copy), loadable by the CLI, and a resumed run equal to the
/// uninterrupted one from an SFT and an RL checkpoint. Catches a resume that starts fresh
/// adapters, loses their moments, or reloads the base from the checkpoint folder.
#[test]
fn a_lora_run_saves_adapter_checkpoints_and_resumes_exactly() {
    let mut c = cfg("resume-a", "cpu");
    c.log_timings = false;
    let a = run(c.clone(), &mut |_| {}).unwrap();
    let last = a.checkpoints.last().unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json", "tokenizer.json"] {
        assert!(last.join(f).exists(), "{f} in {}", last.display());
    }
    assert!(!last.join("model.safetensors").exists(), "a LoRA checkpoint holds no copy of the base");
    let opt = std::fs::read(last.join("optimizer.safetensors")).unwrap();
    let keys: Vec<String> = safetensors::SafeTensors::deserialize(&opt).unwrap().names().into_iter().map(str::to_string).collect();
    assert!(!keys.is_empty() && keys.iter().all(|k| is_adapter(k)), "{keys:?}");
    let inputs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen/processor/odd.png");
    let generated = Command::new(env!("CARGO_BIN_EXE_pgpo"))
        .args(["generate", "--backend", "cpu", "--model", base().to_str().unwrap(), "--adapter", last.to_str().unwrap(), "--image", inputs.to_str().unwrap(), "--prompt", "How many red shapes are there?", "--max-new-tokens", "4"])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let eval = Command::new(env!("CARGO_BIN_EXE_pgpo")).args(["eval", "--checkpoint", last.to_str().unwrap(), "--k", "1"]).output().unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    for cut in ["sft-final", "rl-00002"] {
        let mut b = c.clone();
        b.name = format!("resume-b-{cut}");
        let first = run(b.clone(), &mut |_| {}).unwrap();
        assert_eq!(comparable(&first.metrics), comparable(&a.metrics), "two LoRA runs with the same seed differ");
        let order = ["sft-final", "rl-00002", "rl-final"];
        for later in &order[order.iter().position(|x| *x == cut).unwrap() + 1..] {
            std::fs::remove_dir_all(first.run_dir.join("checkpoints").join(later)).unwrap();
        }
        b.resume = true;
        let mut from = None;
        let resumed = run(b, &mut |e| {
            match e {
                Event::Resumed { checkpoint, .. } => from = Some(checkpoint),
                Event::Note(n) => println!("{n}"),
                _ => {}
            }
        })
        .unwrap();
        assert!(from.unwrap().ends_with(cut));
        assert_eq!(comparable(&resumed.metrics), comparable(&a.metrics), "resumed from {cut}");
        let final_adapter = |d: &Path| std::fs::read(d.join("checkpoints/rl-final/adapter_model.safetensors")).unwrap();
        assert_eq!(final_adapter(&resumed.run_dir), final_adapter(&a.run_dir), "resumed from {cut}: the final adapters");
        let _ = std::fs::remove_dir_all(&resumed.run_dir);
    }
    let _ = std::fs::remove_dir_all(&a.run_dir);
}

/// LoRA on JSONL data (EasyR1's format) trains through RL.
#[test]
fn a_lora_run_trains_on_jsonl() {
    let dir = out_dir().join("jsonl");
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let lines: Vec<String> = (0..12)
        .map(|i| {
            let e = pgpo::train::synthetic::example_at(5, i);
            let name = format!("img/{i}.png");
            image::save_buffer(dir.join(&name), &e.image.data, e.image.width as u32, e.image.height as u32, image::ExtendedColorType::Rgb8).unwrap();
            serde_json::json!({"images": [name], "problem": e.question, "answer": e.answer}).to_string()
        })
        .collect();
    std::fs::write(dir.join("data.jsonl"), lines.join("\n")).unwrap();
    let mut c = cfg("jsonl", "cpu");
    c.data.jsonl = Some(dir.join("data.jsonl"));
    (c.rl.steps, c.checkpoint.every) = (1, 0);
    let s = run(c, &mut |_| {}).unwrap();
    let rl: Vec<_> = rows(&s.metrics).into_iter().filter(|r| r["phase"] == "rl").collect();
    assert_eq!(rl.len(), 1);
    assert!(rl[0]["grad_norm"].as_f64().unwrap() > 0.0, "{}", rl[0]);
    assert!(s.checkpoints.last().unwrap().join("adapter_model.safetensors").exists());
    let _ = std::fs::remove_dir_all(&s.run_dir);
}

/// The same LoRA steps on wgpu give the CPU's losses, rewards and gradient norms.
#[test]
fn lora_steps_on_wgpu_match_the_cpu() {
    let Some(_) = common::backend("wgpu") else { return };
    let short = |name: &str, backend: &str| {
        let mut c = cfg(name, backend);
        (c.rl.steps, c.checkpoint.every) = (1, 0);
        c
    };
    let cpu = run(short("match-cpu", "cpu"), &mut |_| {}).unwrap();
    let gpu = run(short("match-wgpu", "wgpu"), &mut |_| {}).unwrap();
    common::assert_runs_match(&rows(&cpu.metrics), &rows(&gpu.metrics), &[("sft", "loss"), ("rl", "reward"), ("rl", "grad_norm"), ("rl", "entropy")]);
    let _ = std::fs::remove_dir_all(&cpu.run_dir);
    let _ = std::fs::remove_dir_all(&gpu.run_dir);
}

/// A LoRA checkpoint as the `model` of a new run (what `pgpo compare` does with its shared
/// SFT start): a LoRA run continues its adapters on its base; a full fine-tune starts from the
/// merged model. Catches a start that drops the SFT adapters (fresh B = 0, so the model
/// would be the base alone) or fails to find the base.
#[test]
fn an_adapter_checkpoint_starts_a_new_run() {
    let mut c = cfg("start", "cpu");
    (c.rl.steps, c.checkpoint.every) = (0, 0);
    let s = run(c, &mut |_| {}).unwrap();
    let start = s.checkpoints.iter().find(|p| p.ends_with("sft-final")).unwrap().clone();
    let mut again = cfg("continue", "cpu");
    again.model = Some(start.clone());
    let t = Trainer::new(again.clone()).unwrap();
    let saved = pgpo::model::peft::load_model_or_adapter(&start, &pgpo::Device::Cpu).unwrap();
    let l = t.weights.lora.as_ref().unwrap();
    assert!(l.modules.iter().any(|m| saved.get(&pgpo::model::lora::b_name(&m.name)).unwrap().to_vec().unwrap().iter().any(|&x| x != 0.0)), "the SFT adapters are not zero");
    for m in &l.modules {
        let b = pgpo::model::lora::b_name(&m.name);
        assert_eq!(t.weights.get(&b).unwrap().to_vec().unwrap(), saved.get(&b).unwrap().to_vec().unwrap(), "{b}");
    }
    again.lora = None;
    let full = Trainer::new(again).unwrap();
    assert!(full.weights.lora.is_none());
    let merged = saved.merged().unwrap();
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert_eq!(full.weights.get(q).unwrap().to_vec().unwrap(), merged.get(q).unwrap().to_vec().unwrap());
    assert_ne!(merged.get(q).unwrap().to_vec().unwrap(), saved.get(q).unwrap().to_vec().unwrap(), "the merge moved the layer");
    let _ = std::fs::remove_dir_all(&s.run_dir);
}
