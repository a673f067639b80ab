//! The `cuda-emu` backend (feature `cuda-emu`, tests only): the kernels of cuda/*.cu run on a
//! CPU emulation of the CUDA execution model (cuda/emu/), reached through the same `Launch`
//! as real CUDA: kernel name, arguments in binding order, params, grid and block size. So the
//! binding order, the params layout and the grid maths are tested along with the kernels.

use super::{Buf, Grid, IndexBuffer, Launch};
use crate::error::{Error, Result};
use crate::params::Params;
use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::{Arc, Mutex, OnceLock};

unsafe extern "C" {
    fn pgpo_emu_run(name: *const c_char, args: *mut *mut c_void, gx: u32, gy: u32, gz: u32, threads: u32) -> c_int;
}

/// Host memory that an emulated kernel writes through a raw pointer, as device memory.
pub struct EmuBuffer(UnsafeCell<Box<[f32]>>);

// SAFETY: kernels write only during a launch, which holds LAUNCH; otherwise the buffer is
// read only (a kernel's output is a fresh buffer no other tensor shares yet).
unsafe impl Sync for EmuBuffer {}

impl EmuBuffer {
    fn ptr(&self) -> *mut f32 {
        let boxed: *mut Box<[f32]> = self.0.get();
        // SAFETY: a raw place through the Box (a built-in deref), so no reference to the data
        // is created while a reader may hold one; see the Sync impl for the writes.
        unsafe { (&raw mut **boxed).cast::<f32>() }
    }

    pub fn read(&self) -> Vec<f32> {
        // SAFETY: no launch writes this buffer while a tensor that owns it is read.
        unsafe { (*self.0.get()).to_vec() }
    }
}

/// Block-shared memory is static storage in the emulation, so launches run one at a time.
static LAUNCH: Mutex<()> = Mutex::new(());

pub struct EmuDevice;

impl EmuDevice {
    pub fn shared() -> Arc<EmuDevice> {
        static DEV: OnceLock<Arc<EmuDevice>> = OnceLock::new();
        DEV.get_or_init(|| Arc::new(EmuDevice)).clone()
    }

    pub fn upload(&self, data: &[f32]) -> EmuBuffer {
        EmuBuffer(UnsafeCell::new(data.into()))
    }

    /// Packed half-precision words, held as f32-sized slots (see `tensor::Storage`).
    pub fn upload_words(&self, words: &[u32]) -> EmuBuffer {
        EmuBuffer(UnsafeCell::new(words.iter().map(|&w| f32::from_bits(w)).collect()))
    }

    /// An output buffer: the poison value when poisoning is on, else zeros.
    pub fn alloc(&self, n: usize) -> EmuBuffer {
        self.upload(&vec![crate::poison_value().unwrap_or(0.0); n])
    }

    pub(crate) fn launch(&self, l: &Launch<'_>) -> Result<()> {
        let (gx, gy, gz) = match l.grid {
            Grid::Rows { groups, .. } => (groups, 1, 1),
            Grid::Xyz(x, y, z) => (x, y, z),
        };
        if gx == 0 || gy == 0 || gz == 0 {
            return Ok(());
        }
        // cuLaunchKernel's convention: an array of pointers to each argument's value.
        let mut values: Vec<*mut c_void> = l
            .bindings
            .iter()
            .map(|(_, arg)| match arg {
                Buf::F32(t) | Buf::Any(t) => match t.storage() {
                    crate::tensor::Storage::Emu(b) => Ok(b.ptr().cast()),
                    _ => Err(Error::Cuda(format!("{}: argument is not a cuda-emu tensor", l.kernel))),
                },
                Buf::U32(IndexBuffer::Emu(ids)) => Ok(ids.as_ptr().cast_mut().cast()),
                #[allow(unreachable_patterns)]
                Buf::U32(_) => Err(Error::Cuda(format!("{}: index argument is not on cuda-emu", l.kernel))),
            })
            .collect::<Result<_>>()?;
        let mut params: Params = l.params;
        let mut args: Vec<*mut c_void> = values.iter_mut().map(|v| (v as *mut *mut c_void).cast()).collect();
        args.push((&mut params as *mut Params).cast());
        let name = CString::new(l.kernel).expect("kernel names have no NUL");
        let _one_at_a_time = LAUNCH.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the op validated every size and allocated every output for the whole grid;
        // the argument order and types follow the kernel signature in cuda/<family>.cu.
        let rc = unsafe { pgpo_emu_run(name.as_ptr(), args.as_mut_ptr(), gx, gy, gz, l.threads) };
        if rc != 0 {
            return Err(Error::Cuda(format!("cuda-emu: no kernel named {} in cuda/{}.cu", l.kernel, l.family)));
        }
        Ok(())
    }
}
