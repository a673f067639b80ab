//! The TVD report: an HTML page that colours every token of a few held-out responses by its
//! token visual dependency (k3 of the clean and blind log-probs, from `kl_dual`), and states
//! the mean TVD of the visually grounded answer tokens against the template tokens.

use super::batch;
use super::trainer::Trainer;
use crate::error::Result;
use crate::model::{generate, GenerateOptions, ParamVars, Sampling};
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub struct TvdSummary {
    pub path: PathBuf,
    pub grounded_mean: f64,
    pub template_mean: f64,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Writes `dir/tvd_report.html` for the first `n` held-out items, with greedy responses.
pub fn tvd_report(t: &mut Trainer, dir: &Path, n: usize) -> Result<TvdSummary> {
    let items: Vec<_> = t.eval_items.iter().take(n).cloned().collect();
    let tape = crate::autograd::Tape::new();
    let pv = ParamVars::frozen(&tape, &t.weights);
    let config = t.weights.config.clone();
    let prompts: Vec<_> = items.iter().map(|i| &i.prompt).collect();
    let empty: Vec<&[u32]> = vec![&[]; prompts.len()];
    let packed = batch::pack(&config, &prompts, &empty, t.processor.pad_id, &t.device)?;
    let o = GenerateOptions { max_new_tokens: t.cfg.rl.max_new_tokens, sampling: Sampling::Greedy, stop_ids: t.processor.stop_ids.clone(), suppress_ids: t.weights.config.vision_token_ids(), ..Default::default() };
    let g = generate(&pv, &config, &packed.inputs, &o, |_, _| {})?;
    let tails: Vec<&[u32]> = g.completions.iter().map(|c| c.tokens.as_slice()).collect();
    let tvd = super::visual_dependency::visual_dependency(&pv, &t.scoring(), &prompts, &tails, 1.0)?.kl.k3.to_vec()?;
    let max = tvd.iter().cloned().fold(1e-6f32, f32::max);

    let (mut g_sum, mut g_n, mut o_sum, mut o_n) = (0.0, 0.0, 0.0, 0.0);
    let mut body = String::new();
    let mut at = 0;
    for (i, tail) in tails.iter().enumerate() {
        let grounded = super::rl_step::grounded_tokens(t, tail)?;
        let text = t.processor.chat.decode(tail)?;
        let ok = t.reward(&text, &items[i].answer).accuracy > 0.0;
        let _ = write!(body, "<div class=\"r\"><div class=\"q\">{} <span class=\"a\">(truth: {}, {})</span></div>", escape(&t.processor.chat.decode(&items[i].prompt.ids)?.replace("system\nYou are a helpful assistant.\nuser\n", "")), escape(&items[i].answer), if ok { "correct" } else { "wrong" });
        for (k, &tok) in tail.iter().enumerate() {
            let v = tvd[at + k];
            if grounded[k] {
                g_sum += f64::from(v);
                g_n += 1.0;
            } else {
                o_sum += f64::from(v);
                o_n += 1.0;
            }
            let piece = t.processor.chat.decode(&[tok])?;
            let alpha = (v / max).sqrt().min(1.0);
            let _ = write!(body, "<span class=\"t{}\" style=\"background: rgba(220, 60, 20, {alpha:.3})\" title=\"TVD {v:.4}\">{}</span>", if grounded[k] { " g" } else { "" }, escape(if piece.is_empty() { "⏎" } else { &piece }));
        }
        body.push_str("</div>\n");
        at += tail.len();
    }
    let mean = |s: f64, n: f64| if n > 0.0 { s / n } else { 0.0 };
    let (gm, om) = (mean(g_sum, g_n), mean(o_sum, o_n));
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>TVD report: {name}</title>\n<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} .r{{margin:1em 0;font-family:monospace}} .q{{font-family:sans-serif;color:#444}} .a{{color:#888}} .g{{outline:1px solid #333}}</style>\n<h1>Token visual dependency: {name}</h1>\n<p>Each response token is shaded by its TVD (k3 of the log-probs with and without the image, the blind pass hiding the image tokens); the outlined tokens are the answer inside <code>\\boxed{{}}</code>, which only the image decides.</p>\n<p><b>Mean TVD: answer (grounded) tokens {gm:.4} ({gn} tokens); template tokens {om:.4} ({on} tokens).</b></p>\n{body}",
        name = escape(&t.cfg.name),
        gn = g_n as usize,
        on = o_n as usize
    );
    let path = dir.join("tvd_report.html");
    crate::io::atomic(&path, |tmp| Ok(std::fs::write(tmp, html)?))?;
    Ok(TvdSummary { path, grounded_mean: gm, template_mean: om })
}
