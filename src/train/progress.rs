//! A terminal reporter for `run`'s events: an indicatif bar per phase with the live loss,
//! reward, accuracy and TVD, and a line per evaluation and checkpoint. Used by `pgpo train`
//! and the examples (the library itself never prints).

use super::run::Event;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Default)]
pub struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    pub fn on(&mut self, e: Event) {
        match e {
            Event::Phase { name, steps } => {
                if let Some(b) = self.bar.take() {
                    b.finish();
                }
                let bar = ProgressBar::new(steps as u64);
                let style = ProgressStyle::with_template("{prefix:>4} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style.progress_chars("=> "));
                bar.set_prefix(name);
                self.bar = Some(bar);
            }
            Event::Step { phase, stats, .. } => {
                if let Some(b) = &self.bar {
                    let msg = if phase == "sft" {
                        format!("loss {:.3}", stats.get("loss"))
                    } else {
                        format!(
                            "reward {:.2}  acc {:.2}  tvd {:.3} (answer {:.3} / rest {:.3})  kept {:.2}",
                            stats.get("reward"),
                            stats.get("accuracy"),
                            stats.get("tvd_mean"),
                            stats.get("tvd_grounded"),
                            stats.get("tvd_other"),
                            stats.get("kept_fraction")
                        )
                    };
                    b.set_message(msg);
                    b.inc(1);
                }
            }
            Event::Eval { what, accuracy } => self.line(format!("held-out accuracy ({what}): {:.1} %", accuracy * 100.0)),
            Event::Resumed { checkpoint, phase, step } => self.line(format!("resuming from {} ({phase} step {step})", checkpoint.display())),
            Event::Note(s) => self.line(s),
            Event::Checkpoint(p) => self.line(format!("checkpoint {}", p.display())),
            Event::Skipped(rows) => {
                for (line, why) in rows {
                    self.line(format!("skipped JSONL line {line}: {why}"));
                }
                self.line(format!("{} rows skipped", rows.len()));
            }
        }
    }

    fn line(&self, s: String) {
        match &self.bar {
            Some(b) if !b.is_hidden() => b.println(s),
            _ => eprintln!("{s}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
