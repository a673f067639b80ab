//! The trainer's TOML config: every field optional with documented defaults; unknown keys,
//! wrong types and out-of-range values are errors naming the field.

use pgpo::train::TrainConfig;

#[test]
fn an_empty_file_is_the_default_run_and_values_override_it() {
    assert_eq!(TrainConfig::parse("", "t.toml").unwrap(), TrainConfig::default());
    let c = TrainConfig::parse("name = \"x\"\n[rl]\nalgo = \"grpo\"\ngroup = 4\n[sft]\nsteps = 7\n", "t.toml").unwrap();
    assert_eq!((c.name.as_str(), c.rl.algo.name(), c.rl.group, c.sft.steps), ("x", "grpo", 4, 7));
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
        ("backend = \"gpu\"", "backend"),
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
    // (Scoring holds the same KV cache as the rollout, and more: it is the part named.)
    assert!(e.contains("rl.group") && e.contains("KV cache"), "{e}");
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
    // Response tokens whose clean logits would be one buffer just over the limit: fine now,
    // the fused losses hold one chunk of them at a time, within the limit.
    let rows = (t.cfg.rl.prompts * t.cfg.rl.group) as u64;
    t.cfg.rl.max_new_tokens = (limit / (4 * rows * t.weights.config.text.vocab_size as u64) + 1) as usize;
    t.memory_estimate().unwrap().check(&t.device, t.cfg.memory_gb).unwrap();
    // Sequences whose one layer of KV cache is one buffer just over the limit: refused.
    let kv = (t.weights.config.text.num_key_value_heads * t.weights.config.text.head_dim()) as u64;
    t.cfg.rl.max_new_tokens = (limit / (4 * rows * kv) + 1) as usize;
    let e = t.memory_estimate().unwrap().check(&t.device, t.cfg.memory_gb).unwrap_err().to_string();
    assert!(e.contains(name) && e.contains("KV cache") && e.contains("rl.max_new_tokens"), "{e}");
    let _ = std::fs::remove_dir_all(&cfg.out_dir);
}

/// `rl.algo` selects the fields its paper fixes, and a field written explicitly overrides the
/// preset. Catches: grpo still running DAPO's clip-higher, dual clip and token-mean; Dr. GRPO
/// still dividing by the std; GSPO without its sequence ratio; an explicit field replaced by
/// the preset; and GSPO's ratio silently given another aggregation.
#[test]
fn algo_selects_its_papers_preset_and_explicit_fields_override_it() {
    use pgpo::train::rl_options::{Importance, LossAgg};
    let rl = |text: &str| TrainConfig::parse(text, "t.toml").unwrap().rl;
    let g = rl("[rl]\nalgo = \"grpo\"");
    assert_eq!((g.clip_low, g.clip_high, g.dual_clip, g.loss_agg, g.dynamic_sampling, g.scale_rewards), (0.2, 0.2, 0.0, LossAgg::SeqMeanTokenMean, false, true));
    for algo in ["dapo", "pgpo"] {
        let d = rl(&format!("[rl]\nalgo = \"{algo}\""));
        assert_eq!((d.clip_low, d.clip_high, d.loss_agg, d.dynamic_sampling, d.importance), (0.2, 0.28, LossAgg::TokenMean, true, Importance::Token), "{algo}");
    }
    let dr = rl("[rl]\nalgo = \"dr_grpo\"");
    assert_eq!((dr.scale_rewards, dr.loss_agg, dr.dynamic_sampling), (false, LossAgg::Constant, false));
    let gs = rl("[rl]\nalgo = \"gspo\"");
    assert_eq!((gs.importance, gs.loss_agg), (Importance::Sequence, LossAgg::SeqMeanTokenMean));
    assert_eq!(rl("").algo, pgpo::train::rl_options::Algo::Pgpo);
    let over = rl("[rl]\nalgo = \"grpo\"\nclip_high = 0.3\ndynamic_sampling = true");
    assert_eq!((over.clip_high, over.dynamic_sampling, over.loss_agg), (0.3, true, LossAgg::SeqMeanTokenMean));
    let e = TrainConfig::parse("[rl]\nalgo = \"gspo\"\nloss_agg = \"token-mean\"", "t.toml").unwrap_err().to_string();
    assert!(e.contains("rl.loss_agg") && e.contains("seq-mean-token-mean"), "{e}");
}

/// Every choice is an enum: a typo is an error naming the field and the allowed values.
/// Catches: a string field accepting anything, and an error that does not say which field.
#[test]
fn a_typo_in_a_choice_names_the_field_and_the_allowed_values() {
    for (key, typo, allowed) in [
        ("algo", "dapoo", "dr_grpo"),
        ("loss_agg", "token_mean", "seq-mean-token-mean"),
        ("importance", "seq", "sequence"),
        ("filter_key", "acc", "accuracy"),
        ("variant", "nonorm", "no-norm"),
        ("degenerate", "ones", "uniform"),
        ("tvd", "k2", "k3"),
        ("tvd_policy", "old", "rollout"),
    ] {
        let e = TrainConfig::parse(&format!("[rl]\n{key} = \"{typo}\""), "t.toml").unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains(&format!("rl.{key}")) && e.contains(typo) && e.contains(allowed), "{key}: {e}");
    }
}

/// `--set rl.algo=grpo` needs no TOML quotes; the run prints its resolved configuration and
/// writes it as config.toml, which `pgpo eval` reads when given no --config. Catches: an
/// unquoted string refused, presets missing from the written file, and eval falling back to
/// the defaults (200 held-out prompts) instead of the run's own 3.
#[test]
fn unquoted_set_works_and_the_resolved_config_is_written_and_read_by_eval() {
    let out = std::env::temp_dir().join(format!("pgpo-resolved-{}", std::process::id()));
    let pgpo = env!("CARGO_BIN_EXE_pgpo");
    let mut c = std::process::Command::new(pgpo);
    c.args(["train", "--backend", "cpu", "--set", "name=resolved", "--set", &format!("out_dir=\"{}\"", out.display())]);
    for s in ["rl.algo=grpo", "tiny.hidden=64", "tiny.layers=1", "sft.steps=1", "sft.batch=2", "rl.steps=0", "data.eval_size=3", "rl.max_new_tokens=4"] {
        c.args(["--set", s]);
    }
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("configuration (presets applied") && err.contains("algo = \"grpo\""), "{err}");
    let saved = TrainConfig::load(&out.join("resolved/config.toml")).unwrap();
    assert_eq!((saved.rl.algo.name(), saved.rl.clip_high, saved.rl.dual_clip, saved.data.eval_size), ("grpo", 0.2, 0.0, 3));
    let o = std::process::Command::new(pgpo).args(["eval", "--checkpoint", out.join("resolved/checkpoints/rl-final").to_str().unwrap(), "--k", "1"]).output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && said.contains("3 held-out prompts"), "{said}{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&out);
}
