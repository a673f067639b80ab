//! `backend::cpu::keep_pool_hot`: the pool's workers stay awake and keep taking work while a
//! guard lives, and guards held from inside pool jobs cannot deadlock each other.

use pgpo::backend::cpu::keep_pool_hot;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

fn term(i: u64, seed: u64) -> u64 {
    (i * 2_654_435_761 + seed) % 1_000_003
}

fn work(seed: u64) -> u64 {
    (0..20_000u64).into_par_iter().map(|i| term(i, seed)).sum()
}

fn serial(seed: u64) -> u64 {
    (0..20_000u64).map(|i| term(i, seed)).sum()
}

/// Runs `f` on another thread and fails, rather than hanging the test run, if it takes over
/// a minute.
fn within_a_minute(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("the pool deadlocked");
}

#[test]
fn parallel_work_under_a_hot_pool_is_done_and_the_guard_lets_go() {
    within_a_minute(|| {
        pool(2).install(|| {
            for round in 0..3 {
                let hot = keep_pool_hot();
                for s in 0..50 {
                    assert_eq!(work(s + round), serial(s + round));
                }
                drop(hot);
                assert_eq!(work(round), serial(round));
            }
        })
    });
}

#[test]
fn guards_held_from_inside_pool_jobs_do_not_deadlock() {
    // Each side runs on its own worker and takes its guard only once both have started; the
    // third worker steals their work, so each side's worker waits inside its side and picks the
    // other side's hot loop up there, with its own side below it on the stack. Without the
    // idle limit each loop then waits for the other side forever (seen: this test timed out).
    within_a_minute(|| {
        pool(3).install(|| {
            for _ in 0..200 {
                let started = AtomicUsize::new(0);
                let side = |seed: u64| {
                    started.fetch_add(1, Ordering::SeqCst);
                    while started.load(Ordering::SeqCst) < 2 {
                        std::hint::spin_loop();
                    }
                    let _hot = keep_pool_hot();
                    (0..20).map(|s| work(seed + s)).sum::<u64>()
                };
                let (a, b) = rayon::join(|| side(1), || side(100));
                assert_eq!(a, (0..20).map(|s| serial(1 + s)).sum::<u64>());
                assert_eq!(b, (0..20).map(|s| serial(100 + s)).sum::<u64>());
            }
        })
    });
}
