//! Named arrays in safetensors files: typed reads with errors that name the tensor, and
//! atomic writes (a temporary file renamed into place, so a crash never leaves half a file).

use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::path::Path;

/// An invalid-data error naming the file.
pub(crate) fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {msg}", path.display())))
}

/// A parsed file; arrays are decoded on request.
pub struct TensorFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<TensorFile> {
        let bytes = std::fs::read(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
        SafeTensors::deserialize(&bytes).map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        Ok(TensorFile { path: path.to_path_buf(), bytes })
    }

    fn view(&self, name: &str) -> Result<Option<TensorView<'_>>> {
        let st = SafeTensors::deserialize(&self.bytes).map_err(|e| bad(&self.path, e.to_string()))?;
        match st.tensor(name) {
            Ok(v) => Ok(Some(v)),
            Err(safetensors::SafeTensorError::TensorNotFound(_)) => Ok(None),
            Err(e) => Err(bad(&self.path, format!("tensor `{name}`: {e}"))),
        }
    }

    fn typed(&self, name: &str, want: Dtype, rank: usize) -> Result<Option<(Vec<usize>, Vec<u8>)>> {
        let Some(v) = self.view(name)? else { return Ok(None) };
        if v.dtype() != want {
            return Err(bad(&self.path, format!("tensor `{name}` is {:?}, expected {want:?}", v.dtype())));
        }
        if v.shape().len() != rank {
            return Err(bad(&self.path, format!("tensor `{name}` has shape {:?}, expected {rank} axes", v.shape())));
        }
        Ok(Some((v.shape().to_vec(), v.data().to_vec())))
    }

    /// An F32 tensor of `rank` axes, if present.
    pub fn f32_opt(&self, name: &str, rank: usize) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        Ok(self.typed(name, Dtype::F32, rank)?.map(|(s, b)| {
            (s, b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }))
    }

    pub fn f32(&self, name: &str, rank: usize) -> Result<(Vec<usize>, Vec<f32>)> {
        self.f32_opt(name, rank)?.ok_or_else(|| bad(&self.path, format!("missing tensor `{name}` (F32, {rank} axes)")))
    }

    /// An I64 tensor of `rank` axes, if present.
    pub fn i64_opt(&self, name: &str, rank: usize) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        Ok(self.typed(name, Dtype::I64, rank)?.map(|(s, b)| {
            (s, b.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
        }))
    }

    pub fn i64(&self, name: &str, rank: usize) -> Result<(Vec<usize>, Vec<i64>)> {
        self.i64_opt(name, rank)?.ok_or_else(|| bad(&self.path, format!("missing tensor `{name}` (I64, {rank} axes)")))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Checks that a named array has the expected shape.
pub fn expect_shape(path: &Path, name: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got == want { Ok(()) } else { Err(bad(path, format!("tensor `{name}` has shape {got:?}, expected {want:?}"))) }
}

/// The data of one array to write.
pub enum Data<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// Writes F32 arrays (name, shape, data) to `path` atomically.
pub fn write_f32(path: &Path, arrays: &[(&str, Vec<usize>, &[f32])]) -> Result<()> {
    let arrays: Vec<(&str, Vec<usize>, Data)> = arrays.iter().map(|(n, s, d)| (*n, s.clone(), Data::F32(d))).collect();
    write_arrays(path, &arrays)
}

/// Writes F32 and I64 arrays (name, shape, data) to `path` atomically.
pub fn write_arrays(path: &Path, arrays: &[(&str, Vec<usize>, Data)]) -> Result<()> {
    let bytes: Vec<(Dtype, Vec<u8>)> = arrays
        .iter()
        .map(|(_, _, d)| match d {
            Data::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        })
        .collect();
    let views = arrays
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), (dtype, b))| {
            TensorView::new(*dtype, shape.clone(), b).map(|v| (name.to_string(), v)).map_err(|e| bad(path, format!("`{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = safetensors::serialize(views, None).map_err(|e| bad(path, e.to_string()))?;
    atomic(path, |tmp| Ok(std::fs::write(tmp, out)?))
}

/// Runs `write` on a temporary path beside `path`, then renames it into place, so a crash
/// never leaves half a file; the temporary file is removed when `write` fails.
pub(crate) fn atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("tmp-pgpo");
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| bad(path, format!("cannot rename into place: {e}")))
}
