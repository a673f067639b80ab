//! `pgpo compare`: each algorithm on the same budget and seeds. Per seed, one SFT warm-up is
//! shared by every algorithm (so they start from the same model), then each runs its RL
//! phase. Reports held-out accuracy (greedy and avg@k, mean ± std over seeds), the mean TVD of
//! grounded (answer) tokens against the others, the gradient-variance estimate, and each
//! algorithm paired against a baseline (DAPO when it runs) seed by seed: the mean paired
//! difference with its 95 % interval. Markdown and an SVG bar chart.

use super::config::TrainConfig;
use super::rl_options::Algo;
use super::run::{run, Event};
use crate::error::{Error, Result};
use plotters::prelude::*;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One algorithm's results, one entry per seed.
pub struct AlgoResult {
    pub algo: Algo,
    pub sft_accuracy: Vec<f64>,
    /// Held-out accuracy after RL: greedy, and avg@k at temperature 1.0.
    pub accuracy: Vec<f64>,
    pub avg_accuracy: Vec<f64>,
    /// Mean over the RL steps of the TVD of answer tokens and of the other tokens.
    pub tvd_grounded: Vec<f64>,
    pub tvd_other: Vec<f64>,
    pub grad_variance: Vec<f64>,
}

impl AlgoResult {
    /// The measures paired across algorithms: (name, per-seed values).
    fn measures(&self) -> [(&'static str, Vec<f64>); 6] {
        let gap = self.tvd_grounded.iter().zip(&self.tvd_other).map(|(g, o)| g - o).collect();
        [
            ("held-out accuracy, greedy (%)", self.accuracy.iter().map(|a| a * 100.0).collect()),
            ("held-out accuracy, avg@4 (%)", self.avg_accuracy.iter().map(|a| a * 100.0).collect()),
            ("TVD, answer tokens", self.tvd_grounded.clone()),
            ("TVD, template tokens", self.tvd_other.clone()),
            ("TVD, answer minus template", gap),
            ("gradient variance", self.grad_variance.clone()),
        ]
    }
}

pub struct Comparison {
    pub results: Vec<AlgoResult>,
    pub markdown: PathBuf,
    pub plot: PathBuf,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, var.sqrt())
}

/// Student's t quantile for a two-sided 95 % interval with `df` degrees of freedom.
fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    if df == 0 { f64::NAN } else { T.get(df - 1).copied().unwrap_or(1.960) }
}

/// The mean of the paired differences `a - b` and the half-width of its 95 % interval
/// (Student's t over the seeds; NaN with one seed).
pub fn paired(a: &[f64], b: &[f64]) -> (f64, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let (m, s) = mean_std(&d);
    (m, t95(d.len().saturating_sub(1)) * s / (d.len() as f64).sqrt())
}

/// Mean of `key` over the RL rows of a metrics file (finite values only).
fn rl_mean(metrics: &Path, key: &str) -> Result<f64> {
    let text = std::fs::read_to_string(metrics).map_err(|e| crate::io::bad(metrics, format!("cannot be read: {e}")))?;
    let vals: Vec<f64> = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|r| r["phase"] == "rl").filter_map(|r| r[key].as_f64()).filter(|v| v.is_finite()).collect();
    Ok(if vals.is_empty() { f64::NAN } else { vals.iter().sum::<f64>() / vals.len() as f64 })
}

/// Runs the comparison. `config_for(algo)` gives each algorithm's configuration (its preset
/// under the user's explicit fields); the SFT run of each seed uses the first algorithm's.
pub fn compare(config_for: &dyn Fn(Algo) -> Result<TrainConfig>, algos: &[Algo], seeds: usize, on: &mut dyn FnMut(&str, Event)) -> Result<Comparison> {
    if seeds == 0 || algos.is_empty() {
        return Err(Error::input("compare", "needs at least one algorithm and one seed"));
    }
    let base = config_for(algos[0])?;
    let mut results: Vec<AlgoResult> = algos
        .iter()
        .map(|&algo| AlgoResult { algo, sft_accuracy: vec![], accuracy: vec![], avg_accuracy: vec![], tvd_grounded: vec![], tvd_other: vec![], grad_variance: vec![] })
        .collect();
    for seed in 0..seeds {
        let mut sft = base.clone();
        sft.name = format!("{}-seed{seed}-sft", base.name);
        sft.seed = base.seed + seed as u64;
        sft.rl.steps = 0;
        let label = format!("seed {seed} sft");
        let s = run(sft, &mut |e| on(&label, e))?;
        let start = s.checkpoints.iter().find(|p| p.ends_with("sft-final")).cloned().ok_or_else(|| Error::input("compare", "the SFT run saved no sft-final checkpoint"))?;
        for r in results.iter_mut() {
            let mut cfg = config_for(r.algo)?;
            cfg.name = format!("{}-seed{seed}-{}", base.name, r.algo);
            cfg.seed = base.seed + seed as u64;
            cfg.model = Some(start.clone());
            cfg.sft.steps = 0;
            cfg.validate("compare")?;
            let label = format!("seed {seed} {}", r.algo);
            let s = run(cfg, &mut |e| on(&label, e))?;
            r.sft_accuracy.push(s.init_accuracy);
            r.accuracy.push(s.rl_accuracy);
            r.avg_accuracy.push(s.avg_at_k.1);
            r.tvd_grounded.push(rl_mean(&s.metrics, "tvd_grounded")?);
            r.tvd_other.push(rl_mean(&s.metrics, "tvd_other")?);
            r.grad_variance.push(rl_mean(&s.metrics, "grad_variance")?);
        }
    }
    let dir = base.out_dir.join(format!("{}-compare", base.name));
    std::fs::create_dir_all(&dir).map_err(|e| crate::io::bad(&dir, format!("cannot create: {e}")))?;
    let names: Vec<&str> = algos.iter().map(|a| a.name()).collect();
    let n_eval = base.data.eval_size;
    let mut md = format!("# {}: {} on {seeds} seed(s), {} RL steps each from a shared SFT start\n\n", base.name, names.join(", "), base.rl.steps);
    let _ = writeln!(md, "Held-out accuracy is over {n_eval} prompts (avg@4: 4 samples each at temperature 1.0); TVD is the mean over the RL steps of the metrics' tvd_grounded and tvd_other.\n");
    md.push_str("| algorithm | after SFT | greedy after RL (mean ± std) | avg@4 after RL | TVD answer tokens | TVD template tokens | gradient variance |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for r in &results {
        let pct = |v: &[f64]| {
            let (m, s) = mean_std(v);
            format!("{:.1} ± {:.1} %", m * 100.0, s * 100.0)
        };
        let _ = writeln!(
            md,
            "| {} | {:.1} % | {} | {} | {:.4} | {:.4} | {:.3} |",
            r.algo,
            mean_std(&r.sft_accuracy).0 * 100.0,
            pct(&r.accuracy),
            pct(&r.avg_accuracy),
            mean_std(&r.tvd_grounded).0,
            mean_std(&r.tvd_other).0,
            mean_std(&r.grad_variance).0
        );
    }
    let baseline = results.iter().position(|r| r.algo == Algo::Dapo).unwrap_or(0);
    for r in results.iter().enumerate().filter(|(i, _)| *i != baseline).map(|(_, r)| r) {
        let b = &results[baseline];
        let _ = writeln!(md, "\n## {} paired against {} (same SFT start, same seed; difference {} - {})\n", r.algo, b.algo, r.algo, b.algo);
        md.push_str("| measure | mean difference | 95 % interval | per seed |\n|---|---:|---:|---|\n");
        for ((name, x), (_, y)) in r.measures().iter().zip(b.measures().iter()) {
            let (m, h) = paired(x, y);
            let per: Vec<String> = x.iter().zip(y).map(|(a, b)| format!("{:+.3}", a - b)).collect();
            let _ = writeln!(md, "| {name} | {m:+.3} | [{:+.3}, {:+.3}] | {} |", m - h, m + h, per.join(", "));
        }
    }
    let markdown = dir.join("compare.md");
    crate::io::atomic(&markdown, |tmp| Ok(std::fs::write(tmp, &md)?))?;
    let plot = dir.join("compare.svg");
    bar_chart(&results, &plot)?;
    Ok(Comparison { results, markdown, plot })
}

fn bar_chart(results: &[AlgoResult], out: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::input("plot", format!("cannot draw: {e}"));
    let tmp = out.with_extension("tmp-pgpo.svg");
    {
        let root = SVGBackend::new(&tmp, (640, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let top = results.iter().map(|r| mean_std(&r.accuracy)).map(|(m, s)| m + s).fold(0.1, f64::max) * 100.0 * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption("held-out accuracy after RL, greedy (mean ± std over seeds)", ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..results.len() as f64, 0f64..top)
            .map_err(|e| err(&e))?;
        let names: Vec<String> = results.iter().map(|r| r.algo.to_string()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(results.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.26 { names.get(i).cloned().unwrap_or_default() } else { String::new() }
            })
            .y_desc("%")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, r) in results.iter().enumerate() {
            let (m, s) = mean_std(&r.accuracy);
            let x = i as f64;
            chart.draw_series(std::iter::once(Rectangle::new([(x + 0.2, 0.0), (x + 0.8, m * 100.0)], BLUE.mix(0.6).filled()))).map_err(|e| err(&e))?;
            chart.draw_series(std::iter::once(PathElement::new(vec![(x + 0.5, (m - s) * 100.0), (x + 0.5, (m + s) * 100.0)], BLACK.stroke_width(2)))).map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| crate::io::bad(out, format!("cannot rename into place: {e}")))
}
