//! `pgpo compare`: each algorithm on the same budget and seeds. Per seed, one SFT warm-up is
//! shared by every algorithm (so they start from the same model), then each runs its RL
//! phase. Reports held-out accuracy (mean ± std over seeds), the mean TVD of grounded
//! (answer) tokens against the others, and the gradient-variance estimate, as markdown and
//! as an SVG bar chart.

use super::config::TrainConfig;
use super::run::{run, Event};
use crate::error::{Error, Result};
use plotters::prelude::*;
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub struct AlgoResult {
    pub algo: String,
    /// Per seed: held-out accuracy after RL.
    pub accuracy: Vec<f64>,
    pub sft_accuracy: Vec<f64>,
    pub tvd_grounded: f64,
    pub tvd_other: f64,
    pub grad_variance: f64,
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

/// Mean of `key` over the RL rows of a metrics file (finite values only).
fn rl_mean(metrics: &Path, key: &str) -> Result<f64> {
    let text = std::fs::read_to_string(metrics).map_err(|e| crate::io::bad(metrics, format!("cannot be read: {e}")))?;
    let vals: Vec<f64> = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|r| r["phase"] == "rl").filter_map(|r| r[key].as_f64()).filter(|v| v.is_finite()).collect();
    Ok(if vals.is_empty() { f64::NAN } else { vals.iter().sum::<f64>() / vals.len() as f64 })
}

pub fn compare(base: &TrainConfig, algos: &[String], seeds: usize, on: &mut dyn FnMut(&str, Event)) -> Result<Comparison> {
    if seeds == 0 || algos.is_empty() {
        return Err(Error::input("compare", "needs at least one algorithm and one seed"));
    }
    let mut results: Vec<AlgoResult> = algos.iter().map(|a| AlgoResult { algo: a.clone(), accuracy: vec![], sft_accuracy: vec![], tvd_grounded: 0.0, tvd_other: 0.0, grad_variance: 0.0 }).collect();
    for seed in 0..seeds {
        let mut sft = base.clone();
        sft.name = format!("{}-seed{seed}-sft", base.name);
        sft.seed = base.seed + seed as u64;
        sft.rl.steps = 0;
        let label = format!("seed {seed} sft");
        let s = run(sft, &mut |e| on(&label, e))?;
        let start = s.checkpoints.iter().find(|p| p.ends_with("sft-final")).cloned().ok_or_else(|| Error::input("compare", "the SFT run saved no sft-final checkpoint"))?;
        for r in results.iter_mut() {
            let mut cfg = base.clone();
            cfg.name = format!("{}-seed{seed}-{}", base.name, r.algo);
            cfg.seed = base.seed + seed as u64;
            cfg.model = Some(start.clone());
            cfg.sft.steps = 0;
            cfg.rl.algo = r.algo.clone();
            cfg.validate("compare")?;
            let label = format!("seed {seed} {}", r.algo);
            let s = run(cfg, &mut |e| on(&label, e))?;
            r.accuracy.push(s.rl_accuracy);
            r.sft_accuracy.push(s.init_accuracy);
            r.tvd_grounded += rl_mean(&s.metrics, "tvd_grounded")? / seeds as f64;
            r.tvd_other += rl_mean(&s.metrics, "tvd_other")? / seeds as f64;
            r.grad_variance += rl_mean(&s.metrics, "grad_variance")? / seeds as f64;
        }
    }
    let dir = base.out_dir.join(format!("{}-compare", base.name));
    std::fs::create_dir_all(&dir).map_err(|e| crate::io::bad(&dir, format!("cannot create: {e}")))?;
    let mut md = format!("# {}: {} on {seeds} seed(s), {} RL steps each from a shared SFT start\n\n", base.name, algos.join(", "), base.rl.steps);
    md.push_str("| algorithm | held-out accuracy after SFT | after RL (mean ± std) | TVD answer tokens | TVD other tokens | gradient variance |\n|---|---:|---:|---:|---:|---:|\n");
    for r in &results {
        let (m, s) = mean_std(&r.accuracy);
        let (sm, _) = mean_std(&r.sft_accuracy);
        let _ = writeln!(md, "| {} | {:.1} % | {:.1} ± {:.1} % | {:.4} | {:.4} | {:.3} |", r.algo, sm * 100.0, m * 100.0, s * 100.0, r.tvd_grounded, r.tvd_other, r.grad_variance);
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
            .caption("held-out accuracy after RL (mean ± std over seeds)", ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..results.len() as f64, 0f64..top)
            .map_err(|e| err(&e))?;
        let names: Vec<String> = results.iter().map(|r| r.algo.clone()).collect();
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
