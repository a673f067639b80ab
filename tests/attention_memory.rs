//! The fused attention forward keeps O(T * head_dim) memory per head: measured with a
//! counting allocator at T = 8192 on the CPU, where the score matrix alone would be 256 MiB.

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

#[test]
fn attention_forward_at_8192_tokens_allocates_only_its_outputs() {
    let (t, d) = (8192usize, 64usize);
    let mut rng = pgpo::rng::Rng::new(1);
    let mk = |rng: &mut pgpo::rng::Rng| Tensor::from_vec(rng.vec(t * d, -1.0, 1.0), &[1, 1, t, d], &Device::Cpu).unwrap();
    let (q, k, v) = (mk(&mut rng), mk(&mut rng), mk(&mut rng));
    let opts = AttnOptions { causal: true, ..Default::default() };
    // Warm the thread pool on a small problem so its start-up allocations are not counted.
    let small = Tensor::from_vec(rng.vec(64 * d, -1.0, 1.0), &[1, 1, 64, d], &Device::Cpu).unwrap();
    attention(&small, &small, &small, &opts).map(drop).unwrap();
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let (o, lse) = attention(&q, &k, &v, &opts).unwrap();
    let extra = PEAK.load(Ordering::SeqCst) - before;
    let outputs = (o.numel() + lse.numel()) * 4;
    let scores = t * t * 4;
    // Bound: the outputs plus 1 MiB of working space; the O(T^2) score matrix is 256x that.
    let bound = outputs + (1 << 20);
    println!("peak extra {extra} B; outputs {outputs} B; bound {bound} B; a score matrix would be {scores} B");
    assert!(extra <= bound, "attention allocated {extra} B at peak, above {bound} B");
    assert!(o.to_vec().unwrap().iter().all(|x| x.is_finite()));
}
