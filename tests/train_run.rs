//! The trainer end to end at a toy size: a few SFT and RL steps on the synthetic task write
//! metrics rows and checkpoints that `pgpo forward` and `pgpo generate` load; every algorithm
//! runs; the same steps on wgpu match the CPU's losses; a JSONL file with two bad rows trains
//! on the rest and reports both line numbers.

mod common;

use pgpo::train::{run, Event, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

fn toy(name: &str, backend: &str) -> TrainConfig {
    common::toy_train_config(name, backend)
}

/// (phase, step, row) of every metrics line.
fn rows(path: &Path) -> Vec<serde_json::Value> {
    common::metric_rows(path)
}

fn losses(rows: &[serde_json::Value], phase: &str) -> Vec<f64> {
    rows.iter().filter(|r| r["phase"] == phase).map(|r| r["loss"].as_f64().unwrap_or(f64::NAN)).collect()
}

#[test]
fn a_short_run_writes_metrics_and_loadable_checkpoints() {
    let cfg = toy("short", "cpu");
    let s = run(cfg, &mut |_| {}).unwrap();
    let r = rows(&s.metrics);
    assert!(r.iter().all(|row| row["phase"].is_string() && row["step"].is_u64()));
    assert_eq!(r.iter().filter(|x| x["phase"] == "sft").count(), 3);
    let rl: Vec<_> = r.iter().filter(|x| x["phase"] == "rl").collect();
    assert_eq!(rl.len(), 2);
    for key in ["reward", "accuracy", "response_length", "entropy", "clip_fraction", "tvd_mean", "tvd_sparsity", "grad_norm", "time_rollout", "time_logprobs", "time_blind_tvd", "time_update"] {
        assert!(rl[0].get(key).is_some(), "rl rows carry {key}: {}", rl[0]);
    }
    assert!(r.iter().filter(|x| x["phase"] == "eval").all(|x| x["accuracy"].is_f64() || x["avg_at_4"].is_f64()));
    let last = s.checkpoints.last().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors", "trainer_state.json", "chat_template.json"] {
        assert!(last.join(f).exists(), "{f} in {}", last.display());
    }
    // The checkpoint answers through the CLI, like a published one.
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen/processor/odd.png");
    let out = Command::new(env!("CARGO_BIN_EXE_pgpo"))
        .args(["generate", "--model", last.to_str().unwrap(), "--image", png.to_str().unwrap(), "--prompt", "How many red shapes are there?", "--max-new-tokens", "4", "--backend", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&s.run_dir);
}

#[test]
fn every_algorithm_preset_runs_end_to_end() {
    // Only that each preset runs through `run` and writes finite losses; what each algorithm
    // computes is tested in tests/rl_training.rs, on steps whose advantages are not zero.
    for algo in pgpo::train::rl_options::Algo::ALL {
        let mut cfg = toy(&format!("algo-{algo}"), "cpu");
        cfg.rl = pgpo::train::config::RlConfig { steps: 1, ..pgpo::train::config::RlConfig::preset(algo) };
        (cfg.rl.prompts, cfg.rl.group, cfg.rl.max_new_tokens, cfg.rl.eval_every, cfg.rl.dynamic_sampling) = (2, 4, 6, 0, false);
        cfg.sft.steps = 1;
        cfg.checkpoint.every = 0;
        let s = run(cfg, &mut |_| {}).unwrap();
        let r = rows(&s.metrics);
        let l = losses(&r, "rl");
        assert!(!l.is_empty() && l.iter().all(|x| x.is_finite()), "{algo}: {l:?}");
        let _ = std::fs::remove_dir_all(&s.run_dir);
    }
}

#[test]
fn sft_and_rl_steps_on_wgpu_match_the_cpu() {
    let Some(_) = common::backend("wgpu") else { return };
    // Enough SFT that rollouts earn different rewards, so the RL advantages and gradients are
    // not zero. (The RL loss itself is near zero on policy: advantages are zero-mean per group,
    // so the gradient norm is what shows the update.)
    let cfg = |name: &str, backend: &str| {
        let mut c = toy(name, backend);
        (c.sft.steps, c.sft.batch, c.sft.lr, c.rl.prompts, c.rl.max_new_tokens) = (100, 8, 4e-3, 4, 24);
        c
    };
    let cpu = run(cfg("match-cpu", "cpu"), &mut |_| {}).unwrap();
    let gpu = run(cfg("match-wgpu", "wgpu"), &mut |_| {}).unwrap();
    common::assert_runs_match(&rows(&cpu.metrics), &rows(&gpu.metrics), &[("sft", "loss"), ("rl", "reward"), ("rl", "grad_norm"), ("rl", "entropy"), ("rl", "tvd_mean")]);
    let _ = std::fs::remove_dir_all(&cpu.run_dir);
    let _ = std::fs::remove_dir_all(&gpu.run_dir);
}

#[test]
fn a_jsonl_file_with_two_bad_rows_trains_on_the_rest_and_names_both_lines() {
    let dir: PathBuf = std::env::temp_dir().join(format!("pgpo-jsonl-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut lines = Vec::new();
    for i in 0..12 {
        let e = pgpo::train::synthetic::example_at(5, i);
        let name = format!("img/{i}.png");
        image::save_buffer(dir.join(&name), &e.image.data, e.image.width as u32, e.image.height as u32, image::ExtendedColorType::Rgb8).unwrap();
        lines.push(serde_json::json!({"images": [name], "problem": e.question, "answer": e.answer}).to_string());
    }
    lines.insert(3, "{not json".into());
    lines.insert(7, serde_json::json!({"images": ["img/missing.png"], "problem": "q", "answer": "1"}).to_string());
    std::fs::write(dir.join("data.jsonl"), lines.join("\n")).unwrap();
    let mut cfg = toy("jsonl", "cpu");
    cfg.data.jsonl = Some(dir.join("data.jsonl"));
    cfg.rl.steps = 1;
    let mut skipped = Vec::new();
    let s = run(cfg, &mut |e| {
        if let Event::Skipped(rows) = e {
            skipped = rows.to_vec();
        }
    })
    .unwrap();
    assert_eq!(skipped.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![4, 8], "{skipped:?}");
    assert!(skipped[1].1.contains("missing.png"), "{skipped:?}");
    assert!(rows(&s.metrics).iter().any(|r| r["phase"] == "rl"));
    let _ = std::fs::remove_dir_all(&s.run_dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn comparable(path: &Path) -> Vec<serde_json::Value> {
    common::comparable_rows(path)
}

#[test]
fn runs_are_deterministic_and_a_resumed_run_reproduces_the_uninterrupted_one() {
    let mut cfg = toy("resume-a", "cpu");
    cfg.sft.steps = 4;
    cfg.rl.steps = 4;
    cfg.checkpoint.every = 2;
    cfg.checkpoint.keep = 10;
    let a = run(cfg.clone(), &mut |_| {}).unwrap();
    for cut in ["sft-00002", "rl-00002"] {
        let mut b = cfg.clone();
        b.name = format!("resume-b-{cut}");
        let first = run(b.clone(), &mut |_| {}).unwrap();
        assert_eq!(comparable(&first.metrics), comparable(&a.metrics), "two runs with the same seed differ");
        // Interrupt after `cut`: later checkpoints never happened.
        let order = ["sft-00002", "sft-final", "rl-00002", "rl-final"];
        let keep = order.iter().position(|c| *c == cut).unwrap();
        for later in &order[keep + 1..] {
            std::fs::remove_dir_all(first.run_dir.join("checkpoints").join(later)).unwrap();
        }
        b.resume = true;
        let mut from = None;
        let resumed = run(b, &mut |e| {
            if let Event::Resumed { checkpoint, .. } = e {
                from = Some(checkpoint);
            }
        })
        .unwrap();
        assert!(from.unwrap().ends_with(cut));
        assert_eq!(comparable(&resumed.metrics), comparable(&a.metrics), "resumed from {cut}");
        let _ = std::fs::remove_dir_all(&resumed.run_dir);
    }
    let _ = std::fs::remove_dir_all(&a.run_dir);
}

/// Every file under `dir`, by relative path, with its bytes.
fn files(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_same_seed_gives_byte_identical_metrics_and_checkpoints() {
    let mut cfg = toy("bytes", "cpu");
    cfg.log_timings = false;
    cfg.checkpoint.keep = 10;
    let a = run(cfg.clone(), &mut |_| {}).unwrap();
    let first_dir = a.run_dir.with_file_name("bytes-first");
    let _ = std::fs::remove_dir_all(&first_dir);
    std::fs::rename(&a.run_dir, &first_dir).unwrap();
    let b = run(cfg, &mut |_| {}).unwrap();
    let (first, second) = (std::fs::read(first_dir.join("metrics.jsonl")).unwrap(), std::fs::read(&b.metrics).unwrap());
    assert!(!first.is_empty() && first == second, "metrics differ:\n{}\n{}", String::from_utf8_lossy(&first), String::from_utf8_lossy(&second));
    let (x, y) = (files(&first_dir.join("checkpoints")), files(&b.run_dir.join("checkpoints")));
    assert!(x.len() >= 3 * 8, "{} checkpoint files", x.len());
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
    for (path, bytes) in &x {
        assert!(bytes == &y[path], "{} differs between the two runs", path.display());
    }
    let _ = std::fs::remove_dir_all(&first_dir);
    let _ = std::fs::remove_dir_all(&b.run_dir);
}

/// The RL step scores responses after a shared prompt prefix (one prefill per distinct prompt,
/// copied to its responses, then one extension over all response tokens). Its clean and blind
/// log-probs equal separate full passes over every prompt + response, on every backend.
///
/// Two of the prompts ask the same question about different images, so their ids are equal:
/// the mistake this catches is deciding "same prompt" by ids alone, which scores the second
/// image's responses with the first image's KV cache (the code before this test did, and this
/// test failed on it: clean max |diff| 0.61 on cpu).
#[test]
fn shared_prefix_scoring_equals_full_clean_and_blind_passes() {
    use pgpo::model::{forward, Blind, ForwardOptions, Keep, ParamVars};
    use pgpo::train::batch;
    use pgpo::train::trainer::Trainer;
    use pgpo::train::visual_dependency::visual_dependency;
    for backend in ["cpu", "wgpu"] {
        if backend == "wgpu" && common::backend("wgpu").is_none() {
            continue;
        }
        let mut cfg = toy(&format!("prefix-{backend}"), backend);
        cfg.rl.hide_markers = backend == "wgpu";
        let mut t = Trainer::new(cfg.clone()).unwrap();
        let pool = t.next_items(64).unwrap();
        // Two items with the same question (equal ids) and different images, and a third.
        let (a, b) = common::same_question_other_image(&pool);
        let c = (0..pool.len()).find(|&k| pool[k].prompt.ids != pool[a].prompt.ids).unwrap();
        let items = [&pool[a], &pool[b], &pool[c]];
        // Three responses per prompt, of different lengths (1 to 7 tokens), no vision ids; the
        // responses to a and b are the same tokens, so only the image tells them apart.
        let mut rng = pgpo::rng::Rng::new(9);
        let vocab = t.weights.config.text.vocab_size;
        let mut tails: Vec<Vec<u32>> = (0..9).map(|i| (0..1 + (i * 5) % 7).map(|_| 7 + rng.below(vocab - 7) as u32).collect()).collect();
        for k in 0..3 {
            tails[3 + k] = tails[k].clone();
        }
        let prompts: Vec<_> = (0..9).map(|i| &items[i / 3].prompt).collect();
        let tail_refs: Vec<&[u32]> = tails.iter().map(|s| s.as_slice()).collect();
        let tape = pgpo::autograd::Tape::new();
        let pv = ParamVars::frozen(&tape, &t.weights);
        let kl = visual_dependency(&pv, &t.scoring(), &prompts, &tail_refs, 1.0).unwrap().kl;
        let seqs = batch::pack(&t.weights.config, &prompts, &tail_refs, t.processor.pad_id, &t.device).unwrap();
        let rows = batch::predicting_rows(&seqs.tail_positions);
        let tokens: Vec<u32> = tail_refs.concat();
        let full = |blind| forward(&pv, &t.weights.config, &seqs.inputs, &ForwardOptions { keep: Keep::Rows(rows.clone()), blind, ..Default::default() }).unwrap();
        let (clean, blind) = (full(None), full(Some(Blind { hide_markers: cfg.rl.hide_markers })));
        let want = pgpo::ops::kl_dual(clean.value(), blind.value(), &tokens, pgpo::ops::KlOptions { temperature: 1.0, d_clamp: cfg.rl.d_clamp }).unwrap();
        // The signal: the two images give the same tokens different clean log-probs.
        let (n_a, want_clean) = (tails[..3].iter().map(|s| s.len()).sum::<usize>(), want.logp_clean.to_vec().unwrap());
        let image_effect = (0..n_a).map(|i| (want_clean[i] - want_clean[n_a + i]).abs()).fold(0f32, f32::max);
        assert!(image_effect > 1e-3, "{backend}: the two images do not change the clean log-probs ({image_effect})");
        for (name, got, exp) in [("clean", &kl.logp_clean, &want.logp_clean), ("blind", &kl.logp_blind, &want.logp_blind), ("k3", &kl.k3, &want.k3), ("kl", &kl.kl, &want.kl)] {
            let (g, e) = (got.to_vec().unwrap(), exp.to_vec().unwrap());
            assert_eq!(g.len(), tokens.len());
            let worst = g.iter().zip(&e).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 2e-4, "{backend} {name}: max |diff| {worst}");
        }
        t.fault = None;
        let _ = std::fs::remove_dir_all(cfg.out_dir.join(&cfg.name));
    }
}
