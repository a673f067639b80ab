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
