//! `pgpo train` and `pgpo eval`: the trainer from a TOML config with command-line overrides,
//! and the held-out accuracy of a checkpoint.

use pgpo::train::progress::Reporter;
use pgpo::train::{run, TrainConfig};
use pgpo::{Error, Result};
use std::path::Path;

/// `key=value` overrides in TOML syntax (`rl.algo="grpo"`, `rl.steps=10`), applied to the
/// file's table before it is checked, so they get the same errors.
pub fn load(config: Option<&Path>, overrides: &[String]) -> Result<TrainConfig> {
    let (text, file) = match config {
        Some(p) => (std::fs::read_to_string(p).map_err(|e| Error::Config { file: p.display().to_string(), field: String::new(), msg: format!("cannot be read: {e}") })?, p.display().to_string()),
        None => (String::new(), "the default config".to_string()),
    };
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Config { file: file.clone(), field: String::new(), msg: format!("is not valid TOML: {}", e.to_string().trim()) })?;
    for o in overrides {
        let (key, value) = o.split_once('=').ok_or_else(|| Error::Config { file: "--set".into(), field: o.clone(), msg: "must be key=value".into() })?;
        let value: toml::Value = format!("v = {value}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(value.to_string()));
        let mut at = &mut table;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default())).as_table_mut().ok_or_else(|| Error::Config { file: "--set".into(), field: key.into(), msg: format!("`{part}` is not a section") })?;
        }
        at.insert(parts[parts.len() - 1].to_string(), value);
    }
    TrainConfig::parse(&toml::to_string(&table).unwrap_or_default(), &file)
}

pub fn train(config: Option<&Path>, overrides: &[String]) -> Result<bool> {
    let cfg = load(config, overrides)?;
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
    use pgpo::model::Weights;
    use pgpo::rl::rewards::RewardConfig;
    use pgpo::train::data::Source;
    use pgpo::train::trainer::evaluate;
    let cfg = load(config, overrides)?;
    let device = pgpo::Device::parse(&cfg.backend)?;
    let w = Weights::load(checkpoint, &device)?;
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
    let cfg = load(config, overrides)?;
    let algos: Vec<String> = algos.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let mut reporter = Reporter::default();
    let result = pgpo::train::compare::compare(&cfg, &algos, seeds, &mut |label, e| {
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
