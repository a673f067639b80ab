//! gather (embedding lookup) and scatter_add (its backward).

use super::fits_u32;
use crate::backend::{cpu, Buf, Grid, Launch};
use crate::error::{Error, Result};
use crate::params::{word, Params};
use crate::tensor::Tensor;

fn check_ids(op: &'static str, ids: &[u32], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(&bad) => Err(Error::Index { op, index: bad as usize, size: vocab }),
        None => Ok(()),
    }
}

/// Rows of `table` [V, D] picked by `ids`: [N, D] in f32 (a bf16/f16 table widens exactly).
pub fn gather(table: &Tensor, ids: &[u32]) -> Result<Tensor> {
    if table.rank() != 2 {
        return Err(Error::shape("gather", format!("table must be [V, D], got {:?}", table.shape())));
    }
    let (v, d) = (table.shape()[0], table.shape()[1]);
    check_ids("gather", ids, v)?;
    fits_u32("gather", table.numel().max(ids.len() * d))?;
    let out_shape = [ids.len(), d];
    if let Some(t) = table.as_cpu() {
        let mut out = cpu::alloc(ids.len() * d);
        cpu::embedding::gather(t, ids, d, &mut out);
        return Ok(Tensor::from_cpu(out, &out_shape));
    }
    if let Some((bits, dtype)) = table.as_cpu_half() {
        let mut out = cpu::alloc(ids.len() * d);
        cpu::embedding::gather_half(bits, dtype, ids, d, &mut out);
        return Ok(Tensor::from_cpu(out, &out_shape));
    }
    let dev = table.device();
    let idx = dev.upload_u32(ids)?;
    let out = Tensor::empty(&out_shape, dev)?;
    dev.launch(&Launch {
        family: "embedding",
        kernel: "gather",
        bindings: &[(0, Buf::Any(table)), (1, Buf::U32(&idx)), (2, Buf::F32(&out))],
        params: Params::new(&[word(ids.len()), word(d), word(v), 0, table.dtype().code()]),
        grid: Grid::elements(ids.len() * d, 3),
        constants: &[("TABLE_DTYPE", f64::from(table.dtype().code()))],
        threads: 256,
    })?;
    Ok(out)
}

/// Backward of [`gather`]: the [vocab, D] gradient of the table from dout [N, D].
/// Deterministic: repeated ids are summed in ascending position order on every backend.
pub fn scatter_add(dout: &Tensor, ids: &[u32], vocab: usize) -> Result<Tensor> {
    if dout.rank() != 2 || dout.shape()[0] != ids.len() {
        return Err(Error::shape(
            "scatter_add",
            format!("dout must be [{}, D] for {} ids, got {:?}", ids.len(), ids.len(), dout.shape()),
        ));
    }
    let d = dout.shape()[1];
    check_ids("scatter_add", ids, vocab)?;
    fits_u32("scatter_add", dout.numel().max(vocab * d))?;
    let (order, offsets) = cpu::embedding::group_by_id(ids, vocab);
    let out_shape = [vocab, d];
    if let Some(g) = dout.as_cpu() {
        let mut out = cpu::alloc(vocab * d);
        cpu::embedding::scatter_add(g, &order, &offsets, d, &mut out);
        return Ok(Tensor::from_cpu(out, &out_shape));
    }
    let dev = dout.device();
    let order = dev.upload_u32(&order)?;
    let offsets = dev.upload_u32(&offsets)?;
    let out = Tensor::empty(&out_shape, dev)?;
    dev.launch(&Launch {
        family: "embedding",
        kernel: "scatter_add",
        bindings: &[(0, Buf::F32(dout)), (1, Buf::U32(&order)), (2, Buf::F32(&out)), (4, Buf::U32(&offsets))],
        params: Params::new(&[word(ids.len()), word(d), word(vocab), 0]),
        grid: Grid::Rows { groups: word(vocab), slot: 3 },
        constants: &[],
        threads: 256,
    })?;
    Ok(out)
}
