//! `pgpo train` and `pgpo eval`: the trainer from a TOML config with command-line overrides,
//! and the held-out accuracy of a checkpoint.

use pgpo::train::progress::Reporter;
use pgpo::train::rl_options::Algo;
use pgpo::train::{run, TrainConfig};
use pgpo::{Error, Result};
use std::path::Path;

/// A config file's table (empty without one) with `key=value` overrides in TOML syntax
/// (`rl.steps=10`; a value that is not TOML is a string, so `rl.algo=grpo` and
/// `rl.algo="grpo"` are the same), applied before it is checked, so they get the same errors.
/// Returns the table and the name of where it came from.
fn table(config: Option<&Path>, overrides: &[String]) -> Result<(toml::Table, String)> {
    let (text, file) = match config {
        Some(p) => (std::fs::read_to_string(p).map_err(|e| Error::Config { file: p.display().to_string(), field: String::new(), msg: format!("cannot be read: {e}") })?, p.display().to_string()),
        None => (String::new(), "the default config".to_string()),
    };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Config { file: file.clone(), field: String::new(), msg: format!("is not valid TOML: {}", e.to_string().trim()) })?;
    set(&mut table, overrides)?;
    Ok((table, file))
}

/// Applies `key=value` overrides to `table`.
fn set(table: &mut toml::Table, overrides: &[String]) -> Result<()> {
    for o in overrides {
        let (key, value) = o.split_once('=').ok_or_else(|| Error::Config { file: "--set".into(), field: o.clone(), msg: "must be key=value".into() })?;
        let value: toml::Value = format!("v = {value}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(value.to_string()));
        let mut at = &mut *table;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default())).as_table_mut().ok_or_else(|| Error::Config { file: "--set".into(), field: key.into(), msg: format!("`{part}` is not a section") })?;
        }
        at.insert(parts[parts.len() - 1].to_string(), value);
    }
    Ok(())
}

/// The config of a file and overrides: `rl.algo`'s preset under the fields they set.
pub fn load(config: Option<&Path>, overrides: &[String]) -> Result<TrainConfig> {
    let (t, file) = table(config, overrides)?;
    TrainConfig::from_table(&t, &file)
}

pub fn train(config: Option<&Path>, overrides: &[String]) -> Result<bool> {
    let mut cfg = load(config, overrides)?;
    // A resumed run continues with the configuration it started with (its run folder's
    // config.toml); --set overrides still apply over it, e.g. to add steps.
    let saved = cfg.run_dir().join("config.toml");
    if cfg.resume && saved.exists() {
        cfg = load(Some(&saved), overrides)?;
        cfg.resume = true;
        eprintln!("resuming with {} (and the --set overrides); the --config file is not read again", saved.display());
    }
    eprintln!("training {} on {}: SFT {} steps, then {} {} steps; output in {}", cfg.name, cfg.backend, cfg.sft.steps, cfg.rl.algo, cfg.rl.steps, cfg.run_dir().display());
    let mut reporter = Reporter::default();
    let result = run(cfg, &mut |e| reporter.on(e));
    reporter.finish();
    let s = result?;
    println!(
        "held-out accuracy: fresh {:.1} %, after SFT {:.1} %, after RL {:.1} % (avg@{} {:.1} %)",
        s.init_accuracy * 100.0,
        s.sft_accuracy * 100.0,
        s.rl_accuracy * 100.0,
        s.avg_at_k.0,
        s.avg_at_k.1 * 100.0
    );
    println!("TVD: answer tokens {:.4}, template tokens {:.4}", s.tvd_report.grounded_mean, s.tvd_report.template_mean);
    println!("metrics: {}", s.metrics.display());
    println!("TVD report: {}", s.tvd_report.path.display());
    println!("curves: {}", s.plot.display());
    for c in &s.checkpoints {
        println!("checkpoint: {}", c.display());
    }
    Ok(true)
}

/// `pgpo eval`: greedy accuracy and avg@k at temperature 1.0 on the held-out split.
pub fn eval(checkpoint: &Path, k: usize, config: Option<&Path>, overrides: &[String]) -> Result<bool> {
    use pgpo::model::processor::Processor;
    use pgpo::rl::rewards::RewardConfig;
    use pgpo::train::data::Source;
    use pgpo::train::trainer::evaluate;
    // Without --config, the run's own config.toml (beside its checkpoints folder), if any.
    let saved = checkpoint.parent().and_then(Path::parent).map(|run| run.join("config.toml")).filter(|p| p.exists());
    let cfg = match (config, &saved) {
        (None, Some(saved)) => load(Some(saved), overrides)?,
        _ => load(config, overrides)?,
    };
    let device = pgpo::Device::parse(&cfg.backend)?;
    // A LoRA run's checkpoint is an adapter folder on the run's base.
    let w = pgpo::model::peft::load_model_or_adapter(checkpoint, &device)?;
    let p = Processor::load(checkpoint, Some(&w.config))?;
    let items = Source::new(&cfg.data)?.eval_items(&p)?;
    let rc = RewardConfig { accuracy_weight: cfg.rl.accuracy_weight, format_weight: cfg.rl.format_weight };
    let greedy = evaluate(&w, &p, &items, &device, cfg.rl.max_new_tokens, 1, true, cfg.seed, &rc)?;
    let avg = evaluate(&w, &p, &items, &device, cfg.rl.max_new_tokens, k, false, cfg.seed, &rc)?;
    println!("{}: {} held-out prompts, greedy accuracy {:.1} %, avg@{k} (temperature 1.0) {:.1} %", checkpoint.display(), items.len(), greedy * 100.0, avg * 100.0);
    Ok(true)
}

/// `pgpo compare`: each algorithm on the same budget and seeds.
pub fn compare(algos: &str, seeds: usize, config: Option<&Path>, overrides: &[String]) -> Result<bool> {
    let (base, file) = table(config, overrides)?;
    let algos = algos
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Algo::parse(s).ok_or_else(|| Error::input("--algos", format!("{s:?} is not an algorithm; choose from {:?}", Algo::ALL.map(Algo::name)))))
        .collect::<Result<Vec<_>>>()?;
    // Each algorithm gets its preset under the fields the file and --set give explicitly.
    let config_for = |algo: Algo| {
        let mut t = base.clone();
        set(&mut t, &[format!("rl.algo=\"{algo}\"")])?;
        TrainConfig::from_table(&t, &file)
    };
    let mut reporter = Reporter::default();
    let result = pgpo::train::compare::compare(&config_for, &algos, seeds, &mut |label, e| {
        if let pgpo::train::Event::Phase { name, steps } = e {
            eprintln!("{label}: {name} ({steps} steps)");
        }
        reporter.on(e)
    });
    reporter.finish();
    let c = result?;
    print!("{}", std::fs::read_to_string(&c.markdown).unwrap_or_default());
    println!("\nwrote {} and {}", c.markdown.display(), c.plot.display());
    Ok(true)
}
