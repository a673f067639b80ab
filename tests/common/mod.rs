//! Backend discovery shared by the test binaries.

use pgpo::Device;

/// The device of `kind` ("cpu", "wgpu" or "cuda"), or `None` with a printed line when it is
/// absent. `PGPO_REQUIRE_WGPU=1`, `PGPO_REQUIRE_CUDA=1` and `PGPO_REQUIRE_CUDA_EMU=1` turn
/// that skip into a failure.
#[allow(dead_code)]
pub fn backend(kind: &str) -> Option<Device> {
    let dev = match kind {
        "cpu" => return Some(Device::Cpu),
        "wgpu" => Device::wgpu(),
        "cuda" => Device::cuda(0),
        "cuda-emu" => Device::cuda_emu(),
        other => panic!("unknown backend {other}"),
    };
    match dev {
        Ok(d) => Some(d),
        Err(e) => {
            skip(kind, &e.to_string());
            None
        }
    }
}

/// Says in one line that a test skips because `kind` is absent, and why; a failure instead
/// when PGPO_REQUIRE_<KIND>=1.
#[allow(dead_code)]
pub fn skip(kind: &str, why: &str) {
    let require = format!("PGPO_REQUIRE_{}", kind.to_uppercase().replace('-', "_"));
    if std::env::var(&require).as_deref() == Ok("1") {
        panic!("{require}=1 but {kind} is absent: {why}");
    }
    println!("skipping {kind}: {why}");
}

/// A trainer config at toy size for `backend`: a 1-layer, 64-wide tiny model, 3 SFT steps of
/// 4, 2 RL steps of 2 prompts x 4 responses of at most 6 tokens, no evaluation during RL, a
/// checkpoint every 2 steps, written under the system's temporary folder.
#[allow(dead_code)]
pub fn toy_train_config(name: &str, backend: &str) -> pgpo::train::TrainConfig {
    let mut c = pgpo::train::TrainConfig { name: name.into(), backend: backend.into(), ..Default::default() };
    c.out_dir = std::env::temp_dir().join(format!("pgpo-train-{}", std::process::id()));
    c.tiny.hidden = 64;
    c.tiny.layers = 1;
    c.sft.steps = 3;
    c.sft.batch = 4;
    c.rl.steps = 2;
    c.rl.prompts = 2;
    c.rl.group = 4;
    c.rl.max_new_tokens = 6;
    c.rl.eval_every = 0;
    c.rl.dynamic_sampling = false;
    c.data.eval_size = 4;
    c.checkpoint.every = 2;
    c
}

/// Two items of `pool` that ask the same question (equal ids) about different images, so
/// only the image tells their prompts apart.
#[allow(dead_code)]
pub fn same_question_other_image(pool: &[pgpo::train::batch::Item]) -> (usize, usize) {
    (0..pool.len())
        .flat_map(|i| (i + 1..pool.len()).map(move |j| (i, j)))
        .find(|&(i, j)| pool[i].prompt.ids == pool[j].prompt.ids && pool[i].prompt.pixels != pool[j].prompt.pixels)
        .expect("two training items that share the question but not the image")
}

/// Every row of a metrics.jsonl file.
#[allow(dead_code)]
pub fn metric_rows(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Metrics rows without the wall-clock fields and the memory high-water marks (the process's,
/// shared with tests running beside this one).
#[allow(dead_code)]
pub fn comparable_rows(path: &std::path::Path) -> Vec<serde_json::Value> {
    metric_rows(path)
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().retain(|k, _| !pgpo::train::metrics::is_measurement(k));
            r
        })
        .collect()
}

/// Each (phase, field) of two runs' metrics equal within 1e-3 relative, row by row; the RL
/// rows' gradient norms of the first run must not be zero (the signal compared).
#[allow(dead_code)]
pub fn assert_runs_match(a: &[serde_json::Value], b: &[serde_json::Value], fields: &[(&str, &str)]) {
    for &(phase, key) in fields {
        let pick = |r: &[serde_json::Value]| -> Vec<f64> { r.iter().filter(|x| x["phase"] == phase).map(|x| x[key].as_f64().unwrap_or(f64::NAN)).collect() };
        let (x, y) = (pick(a), pick(b));
        assert!(!x.is_empty() && x.len() == y.len(), "{phase} {key}: {} vs {} rows", x.len(), y.len());
        for (p, q) in x.iter().zip(&y) {
            let rel = (p - q).abs() / p.abs().max(1e-3);
            println!("{phase} {key}: {p:.6} vs {q:.6} rel {rel:.2e}");
            assert!(rel <= 1e-3, "{phase} {key}: {p} vs {q}");
        }
    }
    assert!(a.iter().filter(|x| x["phase"] == "rl").all(|x| x["grad_norm"].as_f64().unwrap_or(0.0) > 0.0), "the RL gradients compared must not be zero");
}

/// The tiny model after enough full SFT (100 steps of 8) that its rollouts finish and earn
/// different rewards: the sft-final checkpoint of a run named `name` under `out_dir`.
#[allow(dead_code)]
pub fn sft_checkpoint(out_dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let mut c = pgpo::train::TrainConfig { name: name.into(), backend: "cpu".into(), out_dir: out_dir.to_path_buf(), ..Default::default() };
    (c.tiny.hidden, c.tiny.layers, c.data.eval_size) = (64, 1, 4);
    (c.sft.steps, c.sft.batch, c.sft.lr) = (100, 8, 4e-3);
    c.rl.steps = 0;
    let s = pgpo::train::run(c, &mut |_| {}).unwrap();
    s.checkpoints.iter().find(|p| p.ends_with("sft-final")).unwrap().clone()
}
