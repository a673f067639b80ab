//! The RL update's forward with each distinct prompt run once and its responses extending it
//! (`forward_shared_hidden`) against separate full passes over every prompt + response: the
//! final hidden states at the rows that predict each response token and the gradient of every
//! parameter, vision tower included, with and without recomputation, on every backend.

mod common;

use pgpo::autograd::{ops as ag, Tape};
use pgpo::model::{forward_hidden, forward_shared_hidden, ForwardOptions, Keep, ParamVars, Recompute};
use pgpo::train::batch;
use pgpo::train::config::TrainConfig;
use pgpo::train::trainer::Trainer;
use pgpo::Tensor;
use std::collections::HashMap;

fn toy(backend: &str) -> TrainConfig {
    let mut c = common::toy_train_config(&format!("shared-{backend}"), backend);
    c.tiny.layers = 2;
    c
}

/// Hidden states at `rows` and every parameter's gradient of sum(hidden ⊙ probe).
fn run(t: &Trainer, hidden: impl Fn(&ParamVars) -> pgpo::Result<pgpo::autograd::Var>, probe: &[f32], tape: &Tape) -> (Vec<f32>, HashMap<String, Vec<f32>>) {
    let pv = ParamVars::trainable(tape, &t.weights);
    let h = hidden(&pv).unwrap();
    let p = tape.constant(Tensor::from_slice(probe, h.shape(), &t.device).unwrap());
    let loss = ag::sum(&ag::mul(&h, &p).unwrap()).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let g = pv.gradients(&grads).into_iter().map(|(n, g)| (n, g.to_vec().unwrap())).collect();
    (h.value().to_vec().unwrap(), g)
}

/// Mistakes this catches: prefix keys and values that do not pass the responses' gradients
/// back (the vision tower and the prompt rows would get none: checked by running it once with
/// the gather's gradient dropped, which failed here: a vision weight's gradient off by 89 % of its largest entry),
/// a response attending to another prompt's prefix (two prompts share their ids and differ
/// only in the image), a wrong causal offset or a predicting row one off.
#[test]
fn shared_prompt_update_equals_full_passes_in_values_and_every_gradient() {
    for backend in ["cpu", "wgpu"] {
        if backend == "wgpu" && common::backend("wgpu").is_none() {
            continue;
        }
        let cfg = toy(backend);
        let mut t = Trainer::new(cfg.clone()).unwrap();
        let pool = t.next_items(64).unwrap();
        let (a, b) = common::same_question_other_image(&pool);
        let c = (0..pool.len()).find(|&k| pool[k].prompt.ids.len() != pool[a].prompt.ids.len()).unwrap_or((a + 2) % pool.len());
        let items = [&pool[a], &pool[b], &pool[c]];
        let mut rng = pgpo::rng::Rng::new(5);
        let vocab = t.weights.config.text.vocab_size;
        let tails: Vec<Vec<u32>> = (0..9).map(|i| (0..1 + (i * 5) % 7).map(|_| 7 + rng.below(vocab - 7) as u32).collect()).collect();
        let prompts: Vec<_> = (0..9).map(|i| &items[i / 3].prompt).collect();
        let tail_refs: Vec<&[u32]> = tails.iter().map(|s| s.as_slice()).collect();
        let (config, pad) = (t.weights.config.clone(), t.processor.pad_id);
        let full = batch::pack(&config, &prompts, &tail_refs, pad, &t.device).unwrap();
        let full_rows = batch::predicting_rows(&full.tail_positions);
        let shared = batch::pack_shared(&config, &prompts, &tail_refs, pad, &t.device).unwrap();
        let shared_rows = shared.predicting_rows(&tail_refs);
        assert_eq!(shared.prompts.batch, 3, "three distinct prompts (two of them equal in ids)");
        let n: usize = tails.iter().map(|t| t.len()).sum();
        let probe = pgpo::rng::Rng::new(6).vec(n * config.text.hidden_size, -1.0, 1.0);
        let tape = Tape::new();
        let (want_h, want_g) = run(&t, |pv| forward_hidden(pv, &config, &full.inputs, &ForwardOptions { keep: Keep::Rows(full_rows.clone()), ..Default::default() }), &probe, &tape);
        // The signal: the vision tower gets a gradient (only through the prompts), every
        // parameter's gradient is non-zero somewhere.
        for (name, g) in &want_g {
            assert!(g.iter().any(|&x| x != 0.0), "{backend}: {name} has a zero gradient in the full passes");
        }
        assert!(want_g.keys().any(|n| n.starts_with("visual.")), "{backend}: the vision tower trains");
        for recompute in [Recompute::None, Recompute::Layer] {
            let tape = Tape::new();
            let (got_h, got_g) = run(&t, |pv| forward_shared_hidden(pv, &config, &shared.batch(), &shared_rows, recompute), &probe, &tape);
            let worst = got_h.iter().zip(&want_h).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{backend} {recompute:?}: hidden states differ by {worst}");
            assert_eq!(got_g.len(), want_g.len(), "{backend} {recompute:?}: the same parameters get gradients");
            for (name, want) in &want_g {
                let got = &got_g[name];
                let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
                let err = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(err <= 1e-3 * scale, "{backend} {recompute:?}: gradient of {name} off by {:.2e} of its largest entry", err / scale);
            }
        }
        t.fault = None;
        let _ = std::fs::remove_dir_all(cfg.out_dir.join(&cfg.name));
    }
}
