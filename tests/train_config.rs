//! The trainer's TOML config: every field optional with documented defaults; unknown keys,
//! wrong types and out-of-range values are errors naming the field.

use pgpo::train::TrainConfig;

#[test]
fn an_empty_file_is_the_default_run_and_values_override_it() {
    assert_eq!(TrainConfig::parse("", "t.toml").unwrap(), TrainConfig::default());
    let c = TrainConfig::parse("name = \"x\"\n[rl]\nalgo = \"grpo\"\ngroup = 4\n[sft]\nsteps = 7\n", "t.toml").unwrap();
    assert_eq!((c.name.as_str(), c.rl.algo.as_str(), c.rl.group, c.sft.steps), ("x", "grpo", 4, 7));
}

#[test]
fn bad_values_are_errors_naming_the_field() {
    for (text, field) in [
        ("[rl]\nlr = -1.0", "rl.lr"),
        ("[rl]\ntau = 1.5", "rl.tau"),
        ("[rl]\ngroup = 1", "rl.group"),
        ("[rl]\nalgo = \"ppo\"", "rl.algo"),
        ("[rl]\ntop_p = 0.0", "rl.top_p"),
        ("[rl]\nloss_agg = \"sum\"", "rl.loss_agg"),
        ("[sft]\nlr = 0.0", "sft.lr"),
        ("[data]\neval_seed = 11", "data.eval_seed"),
        ("[rl]\nunknown_knob = 3", "unknown_knob"),
        ("[rl]\nsteps = \"ten\"", "steps"),
        ("nmae = \"typo\"", "nmae"),
    ] {
        let err = TrainConfig::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("t.toml") && err.contains(field), "{text:?}: {err}");
    }
}

/// The trainer estimates its peak memory before the first step and refuses a configuration
/// that cannot fit, naming the knob to turn.
#[test]
fn a_run_that_cannot_fit_is_refused_before_the_first_step_naming_the_knob() {
    use pgpo::train::trainer::Trainer;
    let mut cfg = TrainConfig { name: "memory".into(), backend: "cpu".into(), ..Default::default() };
    cfg.out_dir = std::env::temp_dir().join(format!("pgpo-memory-{}", std::process::id()));
    (cfg.tiny.hidden, cfg.tiny.layers, cfg.data.eval_size) = (64, 1, 2);
    let t = Trainer::new(cfg.clone()).unwrap();
    let fits = t.memory_estimate().unwrap();
    assert!(fits.peak > 0 && fits.describe().contains("rollout KV cache"), "{}", fits.describe());
    fits.check(&t.device, 0.0).unwrap();
    // A budget below the estimate (as memory_gb) is refused; so is a group far too large
    // for this machine's memory.
    let e = fits.check(&t.device, fits.peak as f64 / 2e9).unwrap_err().to_string();
    assert!(e.contains("needs about") && e.contains("memory_gb") && e.contains("lower "), "{e}");
    let mut huge = t.cfg.clone();
    huge.rl.group = 1 << 22;
    let mut t2 = t;
    t2.cfg = huge.clone();
    let e = t2.memory_estimate().unwrap().check(&t2.device, 0.0).unwrap_err().to_string();
    assert!(e.contains("rl.group") && e.contains("rollout KV cache"), "{e}");
    // And through `pgpo train`, before any step runs.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pgpo"));
    c.args(["train", "--backend", "cpu", "--set", "name=\"memory-cli\"", "--set", &format!("out_dir=\"{}\"", cfg.out_dir.display())]);
    c.args(["--set", "tiny.hidden=64", "--set", "tiny.layers=1", "--set", "rl.group=4194304"]);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("rl.group") && !err.contains("held-out accuracy") && !err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&cfg.out_dir);
}

/// On wgpu, a tensor the config makes larger than the adapter can bind is refused up front,
/// naming the adapter limit and the knob (lavapipe binds at most 128 MiB).
#[cfg(feature = "wgpu")]
#[test]
fn a_buffer_over_the_adapter_binding_limit_is_refused_up_front_on_wgpu() {
    use pgpo::train::trainer::Trainer;
    let Ok(dev) = pgpo::Device::wgpu() else {
        assert!(std::env::var("PGPO_REQUIRE_WGPU").as_deref() != Ok("1"), "PGPO_REQUIRE_WGPU=1 but wgpu is absent");
        return;
    };
    let Some((limit, name)) = dev.max_binding() else { unreachable!("wgpu reports its binding limit") };
    let mut cfg = TrainConfig { name: "binding".into(), backend: "wgpu".into(), ..Default::default() };
    cfg.out_dir = std::env::temp_dir().join(format!("pgpo-binding-{}", std::process::id()));
    (cfg.tiny.hidden, cfg.tiny.layers, cfg.data.eval_size) = (64, 1, 2);
    let mut t = Trainer::new(cfg.clone()).unwrap();
    t.cfg.memory_gb = 1000.0; // only the binding limit is under test
    // Response tokens whose clean logits need one buffer just over the limit.
    let rows = (t.cfg.rl.prompts * t.cfg.rl.group) as u64;
    t.cfg.rl.max_new_tokens = (limit / (4 * rows * t.weights.config.text.vocab_size as u64) + 1) as usize;
    let e = t.memory_estimate().unwrap().check(&t.device, t.cfg.memory_gb).unwrap_err().to_string();
    assert!(e.contains(name) && e.contains("rl.max_new_tokens"), "{e}");
    let _ = std::fs::remove_dir_all(&cfg.out_dir);
}
