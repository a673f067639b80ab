//! Batched generation with the KV cache against transformers' greedy `generate`
//! (tests/fixtures/qwen/generate_*.safetensors, made by scripts/make_hf_fixtures.py): the same
//! tokens and the same per-step logits, one sequence stopping early while another runs on; the
//! cached logits against a full recompute; seeded sampling that repeats.

mod common;

use pgpo::autograd::Tape;
use pgpo::io::TensorFile;
use pgpo::model::generate::Generation;
use pgpo::model::input_file::read_inputs;
use pgpo::model::{forward, generate, ForwardOptions, GenerateOptions, Keep, ModelInputs, ParamVars, Sampling, Weights};
use pgpo::Device;
use std::path::{Path, PathBuf};

/// The bf16 checkpoint's weights are exactly bf16, so on a CPU with AVX-512 its decode steps
/// stream their bf16 copies (tests/bf16_weights.rs).
const CASES: [(&str, &str); 4] = [("padded_batch", "base"), ("tied_gqa_off", "tied"), ("text_only", "base"), ("flat_bf16", "flat_bf16")];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen")
}

struct Fixture {
    weights: Weights,
    inputs: ModelInputs,
    sequences: Vec<i64>,
    width: usize,
    /// [B, steps, V] as transformers returned them.
    logits: Vec<f32>,
    eos: u32,
    pad: u32,
}

fn fixture(case: &str, ckpt: &str, dev: &Device) -> Fixture {
    let weights = Weights::load(&dir().join(ckpt), dev).unwrap();
    let (inputs, _) = read_inputs(&dir().join(format!("{case}.safetensors")), &weights.config, dev, false).unwrap();
    let f = TensorFile::open(&dir().join(format!("generate_{case}.safetensors"))).unwrap();
    let (shape, sequences) = f.i64("sequences", 2).unwrap();
    let (_, logits) = f.f32("logits", 3).unwrap();
    let eos = f.i64("eos_token_id", 1).unwrap().1[0] as u32;
    let pad = f.i64("pad_token_id", 1).unwrap().1[0] as u32;
    Fixture { weights, inputs, sequences, width: shape[1], logits, eos, pad }
}

fn run(fx: &Fixture, sampling: Sampling, seed: u64, new_tokens: usize) -> Generation {
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, &fx.weights);
    let o = GenerateOptions { max_new_tokens: new_tokens, sampling, seed, stop_ids: vec![fx.eos], keep_logits: true, ..Default::default() };
    let g = generate(&pv, &fx.weights.config, &fx.inputs, &o, |_, _| {}).unwrap();
    assert_eq!(tape.len(), 0, "generation records nothing on the tape");
    g
}

fn greedy_matches_transformers(dev: &Device, tol: f32) {
    for (case, ckpt) in CASES {
        let fx = fixture(case, ckpt, dev);
        let (b, t) = (fx.inputs.batch, fx.inputs.seq);
        let steps = fx.width - t;
        let g = run(&fx, Sampling::Greedy, 0, steps);
        let (width, got) = g.sequences(&fx.inputs, fx.pad);
        let got: Vec<i64> = got.iter().map(|&x| i64::from(x)).collect();
        println!("{case} on {}: pgpo {:?}", dev.name(), &got);
        assert_eq!((width, &got), (fx.width, &fx.sequences), "{case} on {}: sequences differ from transformers'", dev.name());
        assert!(g.completions.iter().any(|c| c.stopped) && g.completions.iter().any(|c| c.tokens.len() == steps), "{case}: the fixture should stop one row early");
        let v = fx.weights.config.text.vocab_size;
        let mut worst = 0f32;
        for (row, c) in g.completions.iter().enumerate() {
            assert_eq!(c.logits.len(), c.tokens.len());
            for (s, l) in c.logits.iter().enumerate() {
                let want = &fx.logits[(row * steps + s) * v..(row * steps + s + 1) * v];
                worst = l.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
            }
        }
        println!("{case} on {}: {b} rows, max |dlogit| vs transformers' generate {worst:.2e}", dev.name());
        assert!(worst <= tol, "{case} on {}: step logits differ by {worst} > {tol}", dev.name());
    }
}

#[test]
fn cpu_greedy_generation_matches_transformers_token_for_token() {
    greedy_matches_transformers(&Device::Cpu, 1e-4);
}

#[test]
fn wgpu_greedy_generation_matches_transformers_token_for_token() {
    if let Some(dev) = common::backend("wgpu") {
        greedy_matches_transformers(&dev, 1e-3);
    }
}

#[test]
fn cuda_greedy_generation_matches_transformers_token_for_token() {
    if let Some(dev) = common::backend("cuda") {
        greedy_matches_transformers(&dev, 1e-3);
    }
}

/// Every step's cached logits equal the logits of one full forward over prompt + tokens.
#[test]
fn cached_logits_equal_a_full_recompute() {
    let dev = Device::Cpu;
    for (case, ckpt) in CASES {
        let fx = fixture(case, ckpt, &dev);
        let g = run(&fx, Sampling::Sample { temperature: 1.0, top_p: 0.9, top_k: 0 }, 7, 9);
        let (b, t) = (fx.inputs.batch, fx.inputs.seq);
        let (width, seqs) = g.sequences(&fx.inputs, fx.pad);
        // The padding after an early stop is masked out; it comes after the positions compared.
        let mut mask = Vec::with_capacity(b * width);
        for (row, c) in g.completions.iter().enumerate() {
            mask.extend(fx.inputs.mask[row * t..(row + 1) * t].iter().copied());
            mask.extend((0..width - t).map(|s| s < c.tokens.len()));
        }
        let full = ModelInputs::new(&fx.weights.config, b, width, seqs, Some(mask), fx.inputs.pixels.clone(), fx.inputs.grids.clone()).unwrap();
        let tape = Tape::new();
        let pv = ParamVars::frozen(&tape, &fx.weights);
        let logits = forward(&pv, &fx.weights.config, &full, &ForwardOptions { keep: Keep::All, ..Default::default() }).unwrap().value().to_vec().unwrap();
        let v = fx.weights.config.text.vocab_size;
        let mut worst = 0f32;
        for (row, c) in g.completions.iter().enumerate() {
            for (s, l) in c.logits.iter().enumerate() {
                let at = (row * width + t - 1 + s) * v;
                worst = l.iter().zip(&logits[at..at + v]).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
            }
        }
        println!("{case}: cached vs recomputed logits, max |d| {worst:.2e}");
        assert!(worst <= 1e-4, "{case}: cached logits differ from a full recompute by {worst}");
    }
}

#[test]
fn sampling_with_the_same_seed_repeats_exactly() {
    let fx = fixture("padded_batch", "base", &Device::Cpu);
    let s = Sampling::Sample { temperature: 1.3, top_p: 0.95, top_k: 40 };
    let a = run(&fx, s, 3, 10);
    let b = run(&fx, s, 3, 10);
    let c = run(&fx, s, 4, 10);
    let tokens = |g: &Generation| g.completions.iter().map(|c| c.tokens.clone()).collect::<Vec<_>>();
    let lps = |g: &Generation| g.completions.iter().map(|c| c.logprobs.clone()).collect::<Vec<_>>();
    assert_eq!(tokens(&a), tokens(&b));
    assert_eq!(lps(&a), lps(&b));
    assert_ne!(tokens(&a), tokens(&c), "another seed should draw other tokens at temperature 1.3");
}

/// The log-prob returned with each token is log-softmax(logits / T) at that token.
#[test]
fn returned_logprobs_are_the_tempered_log_softmax_of_the_step_logits() {
    let fx = fixture("tied_gqa_off", "tied", &Device::Cpu);
    let temperature = 0.7f32;
    let g = run(&fx, Sampling::Sample { temperature, top_p: 1.0, top_k: 0 }, 11, 6);
    for c in &g.completions {
        for ((l, &tok), &lp) in c.logits.iter().zip(&c.tokens).zip(&c.logprobs) {
            let z: Vec<f64> = l.iter().map(|&x| f64::from(x) / f64::from(temperature)).collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            let want = z[tok as usize] - lse;
            assert!((f64::from(lp) - want).abs() < 1e-5, "log-prob {lp} vs {want}");
        }
    }
}

/// Greedy's own path (no weight vector): the log-prob of the chosen token under the full
/// distribution, and the best token that is not suppressed.
#[test]
fn greedy_logprobs_are_the_log_softmax_and_suppressed_tokens_are_skipped() {
    let fx = fixture("tied_gqa_off", "tied", &Device::Cpu);
    let lse = |l: &[f32]| {
        let m = l.iter().map(|&x| f64::from(x)).fold(f64::NEG_INFINITY, f64::max);
        m + l.iter().map(|&x| (f64::from(x) - m).exp()).sum::<f64>().ln()
    };
    let g = run(&fx, Sampling::Greedy, 0, 6);
    let first = g.completions[0].tokens[0];
    for c in &g.completions {
        for ((l, &tok), &lp) in c.logits.iter().zip(&c.tokens).zip(&c.logprobs) {
            let best = (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b });
            assert_eq!(tok as usize, best, "greedy picks the first largest logit");
            let want = f64::from(l[best]) - lse(l);
            assert!((f64::from(lp) - want).abs() < 1e-5, "greedy log-prob {lp} vs {want}");
        }
    }
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, &fx.weights);
    let o = GenerateOptions { max_new_tokens: 1, suppress_ids: vec![first], keep_logits: true, ..Default::default() };
    let s = generate(&pv, &fx.weights.config, &fx.inputs, &o, |_, _| {}).unwrap();
    let c = &s.completions[0];
    let l = &c.logits[0];
    let best = (0..l.len()).filter(|&i| i != first as usize).fold(None, |b: Option<usize>, i| if b.is_none_or(|b| l[i] > l[b]) { Some(i) } else { b }).unwrap();
    assert_eq!(c.tokens[0] as usize, best, "the best token other than the suppressed {first}");
    let want = f64::from(l[best]) - lse(l);
    assert!((f64::from(c.logprobs[0]) - want).abs() < 1e-5, "a suppressed token still counts in the normaliser: {} vs {want}", c.logprobs[0]);
}

#[test]
fn top_k_one_is_greedy_and_a_bad_temperature_is_refused() {
    let fx = fixture("padded_batch", "base", &Device::Cpu);
    let greedy = run(&fx, Sampling::Greedy, 0, 8);
    let k1 = run(&fx, Sampling::Sample { temperature: 0.8, top_p: 1.0, top_k: 1 }, 99, 8);
    let tokens = |g: &Generation| g.completions.iter().map(|c| c.tokens.clone()).collect::<Vec<_>>();
    assert_eq!(tokens(&greedy), tokens(&k1));
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, &fx.weights);
    for (sampling, field) in [(Sampling::Sample { temperature: 0.0, top_p: 1.0, top_k: 0 }, "temperature"), (Sampling::Sample { temperature: 1.0, top_p: 0.0, top_k: 0 }, "top_p")] {
        let o = GenerateOptions { max_new_tokens: 4, sampling, ..Default::default() };
        let err = generate(&pv, &fx.weights.config, &fx.inputs, &o, |_, _| {}).unwrap_err().to_string();
        assert!(err.contains(field), "{err}");
    }
    let o = GenerateOptions { max_new_tokens: 10_000, ..Default::default() };
    let err = generate(&pv, &fx.weights.config, &fx.inputs, &o, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("context"), "{err}");
}

#[test]
fn cuda_emu_greedy_generation_matches_transformers_token_for_token() {
    if let Some(dev) = common::backend("cuda-emu") {
        greedy_matches_transformers(&dev, 1e-3);
    }
}

/// A logit that is NaN or infinite stops generation with an error naming the sequence and the
/// logit, on greedy's vector pass as on the sampling path; it never becomes a token.
#[test]
fn a_non_finite_logit_is_an_error_not_a_token() {
    let mut fx = fixture("padded_batch", "base", &Device::Cpu);
    let norm = fx.weights.get("model.norm.weight").unwrap();
    let mut w = norm.to_vec().unwrap();
    w[3] = f32::NAN;
    let shape = norm.shape().to_vec();
    fx.weights.set("model.norm.weight", pgpo::Tensor::from_vec(w, &shape, &Device::Cpu).unwrap()).unwrap();
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, &fx.weights);
    for sampling in [Sampling::Greedy, Sampling::Sample { temperature: 1.0, top_p: 0.9, top_k: 0 }] {
        let o = GenerateOptions { max_new_tokens: 2, sampling, ..Default::default() };
        let err = generate(&pv, &fx.weights.config, &fx.inputs, &o, |_, _| panic!("no token may come out")).unwrap_err().to_string();
        assert!(err.contains("logit 0 of sequence 0 is NaN at step 0"), "{sampling:?}: {err}");
    }
}
