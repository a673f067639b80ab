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

/// `pgpo plan`: the memory estimate of a configuration for a model config, term by term,
/// without loading weights; over the budget, the first knob that brings it under.
pub fn plan(config: Option<&Path>, overrides: &[String], model_config: &str, memory_gb: f64, image: [usize; 2], prompt_text: usize) -> Result<bool> {
    use pgpo::train::plan::{fitting_change, plan, sizes, Shape, QWEN2_5_VL_3B};
    let cfg = load(config, overrides)?;
    let (text, file) = match model_config {
        "qwen2.5-vl-3b" => (QWEN2_5_VL_3B.to_string(), "Qwen2.5-VL-3B-Instruct's config.json".to_string()),
        path => (std::fs::read_to_string(path).map_err(|e| Error::Config { file: path.into(), field: String::new(), msg: format!("cannot be read: {e}") })?, path.to_string()),
    };
    let c = pgpo::model::ModelConfig::parse(&text, &file)?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let half = ["bfloat16", "float16"].iter().any(|d| json["torch_dtype"] == *d || json["dtype"] == *d);
    let shape = Shape { image, prompt_text, stored_bytes: if half { 2 } else { 4 }, memory: Some((memory_gb * 1e9) as u64) };
    let s = sizes(&cfg, &c, shape.stored_bytes);
    let e = plan(&cfg, &c, &shape);
    let gb = |b: u64| format!("{:.2} GB", b as f64 / 1e9);
    println!("{file}: {:.2} B values ({} bytes each for matrices), {:.1} M trained{}", s.values as f64 / 1e9, shape.stored_bytes, s.trained as f64 / 1e6, cfg.lora.as_ref().map_or(String::new(), |l| format!(" (LoRA r {} on {:?})", l.r, l.targets)));
    println!("rl: {} prompts x G {}, {} new tokens, mini-batch {}; image {}x{}; recompute {:?}", cfg.rl.prompts, cfg.rl.group, cfg.rl.max_new_tokens, cfg.rl.mini_batch, image[0], image[1], cfg.recompute_for(s.values as f64));
    // Parts and phases the run does not have (no SFT steps) are left out.
    for (what, bytes, _) in e.parts.iter().filter(|p| p.1 > 0) {
        println!("  {:>10}  {what}", gb(*bytes));
    }
    for (phase, bytes) in e.phases.iter().filter(|p| p.1 > 0) {
        println!("  {:>10}  peak of the {phase}", gb(*bytes));
    }
    let budget = (memory_gb * 1e9) as u64;
    if e.peak <= budget {
        println!("peak {} fits in {memory_gb} GB", gb(e.peak));
    } else {
        match fitting_change(&cfg, &c, &shape, budget) {
            Some((what, fixed)) => println!("peak {} does not fit in {memory_gb} GB; with {what} it is {}", gb(e.peak), gb(fixed.peak)),
            None => println!("peak {} does not fit in {memory_gb} GB, even with recomputation, LoRA, one response per mini-batch, one prompt per step and rank 1: the model itself is too large", gb(e.peak)),
        }
    }
    Ok(e.peak <= budget)
}
