//! f32 products through cuBLAS (`cublasSgemmStridedBatched`), loaded dynamically like the
//! driver: a machine without libcublas, a product with a bf16/f16 operand (cuBLAS wants both
//! operands in one dtype; our activations stay f32), `PGPO_CUBLAS=0`, or a thread inside
//! `backend::with_own_kernels` falls back to our NVRTC kernel (cuda/matmul.cu), which
//! `pgpo check` keeps comparing (the `matmul*_nvrtc` cases).
//! cuBLAS's default math mode does not use TF32, so the products stay f32 to f32 rounding.

use super::{cuda_err, CudaDevice};
use crate::error::Result;
use crate::backend::cpu::matmul::MatmulDims;
use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaSlice, DevicePtr};

/// Why cuBLAS cannot be used here, or `None` when libcublas loads.
pub fn blas_missing() -> Option<String> {
    // SAFETY: only probes whether the shared library can be opened.
    if unsafe { cudarc::cublas::sys::is_culib_present() } {
        None
    } else {
        Some("libcublas was not found on the library path (the CUDA toolkit, or `pip install nvidia-cublas-cu12` with its lib/ on LD_LIBRARY_PATH); products use pgpo's own kernel".into())
    }
}

impl CudaDevice {
    /// The device's cuBLAS handle, made on first use; `None` where cuBLAS cannot load.
    fn blas(&self) -> Option<&CudaBlas> {
        self.blas.get_or_init(|| if blas_missing().is_some() { None } else { CudaBlas::new(self.stream.clone()).ok() }).as_ref()
    }

    /// out (row-major [batch, m, n]) = op(a) · op(b) (+ out when `accumulate`) through cuBLAS.
    /// Ok(false): not taken (cuBLAS absent or off); the caller runs its own kernel.
    pub fn sgemm(&self, a: &CudaSlice<f32>, b: &CudaSlice<f32>, out: &CudaSlice<f32>, d: &MatmulDims, accumulate: bool) -> Result<bool> {
        // An empty product would give cuBLAS a leading dimension of 0 (invalid); our kernel
        // writes its zeros.
        if crate::backend::own_kernels_only() || d.m == 0 || d.n == 0 || d.k == 0 || d.batch == 0 {
            return Ok(false);
        }
        let Some(blas) = self.blas() else { return Ok(false) };
        let int = |x: usize| i32::try_from(x).map_err(|_| crate::error::Error::shape("matmul", format!("{x} exceeds cuBLAS's 32-bit sizes")));
        let (m, n, k, batch) = (int(d.m)?, int(d.n)?, int(d.k)?, int(d.batch)?);
        let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0 });
        let (pa, _read_a) = a.device_ptr(&self.stream);
        let (pb, _read_b) = b.device_ptr(&self.stream);
        let (pc, _write_c) = out.device_ptr(&self.stream);
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a row-major
        // buffer read column-major is its transpose: so B goes first, each with its own flag,
        // and the leading dimensions are the row-major rows' lengths.
        // SAFETY: the op checked both operands' shapes against d (dims), out holds batch * m *
        // n values and is written by this call alone (one stream); strides of 0 broadcast one
        // matrix over the batch.
        unsafe {
            cudarc::cublas::result::sgemm_strided_batched(
                *blas.handle(),
                if d.trans_b { CUBLAS_OP_T } else { CUBLAS_OP_N },
                if d.trans_a { CUBLAS_OP_T } else { CUBLAS_OP_N },
                n,
                m,
                k,
                &alpha,
                pb as *const f32,
                if d.trans_b { k } else { n },
                d.b_stride as i64,
                pa as *const f32,
                if d.trans_a { m } else { k },
                d.a_stride as i64,
                &beta,
                pc as *mut f32,
                n,
                (d.m * d.n) as i64,
                batch,
            )
        }
        .map_err(cuda_err)?;
        Ok(true)
    }
}
