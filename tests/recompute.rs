//! `recompute = "layer"`: each decoder layer and vision block keeps only its input on the tape
//! and runs again in the backward. Its gradients equal those of a forward that keeps every
//! activation: bit for bit on the CPU (every CPU kernel is deterministic), to f32 tolerance on
//! wgpu. Catches a recomputed block that reads other parameters or inputs than the kept one
//! (a layer's closure capturing the wrong index, a lost gradient of a parameter or of the
//! block's input), and an option that does nothing (the tape must be shorter with it).

mod common;

use pgpo::autograd::{ops as ag, Tape};
use pgpo::model::{forward_hidden, lm_head, ForwardOptions, Keep, ParamVars, Recompute};
use pgpo::ops::{Chunking, LossConfig, TokenInputs};
use pgpo::tensor::memory;
use pgpo::train::batch::{self, Item};
use pgpo::train::config::TrainConfig;
use pgpo::train::trainer::Trainer;

/// (name, gradient) of every parameter, the tape's node count and the peak bytes of the
/// forward and backward, from the fused policy loss on four training items with their images.
fn gradients(t: &Trainer, items: &[Item], recompute: Recompute) -> (Vec<(String, Vec<f32>)>, usize, usize) {
    let prompts: Vec<_> = items.iter().map(|i| &i.prompt).collect();
    let tails: Vec<&[u32]> = items.iter().map(|i| i.target.as_slice()).collect();
    let config = &t.weights.config;
    let packed = batch::pack(config, &prompts, &tails, t.processor.pad_id, &t.device).unwrap();
    let rows = batch::predicting_rows(&packed.tail_positions);
    let tokens: Vec<u32> = tails.concat();
    let n = tokens.len();
    let adv: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { -0.7 } else { 1.1 }).collect();
    let (old, weight) = (vec![-3.0f32; n], vec![1.0 / n as f32; n]);
    let x = TokenInputs { tokens: &tokens, old_logp: &old, adv: &adv, weight: &weight, ref_logp: None };
    let base = memory::reset_peak();
    let tape = Tape::new();
    let pv = ParamVars::trainable(&tape, &t.weights);
    let hidden = forward_hidden(&pv, config, &packed.inputs, &ForwardOptions { keep: Keep::Rows(rows), blind: None, recompute }).unwrap();
    let nodes = tape.len();
    let (loss, _) = ag::policy_loss_linear(&hidden, lm_head(&pv, config).unwrap(), &x, &LossConfig::default(), Chunking::Auto).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let out = pv.gradients(&grads).into_iter().map(|(name, g)| (name, g.to_vec().unwrap())).collect();
    (out, nodes, memory::peak() - base)
}

fn trainer(backend: &str) -> Trainer {
    let mut c = TrainConfig { name: format!("recompute-{backend}"), backend: backend.into(), ..Default::default() };
    c.out_dir = std::env::temp_dir().join(format!("pgpo-recompute-{}", std::process::id()));
    c.tiny.layers = 2;
    Trainer::new(c).unwrap()
}

fn check(backend: &str) {
    if backend != "cpu" && common::backend(backend).is_none() {
        return;
    }
    let mut t = trainer(backend);
    let items = t.next_items(4).unwrap();
    let (keep, keep_nodes, keep_peak) = gradients(&t, &items, Recompute::None);
    let (again, again_nodes, again_peak) = gradients(&t, &items, Recompute::Layer);
    println!("{backend}: tape {keep_nodes} nodes, peak {keep_peak} B kept; {again_nodes} nodes, peak {again_peak} B recomputed");
    // The signal: every decoder layer and vision block parameter has a gradient that is not zero.
    for (name, g) in &keep {
        if name.starts_with("model.layers.") || name.starts_with("visual.blocks.") {
            assert!(g.iter().any(|&x| x != 0.0), "{backend}: `{name}` has a zero gradient");
        }
    }
    assert!(keep.iter().any(|(n, _)| n.starts_with("visual.blocks.")), "the vision tower must be in the pass");
    assert!(again_nodes < keep_nodes / 4, "{backend}: recomputation kept {again_nodes} of {keep_nodes} nodes");
    assert_eq!(keep.len(), again.len(), "{backend}: gradients of different parameters");
    for ((name, a), (_, b)) in keep.iter().zip(&again) {
        if backend == "cpu" {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "cpu: `{name}` differs when recomputed");
        } else {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 + 1e-3 * y.abs(), "{backend}: `{name}`: {x} kept, {y} recomputed");
            }
        }
    }
}

#[test]
fn recomputed_gradients_equal_kept_ones_bit_for_bit_on_cpu() {
    check("cpu");
}

#[test]
fn recomputed_gradients_match_kept_ones_on_wgpu() {
    check("wgpu");
}
