//! The fused attention forward keeps O(T * head_dim) memory per head: measured with a
//! counting allocator at T = 8192 on the CPU, where the score matrix alone would be 256 MiB:
//! beyond its outputs it uses a fixed workspace that does not grow with T.

use pgpo::ops::{attention, AttnOptions};
use pgpo::{Device, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated at peak by a causal attention forward at T tokens, beyond its outputs.
fn workspace(t: usize, d: usize) -> (usize, usize) {
    let mut rng = pgpo::rng::Rng::new(1);
    let mut mk = || Tensor::from_vec(rng.vec(t * d, -1.0, 1.0), &[1, 1, t, d], &Device::Cpu).unwrap();
    let (q, k, v) = (mk(), mk(), mk());
    let opts = AttnOptions { causal: true, ..Default::default() };
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let (o, lse) = attention(&q, &k, &v, &opts).unwrap();
    let extra = PEAK.load(Ordering::SeqCst) - before;
    assert!(o.to_vec().unwrap().iter().all(|x| x.is_finite()));
    let outputs = (o.numel() + lse.numel()) * 4;
    (extra.saturating_sub(outputs), outputs)
}

#[test]
fn attention_forward_at_8192_tokens_allocates_its_outputs_and_a_fixed_workspace() {
    let d = 64;
    // Warm the thread pool and the GEMM's per-thread packing buffers on a small problem.
    workspace(256, d);
    let (small, _) = workspace(2048, d);
    let (large, outputs) = workspace(8192, d);
    let scores = 8192 * 8192 * 4;
    println!("T=8192: outputs {outputs} B, workspace {large} B (T=2048: {small} B); a score matrix would be {scores} B");
    // The workspace (per-task tiles, GEMM packing) does not grow with T: O(T * D) in all.
    assert!(large <= 4 << 20, "workspace {large} B above 4 MiB");
    assert!(large <= small + (256 << 10), "workspace grew with T: {small} B at 2048, {large} B at 8192");
}
