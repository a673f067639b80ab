//! `pgpo plan`: the estimate for Qwen2.5-VL-3B's published config without weights. The
//! paper's shapes with LoRA fit a 24 GB card; a full fine-tune with 16 prompts does not, and
//! the change `plan` names really brings it under when applied. Catches a suggestion that
//! does not fit (or a knob that the estimate ignores) and an exit code that hides a misfit.

use std::process::Command;

fn plan(sets: &[&str]) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgpo"));
    c.args(["plan", "--model-config", "qwen2.5-vl-3b", "--memory-gb", "24"]);
    for s in sets {
        c.args(["--set", s]);
    }
    let o = c.output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

const PAPER: [&str; 4] = ["rl.group=5", "rl.max_new_tokens=1024", "rl.mini_batch=8", "sft.steps=0"];

#[test]
fn the_papers_shapes_with_lora_fit_24_gb_and_a_named_change_fits_what_does_not() {
    let (fits, text) = plan(&[&PAPER[..], &["rl.prompts=2", "lora.r=64"]].concat());
    assert!(fits, "{text}");
    for phase in ["rollout", "scoring", "RL update"] {
        assert!(text.contains(&format!("peak of the {phase}")), "{text}");
    }
    let (fits, text) = plan(&[&PAPER[..], &["rl.prompts=16"]].concat());
    assert!(!fits, "a full fine-tune of 3B with 16 prompts cannot fit 24 GB: {text}");
    let change = text.lines().last().unwrap().split("; with ").nth(1).and_then(|r| r.split(" it is ").next()).unwrap_or_else(|| panic!("no change named: {text}"));
    let mut sets: Vec<String> = [&PAPER[..], &["rl.prompts=16"]].concat().iter().map(|s| s.to_string()).collect();
    sets.extend(change.split(", ").map(|kv| kv.replace(" = ", "=")));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let (fits, again) = plan(&sets);
    assert!(fits, "applying `{change}` does not fit: {again}");
}
