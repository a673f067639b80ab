//! `pgpo tvd` against transformers: the trainer's own scoring (shared prompt prefix included)
//! gives, at every response token, the k3 estimate and the exact KL(p_clean || p_blind) of
//! transformers' clean and blind distributions, on a batch where two rows share their prompt
//! ids (and response) but not their image, batched and row by row, on every backend present.
//! The mistake this catches: sharing a prompt's KV cache by ids alone, which scores row 1
//! against row 0's image (this test fails that way: row 1's KL is row 0's).

mod common;

use pgpo::io::TensorFile;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen").join(name)
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pgpo-tvd-{}-{name}", std::process::id()))
}

fn tvd(inputs: &Path, out: &Path, backend: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgpo"))
        .args(["tvd", "--backend", backend, "--model"])
        .arg(fixture("base"))
        .arg("--inputs")
        .arg(inputs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// k3 and the exact KL at every response position (row, column), from transformers' logits at
/// the position before, in f64: (row, column, k3, kl).
fn expected(temperature: f64, blind_name: &str) -> Vec<(usize, usize, f64, f64)> {
    let f = TensorFile::open(&fixture("tvd_shared_prompt.safetensors")).unwrap();
    let (shape, clean) = f.f32("logits", 3).unwrap();
    let (_, blind) = f.f32(blind_name, 3).unwrap();
    let (_, ids) = f.i64("input_ids", 2).unwrap();
    let (_, response) = f.i64("response_mask", 2).unwrap();
    let (b, t, v) = (shape[0], shape[1], shape[2]);
    let log_softmax = |row: &[f32]| -> Vec<f64> {
        let x: Vec<f64> = row.iter().map(|&z| f64::from(z) / temperature).collect();
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + x.iter().map(|z| (z - m).exp()).sum::<f64>().ln();
        x.iter().map(|z| z - lse).collect()
    };
    let mut out = Vec::new();
    for r in 0..b {
        for c in 0..t {
            if response[r * t + c] != 1 {
                continue;
            }
            let at = (r * t + c - 1) * v;
            let (lc, lb) = (log_softmax(&clean[at..at + v]), log_softmax(&blind[at..at + v]));
            let kl: f64 = lc.iter().zip(&lb).map(|(a, b)| a.exp() * (a - b)).sum();
            let tok = ids[r * t + c] as usize;
            let d = (lb[tok] - lc[tok]).clamp(-20.0, 20.0);
            out.push((r, c, d.exp() - 1.0 - d, kl));
        }
    }
    out
}

fn read(out: &Path) -> (Vec<usize>, Vec<f32>, Vec<f32>) {
    let f = TensorFile::open(out).unwrap();
    let (shape, k3) = f.f32("k3", 2).unwrap();
    let (_, kl) = f.f32("kl", 2).unwrap();
    (shape, k3, kl)
}

fn near(got: f32, want: f64) -> bool {
    (f64::from(got) - want).abs() <= 2e-4 + 2e-3 * want.abs()
}

fn matches_transformers(backend: &str) {
    for (temperature, extra, blind) in [(1.0, vec![], "blind_logits"), (0.7, vec!["--temperature", "0.7"], "blind_logits"), (1.0, vec!["--hide-markers"], "blind_marker_logits")] {
        let want = expected(temperature, blind);
        // The signal: rows 0 and 1 (same ids, different images) have different KLs.
        let row = |r: usize| want.iter().filter(|w| w.0 == r).map(|w| w.3).collect::<Vec<_>>();
        let gap = row(0).iter().zip(&row(1)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(gap > 1e-3, "rows 0 and 1 have the same KL in transformers ({gap})");
        let out = scratch(&format!("{backend}-{temperature}-{blind}.safetensors"));
        let o = tvd(&fixture("tvd_shared_prompt.safetensors"), &out, backend, &extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (shape, k3, kl) = read(&out);
        let t = shape[1];
        for &(r, c, wk3, wkl) in &want {
            let (gk3, gkl) = (k3[r * t + c], kl[r * t + c]);
            assert!(near(gkl, wkl) && near(gk3, wk3), "{backend} T={temperature} {blind}: [{r}, {c}]: kl {gkl} vs {wkl}, k3 {gk3} vs {wk3}");
        }
        let scored: Vec<usize> = want.iter().map(|w| w.0 * t + w.1).collect();
        assert!((0..k3.len()).filter(|i| !scored.contains(i)).all(|i| k3[i] == 0.0 && kl[i] == 0.0), "non-response positions are not 0");
        // Each row alone gives what it gives in the batch.
        for r in 0..3 {
            let one = scratch(&format!("{backend}-{temperature}-{blind}-row{r}.safetensors"));
            let o = tvd(&fixture(&format!("tvd_shared_prompt_row{r}.safetensors")), &one, backend, &extra);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let (s1, k1, l1) = read(&one);
            let (alone, batched): (Vec<(f32, f32)>, Vec<(f32, f32)>) = (
                (0..s1[1]).filter(|&c| k1[c] != 0.0 || l1[c] != 0.0).map(|c| (k1[c], l1[c])).collect(),
                want.iter().filter(|w| w.0 == r).map(|w| (k3[r * t + w.1], kl[r * t + w.1])).collect(),
            );
            assert_eq!(alone.len(), batched.len(), "row {r}: scored tokens alone vs batched");
            for (a, b) in alone.iter().zip(&batched) {
                assert!((a.0 - b.0).abs() <= 1e-4 * b.0.abs().max(1.0) && (a.1 - b.1).abs() <= 1e-4 * b.1.abs().max(1.0), "{backend} row {r}: alone {a:?} vs batched {b:?}");
            }
            let _ = std::fs::remove_file(&one);
        }
        let _ = std::fs::remove_file(&out);
    }
}

#[test]
fn cpu_tvd_matches_transformers_batched_and_row_by_row_when_rows_share_prompt_ids() {
    matches_transformers("cpu");
}

#[test]
fn wgpu_tvd_matches_transformers_batched_and_row_by_row_when_rows_share_prompt_ids() {
    if common::backend("wgpu").is_some() {
        matches_transformers("wgpu");
    }
}

/// Bad input is a clear error naming the tensor, a non-zero exit and no output file.
#[test]
fn bad_tvd_inputs_are_refused_naming_the_tensor() {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    let bytes = std::fs::read(fixture("tvd_shared_prompt_row2.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let base: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
    let t = base.iter().find(|a| a.0 == "input_ids").unwrap().2[1];
    let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let cases: Vec<(&str, &str, Box<dyn Fn(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)>)> = vec![
        ("missing", "response_mask", Box::new(|a| a.retain(|x| x.0 != "response_mask"))),
        ("gap", "response_mask", Box::new(move |a| {
            let m = a.iter_mut().find(|x| x.0 == "response_mask").unwrap();
            let mut v = vec![0i64; t];
            (v[t - 5], v[t - 3], v[t - 1]) = (1, 1, 1);
            m.3 = i64s(&v);
        })),
        ("no-prompt", "response_mask", Box::new(move |a| a.iter_mut().find(|x| x.0 == "response_mask").unwrap().3 = i64s(&vec![1i64; t]))),
        ("value", "response_mask", Box::new(move |a| {
            let mut v = vec![0i64; t];
            v[t - 1] = 2;
            a.iter_mut().find(|x| x.0 == "response_mask").unwrap().3 = i64s(&v);
        })),
    ];
    for (tag, name, edit) in cases {
        let mut a = base.clone();
        edit(&mut a);
        let (inp, out) = (scratch(&format!("bad-{tag}-in.safetensors")), scratch(&format!("bad-{tag}-out.safetensors")));
        let views: Vec<_> = a.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, None, &inp).unwrap();
        let o = tvd(&inp, &out, "cpu", &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{tag}: {err}");
        assert!(err.contains(name) && !err.contains("panicked") && !out.exists(), "{tag}: {err}");
        let _ = std::fs::remove_file(&inp);
    }
}
