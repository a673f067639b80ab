//! Rotary tables against transformers' Qwen2.5-VL code (replicated in
//! tests/oracles/make_fixtures.py): the M-RoPE band split and the vision 2-D layout; the
//! 1-D tables against the formula of transformers' default rotary.

use pgpo::io::TensorFile;
use pgpo::ops::RopeTables;
use pgpo::Device;
use std::path::Path;

fn fixture(name: &str) -> TensorFile {
    TensorFile::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 2e-5, "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn multimodal_and_vision_tables_match_the_transformers_construction() {
    let (input, want) = (fixture("rope_in.safetensors"), fixture("rope_out.safetensors"));
    let (ps, positions) = input.f32("position_ids", 3).unwrap();
    let (b, t) = (ps[1], ps[2]);
    let m = RopeTables::multimodal(&positions, b, t, 16, &[2, 3, 3], 1_000_000.0, &Device::Cpu).unwrap();
    assert_close(&m.cos.to_vec().unwrap(), &want.f32("mrope_cos", 3).unwrap().1, "mrope cos");
    assert_close(&m.sin.to_vec().unwrap(), &want.f32("mrope_sin", 3).unwrap().1, "mrope sin");
    let (rows, cols) = (input.f32("rows", 1).unwrap().1, input.f32("cols", 1).unwrap().1);
    let v = RopeTables::vision(&rows, &cols, 16, 10_000.0, &Device::Cpu).unwrap();
    assert_close(&v.cos.to_vec().unwrap(), &want.f32("vision_cos", 2).unwrap().1, "vision cos");
    assert_close(&v.sin.to_vec().unwrap(), &want.f32("vision_sin", 2).unwrap().1, "vision sin");
}

/// transformers' default rotary (Qwen2's decoder without M-RoPE), written from its formula:
/// inv_freq = 1 / base^(arange(0, D, 2) / D) in f32, freqs = positions x inv_freq,
/// emb = cat(freqs, freqs), then cos and sin.
fn hf_one_d(positions: &[f32], d: usize, base: f32) -> (Vec<f32>, Vec<f32>) {
    let inv: Vec<f32> = (0..d).step_by(2).map(|i| 1.0 / base.powf(i as f32 / d as f32)).collect();
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for &p in positions {
        let freqs: Vec<f32> = inv.iter().map(|f| p * f).collect();
        for x in freqs.iter().chain(&freqs) {
            cos.push(x.cos());
            sin.push(x.sin());
        }
    }
    (cos, sin)
}

#[test]
fn one_dimensional_tables_match_the_transformers_construction() {
    // Positions with gaps and repeats; head sizes of the toy model and of Qwen; both bases.
    let positions: Vec<f32> = [0, 1, 2, 2, 5, 9, 17, 40, 41, 77].iter().map(|&p| p as f32).collect();
    for (d, base) in [(16, 10_000.0f32), (64, 1_000_000.0), (128, 1_000_000.0)] {
        let t = RopeTables::one_d(&positions, d, f64::from(base), &Device::Cpu).unwrap();
        let (cos, sin) = hf_one_d(&positions, d, base);
        assert_close(&t.cos.to_vec().unwrap(), &cos, &format!("1-D cos, D {d}"));
        assert_close(&t.sin.to_vec().unwrap(), &sin, &format!("1-D sin, D {d}"));
    }
}
