//! JPEG decoding against Pillow, byte for byte: every JPEG in tests/fixtures/jpeg (made by
//! scripts/make_jpeg_fixtures.py, Pillow 13 / libjpeg-turbo 3.2) must decode to exactly the
//! RGB that `Image.open(f).convert("RGB")` gives, which is what transformers' image
//! processor starts from. The files cover baseline 4:2:0 / 4:2:2 / 4:4:4, greyscale,
//! progressive (with block smoothing of an incomplete file), optimized Huffman tables,
//! restart markers (intact and damaged), 4:4:0 and other integer sampling ratios, Adobe RGB
//! and sizes down to 1x1. The files under refused/ must give an error, never a panic.

use pgpo::image::processor::decode_image;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg")
}

/// The fixture JPEGs that have a Pillow reference next to them.
fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "jpg")).collect();
    files.sort();
    files
}

/// Pillow's decode: (width, height, RGB8 bytes) from NAME.jpg.rgb.safetensors.
fn pillow_rgb(jpg: &Path) -> (usize, usize, Vec<u8>) {
    let path = PathBuf::from(format!("{}.rgb.safetensors", jpg.display()));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("rgb").unwrap();
    assert_eq!(t.dtype(), Dtype::U8, "{}", path.display());
    let shape = t.shape();
    assert!(shape.len() == 3 && shape[2] == 3, "{}: shape {shape:?}", path.display());
    (shape[1], shape[0], t.data().to_vec())
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_fixture_decodes_to_exactly_the_rgb_pillow_decodes() {
    let files = fixtures();
    assert!(files.len() >= 20, "only {} fixtures in {}", files.len(), dir().display());
    let mut failures = Vec::new();
    for jpg in &files {
        let (w, h, want) = pillow_rgb(jpg);
        let got = match decode_image(&std::fs::read(jpg).unwrap()) {
            Ok(img) => img,
            Err(e) => {
                failures.push(format!("{}: error {e}", name(jpg)));
                continue;
            }
        };
        if (got.width, got.height) != (w, h) || got.data.len() != want.len() {
            failures.push(format!("{}: {}x{} ({} bytes), Pillow {w}x{h}", name(jpg), got.width, got.height, got.data.len()));
            continue;
        }
        let diffs: Vec<u8> = got.data.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).filter(|&d| d > 0).collect();
        if !diffs.is_empty() {
            let max = diffs.iter().max().unwrap();
            failures.push(format!("{}: {} of {} bytes differ from Pillow's, max |difference| {max}", name(jpg), diffs.len(), want.len()));
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures differ:\n{}", failures.len(), files.len(), failures.join("\n"));
}

/// decode_image on a file that must be refused: its error message, and no panic.
fn refusal(bytes: &[u8]) -> String {
    match std::panic::catch_unwind(|| decode_image(bytes)) {
        Ok(Ok(img)) => panic!("decoded to a {}x{} image instead of an error", img.width, img.height),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("panicked instead of returning an error"),
    }
}

fn refused(file: &str) -> Vec<u8> {
    std::fs::read(dir().join("refused").join(file)).unwrap()
}

#[test]
fn a_truncated_jpeg_is_an_error_as_in_pillow() {
    let e = refusal(&refused("truncated.jpg"));
    assert!(e.to_lowercase().contains("truncated"), "{e}");
    // Cut anywhere in a fixture's header or entropy-coded data, too.
    let whole = std::fs::read(dir().join("progressive_420_70x45.jpg")).unwrap();
    for cut in [3, 20, whole.len() / 3, whole.len() / 2, whole.len() - 40] {
        refusal(&whole[..cut]);
    }
}

#[test]
fn an_arithmetic_coded_jpeg_is_refused() {
    let e = refusal(&refused("arithmetic_sof9.jpg"));
    assert!(e.to_lowercase().contains("arithmetic"), "{e}");
}

#[test]
fn a_cmyk_jpeg_is_refused() {
    let e = refusal(&refused("cmyk.jpg"));
    assert!(e.to_lowercase().contains("cmyk"), "{e}");
}
