//! Rotary tables against transformers' Qwen2.5-VL code (replicated in
//! tests/oracles/make_fixtures.py): the M-RoPE band split and the vision 2-D layout.

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
