//! Curves of a run from its metrics.jsonl, drawn with plotters as one SVG of four panels:
//! SFT loss, RL reward and rollout accuracy, TVD of answer and template tokens, and the
//! held-out accuracy at each evaluation.

use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

type Series = Vec<(f64, f64)>;

fn series(rows: &[serde_json::Value], phase: &str, key: &str) -> Series {
    rows.iter()
        .filter(|r| r["phase"] == phase)
        .filter_map(|r| Some((r["step"].as_f64()?, r[key].as_f64()?)))
        .filter(|(_, y)| y.is_finite())
        .collect()
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::input("plot", format!("cannot draw: {e}"))
}

fn panel(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, title: &str, lines: &[(&str, &Series, RGBColor)]) -> Result<()> {
    let all: Vec<&(f64, f64)> = lines.iter().flat_map(|(_, s, _)| s.iter()).collect();
    let (x0, x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if all.is_empty() {
        return Ok(());
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
        .map_err(plot_err)?;
    chart.configure_mesh().x_desc("step").draw().map_err(plot_err)?;
    for (name, s, colour) in lines {
        let c = *colour;
        chart
            .draw_series(LineSeries::new(s.iter().copied(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_err)?;
    Ok(())
}

/// Writes `out` (SVG) from the rows of `metrics`.
pub fn plot_run(metrics: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).map_err(|e| crate::io::bad(metrics, format!("cannot be read: {e}")))?;
    let rows: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let tmp = out.with_extension("tmp-pgpo.svg");
    {
        let root = SVGBackend::new(&tmp, (1200, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let areas = root.split_evenly((2, 2));
        panel(&areas[0], "SFT loss", &[("loss", &series(&rows, "sft", "loss"), BLUE)])?;
        panel(&areas[1], "RL rollouts", &[("reward", &series(&rows, "rl", "reward"), BLUE), ("accuracy", &series(&rows, "rl", "accuracy"), RED)])?;
        panel(&areas[2], "TVD", &[("answer tokens", &series(&rows, "rl", "tvd_grounded"), RED), ("other tokens", &series(&rows, "rl", "tvd_other"), BLUE)])?;
        panel(&areas[3], "held-out accuracy", &[("greedy", &series(&rows, "eval", "accuracy"), BLACK)])?;
        root.present().map_err(plot_err)?;
    }
    std::fs::rename(&tmp, out).map_err(|e| crate::io::bad(out, format!("cannot rename into place: {e}")))
}
