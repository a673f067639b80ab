//! The CPU reference backend: plain, obviously-right loops, parallel over rows with rayon,
//! and matmul through the `gemm` crate. Every GPU kernel is compared against these.

pub mod adamw;
pub mod attention;
pub mod concat;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod fastmath;
pub mod kl_dual;
pub mod matmul;
pub mod matmul_few_rows;
mod matmul_half;
#[cfg(target_arch = "x86_64")]
mod matmul_few_rows_avx512;
pub mod permute;
pub mod pgpo_weights;
pub mod policy_loss;
pub mod reduce;
pub mod rms_norm;
pub mod rope;
pub mod rowstats;
pub mod softmax;

/// Rows per rayon task for row-wise kernels: enough work to amortise scheduling.
pub(crate) const MIN_ELEMS_PER_TASK: usize = 1 << 14;

/// An output buffer: filled with the poison value when poisoning is on, so unwritten
/// elements show.
pub fn alloc(n: usize) -> Vec<f32> {
    keep_freed_memory();
    if let Some(poison) = crate::poison_value() {
        let mut v = Vec::with_capacity(n);
        huge_pages(&v, n);
        v.resize(n, poison);
        v
    } else {
        // Zeroed pages come lazily from the OS; the kernel's first write faults them in.
        let v = vec![0.0; n];
        huge_pages(&v, n);
        v
    }
}

/// An output buffer of n elements that `write` fills, every element, through the pointer it
/// is given: not zeroed first, unlike `alloc` (zeroing the products' outputs took a
/// sixteenth of the small model's prefill). Poisoned first when poisoning is on, so an
/// element the kernel leaves unwritten still shows.
///
/// # Safety
/// `write` writes all n elements (and reads none it has not written).
pub unsafe fn alloc_written(n: usize, write: impl FnOnce(*mut f32)) -> Vec<f32> {
    if crate::poison_value().is_some() {
        let mut v = alloc(n);
        write(v.as_mut_ptr());
        return v;
    }
    keep_freed_memory();
    let mut v: Vec<f32> = Vec::with_capacity(n);
    huge_pages(&v, n);
    write(v.as_mut_ptr());
    // SAFETY: the caller's `write` initialised all n elements.
    unsafe { v.set_len(n) };
    v
}

/// Makes the calling thread worker 0 of rayon's global pool (of the usual size), so that the
/// CPU ops it calls run on it, with the other workers stealing a share. Otherwise each op
/// is handed to a pool thread while the caller sleeps until it is done: two thread wake-ups
/// per op, and a decode step runs some 150 ops. Call it first, from the thread that will
/// run the model (the `pgpo` binary does); it does nothing once the pool exists.
pub fn run_ops_on_this_thread() {
    let _ = rayon::ThreadPoolBuilder::new().use_current_thread().build_global();
}

/// Every op allocates its output and drops its inputs' buffers soon after, megabytes at a
/// time. glibc hands allocations over 128 KiB back to the kernel on free (munmap), so the
/// next one faults in fresh pages that the kernel zeroes first: a tenth of the small model's
/// forward+backward went to page faults. Keeping freed memory in the heap lets the next
/// tensor reuse those pages. Set once, on the first CPU allocation.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // Older glibc caps the mmap threshold at 32 MiB and refuses 1 GiB; then the trim
            // threshold is left alone too, since setting it would freeze glibc's dynamic mmap
            // threshold at its 128 KiB start.
            // SAFETY: mallopt only changes glibc's thresholds.
            unsafe {
                if libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30) == 1 {
                    libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
                }
            }
        });
    }
}

/// Asks Linux to back a large, not yet touched buffer with transparent huge pages: a
/// 2.5 GB logits gradient then faults in 1,200 times instead of 600,000.
fn huge_pages(v: &Vec<f32>, n: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = n * 4;
        if bytes < 4 * HUGE {
            return;
        }
        let start = (v.as_ptr() as usize).next_multiple_of(HUGE);
        let end = (v.as_ptr() as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside this allocation; madvise only changes how the
            // kernel backs it, and failure is harmless.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    let _ = (v, n);
}

/// Rows per parallel chunk for a row length of `cols`.
pub(crate) fn rows_per_task(cols: usize) -> usize {
    (MIN_ELEMS_PER_TASK / cols.max(1)).max(1)
}
