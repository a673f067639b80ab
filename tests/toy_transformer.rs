//! The two-layer toy transformer, trained through the tape on the copy task.

mod common;

use pgpo::toy::{train, ToyConfig};
use pgpo::Device;

fn mean(x: &[f32]) -> f32 {
    x.iter().sum::<f32>() / x.len() as f32
}

#[test]
fn copy_task_loss_falls_over_twenty_steps_on_cpu() {
    let losses = train(&ToyConfig::default(), &Device::Cpu, 20).unwrap();
    let (first, last) = (mean(&losses[..5]), mean(&losses[15..]));
    assert!(last < first - 0.5, "loss did not fall: first five {first:.3}, last five {last:.3}: {losses:?}");
}

#[test]
fn copy_task_is_learned_within_two_hundred_steps() {
    let losses = train(&ToyConfig::default(), &Device::Cpu, 200).unwrap();
    let last = mean(&losses[190..]);
    // Chance level is ln(15) = 2.7; a model that copies scores near 0.
    assert!(last < 0.05, "copy task not learned: last ten mean {last:.4}");
}

#[test]
fn copy_task_on_wgpu_matches_cpu_at_every_step() {
    let Some(gpu) = common::backend("wgpu") else { return };
    let c = ToyConfig::default();
    let cpu = train(&c, &Device::Cpu, 20).unwrap();
    let gpu = train(&c, &gpu, 20).unwrap();
    for (step, (a, b)) in gpu.iter().zip(&cpu).enumerate() {
        assert!((a - b).abs() <= 1e-4 * b.abs(), "step {step}: wgpu {a} vs cpu {b}");
    }
}

#[test]
fn copy_task_on_cuda_matches_cpu_at_every_step() {
    let Some(gpu) = common::backend("cuda") else { return };
    let c = ToyConfig::default();
    let cpu = train(&c, &Device::Cpu, 20).unwrap();
    let gpu = train(&c, &gpu, 20).unwrap();
    for (step, (a, b)) in gpu.iter().zip(&cpu).enumerate() {
        assert!((a - b).abs() <= 1e-4 * b.abs(), "step {step}: cuda {a} vs cpu {b}");
    }
}
