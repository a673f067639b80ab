//! `pgpo forward` end to end: it reproduces transformers' logits, loss and gradients from a
//! fixture, and refuses each kind of inconsistent input with a message naming the tensor and
//! a non-zero exit, never a panic.

use pgpo::io::TensorFile;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen").join(name)
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pgpo-forward-{}-{name}", std::process::id()))
}

/// Arrays of a case file: name -> (dtype, shape, bytes).
type Arrays = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn read(path: &Path) -> Arrays {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect()
}

fn write(path: &Path, arrays: &Arrays) {
    let views: Vec<_> = arrays.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn i64s(b: &[u8]) -> Vec<i64> {
    b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

fn bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn forward(inputs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgpo"))
        .args(["forward", "--backend", "cpu", "--model"])
        .arg(fixture("base"))
        .arg("--inputs")
        .arg(inputs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Runs `pgpo forward` on padded_batch edited by `edit`; returns its stderr after checking
/// it failed cleanly and wrote nothing.
fn refused(tag: &str, edit: impl Fn(&mut Arrays)) -> String {
    let mut a = read(&fixture("padded_batch.safetensors"));
    edit(&mut a);
    let (inp, out) = (scratch(&format!("{tag}-in.safetensors")), scratch(&format!("{tag}-out.safetensors")));
    write(&inp, &a);
    let o = forward(&inp, &out, &["--labels"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{tag}: accepted");
    assert_eq!(o.status.code(), Some(1), "{tag}: exit code (a panic exits 101): {err}");
    assert!(!err.contains("panicked"), "{tag}: {err}");
    assert!(!out.exists(), "{tag}: an output file was written");
    let _ = std::fs::remove_file(&inp);
    err
}

fn edit_i64(a: &mut Arrays, name: &str, f: impl Fn(&mut Vec<usize>, &mut Vec<i64>)) {
    let e = a.iter_mut().find(|x| x.0 == name).unwrap();
    let mut v = i64s(&e.3);
    f(&mut e.2, &mut v);
    e.3 = bytes(&v);
}

#[test]
fn forward_refuses_an_id_outside_the_vocabulary() {
    let e = refused("vocab", |a| edit_i64(a, "input_ids", |_, v| *v.last_mut().unwrap() = 500));
    assert!(e.contains("input_ids") && e.contains("500") && e.contains("128"), "{e}");
}

#[test]
fn forward_refuses_the_wrong_patch_width() {
    let e = refused("patch", |a| {
        let p = a.iter_mut().find(|x| x.0 == "pixel_values").unwrap();
        let n = p.2[0];
        p.2 = vec![n, 95];
        p.3.truncate(n * 95 * 4);
    });
    assert!(e.contains("pixel_values") && e.contains("96"), "{e}");
}

#[test]
fn forward_refuses_image_pad_counts_that_do_not_match_the_grids() {
    // Turn the first image-pad token into text: that image has one token too few.
    let e = refused("pads", |a| {
        edit_i64(a, "input_ids", |_, v| {
            let i = v.iter().position(|&x| x == 122).unwrap();
            v[i] = 7;
        })
    });
    assert!(e.contains("image-pad") && e.contains("image 0"), "{e}");
    // A grid that no longer matches the patches given.
    let e = refused("grids", |a| edit_i64(a, "image_grid_thw", |_, g| g[1] = 8));
    assert!(e.contains("pixel_values") && e.contains("patches"), "{e}");
    // One image too many in the grids.
    let e = refused("extra", |a| {
        edit_i64(a, "image_grid_thw", |s, g| {
            g.extend_from_slice(&[1, 2, 2]);
            s[0] += 1;
        });
        let p = a.iter_mut().find(|x| x.0 == "pixel_values").unwrap();
        p.2[0] += 4;
        p.3.extend(vec![0u8; 4 * 96 * 4]);
    });
    assert!(e.contains("image_grid_thw") && e.contains("3 images") && e.contains("2 runs"), "{e}");
}

#[test]
fn forward_refuses_a_mask_of_the_wrong_shape() {
    let e = refused("mask", |a| {
        edit_i64(a, "attention_mask", |s, v| {
            let (b, t) = (s[0], s[1]);
            *v = (0..b).flat_map(|i| v[i * t..i * t + t - 1].to_vec()).collect();
            s[1] = t - 1;
        })
    });
    assert!(e.contains("attention_mask") && e.contains("shape"), "{e}");
}

/// Largest |a - b| over the rows of width `v` whose `valid` entry is 1.
fn max_valid_diff(a: &[f32], b: &[f32], valid: &[i64], v: usize) -> f32 {
    let rows = valid.iter().enumerate().filter(|(_, m)| **m == 1).map(|(r, _)| r);
    rows.flat_map(|r| (r * v..(r + 1) * v).map(|i| (a[i] - b[i]).abs())).fold(0f32, f32::max)
}

#[test]
fn forward_writes_transformers_logits_loss_and_gradients() {
    let out = scratch("ok-out.safetensors");
    let o = forward(&fixture("padded_batch.safetensors"), &out, &["--labels"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (got, want) = (TensorFile::open(&out).unwrap(), TensorFile::open(&fixture("padded_batch.safetensors")).unwrap());
    let (shape, logits) = got.f32("logits", 3).unwrap();
    let (_, valid) = want.i64("valid", 2).unwrap();
    let (_, reference) = want.f32("logits", 3).unwrap();
    let v = shape[2];
    let worst = max_valid_diff(&logits, &reference, &valid, v);
    assert!(worst <= 1e-4, "max |dlogit| {worst}");
    let (_, loss) = got.f32("loss", 1).unwrap();
    assert!((loss[0] - want.f32("loss", 1).unwrap().1[0]).abs() <= 1e-5);
    // Every gradient the fixture holds, by name and value (relative to its largest entry, as
    // tests/model_parity.rs), and no other: a gradient written under the wrong name, missing,
    // or of the wrong value fails here.
    let names = |p: &Path| -> Vec<String> {
        let bytes = std::fs::read(p).unwrap();
        let mut n: Vec<String> = SafeTensors::deserialize(&bytes).unwrap().names().into_iter().filter(|n| n.starts_with("grad.")).map(str::to_string).collect();
        n.sort();
        n
    };
    let expected = names(&fixture("padded_batch.safetensors"));
    assert!(expected.len() > 20, "the fixture holds {} gradients", expected.len());
    assert_eq!(names(&out), expected, "gradient names");
    let bytes = std::fs::read(&out).unwrap();
    let written = SafeTensors::deserialize(&bytes).unwrap();
    let mut nonzero = 0;
    for name in &expected {
        let rank = written.tensor(name).unwrap().shape().len();
        let ((gs, g), (ws, w)) = (got.f32(name, rank).unwrap(), want.f32(name, rank).unwrap());
        assert_eq!(gs, ws, "{name}: shape");
        let scale = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = g.iter().zip(&w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-3 * scale.max(1e-6), "{name}: max |d| {err} of a largest entry {scale}");
        nonzero += usize::from(scale > 0.0);
    }
    assert_eq!(nonzero, expected.len(), "every gradient of the fixture is non-zero (the signal)");
    let _ = std::fs::remove_file(&out);

    let o = forward(&fixture("padded_batch.safetensors"), &out, &["--blind"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, blind) = TensorFile::open(&out).unwrap().f32("logits", 3).unwrap();
    let (_, blind_ref) = want.f32("blind_logits", 3).unwrap();
    let (_, bvalid) = want.i64("blind_valid", 2).unwrap();
    let worst = max_valid_diff(&blind, &blind_ref, &bvalid, v);
    assert!(worst <= 1e-4, "blind max |dlogit| {worst}");
    let _ = std::fs::remove_file(&out);
}
