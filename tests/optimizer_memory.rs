//! AdamW's step holds, besides the parameters, moments and gradients it is given, only the
//! new parameter values and one parameter's new moments at a time. Alone in its binary: the
//! byte counter (`tensor::memory`) is process-wide.
//!
//! Mistake this catches: a step that builds every new moment before dropping the old ones
//! (two more values per parameter at the peak: 30 GB for a full fine-tune of a 3B model):
//! checked by putting that back (`self.m.clone()` filled, then swapped in at the end): the
//! step then holds 48 MB beyond its inputs against 24 MB allowed, FAIL.

use pgpo::tensor::memory;
use pgpo::train::optimizer::{AdamW, AdamWConfig};
use pgpo::{Device, Tensor};

#[test]
fn a_step_replaces_each_parameters_moments_as_it_goes() {
    let dev = Device::Cpu;
    let (n, count) = (1 << 20, 4);
    let make = |seed: f32| -> Vec<Tensor> { (0..count).map(|i| Tensor::full(seed + i as f32, &[n], &dev).unwrap()).collect() };
    let params = make(1.0);
    let grads = make(0.5);
    let refs: Vec<&Tensor> = grads.iter().collect();
    let mut opt = AdamW::new(&params, AdamWConfig { max_grad_norm: None, ..Default::default() }).unwrap();
    // The first step makes the moments; the second is the one measured, with them held.
    let (params, _) = opt.step(&params, &refs).unwrap();
    let before = memory::reset_peak();
    let (new, _) = opt.step(&params, &refs).unwrap();
    let extra = memory::peak() - before;
    // The signal: the step moved every parameter.
    for (p, q) in params.iter().zip(&new) {
        assert_ne!(p.to_vec().unwrap()[0], q.to_vec().unwrap()[0]);
    }
    let bytes = 4 * n;
    // The new parameters (count x bytes), and one parameter's new m and v beside its old ones.
    let allowed = count * bytes + 2 * bytes;
    println!("the step held {} MB beyond its inputs (allowed {} MB)", extra >> 20, allowed >> 20);
    assert!(extra <= allowed + (1 << 20), "the step held {extra} bytes beyond its inputs; at most {allowed} expected");
}
