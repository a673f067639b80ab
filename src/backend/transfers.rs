//! Host-device traffic, counted process-wide for every GPU backend (wgpu, cuda, cuda-emu):
//! each copy from the host into a device buffer (tensors, index lists), each copy back, and
//! each time the host waits for the device's queue (a synchronize, and every read, which
//! waits for the work before it). `pgpo bench` reports them per phase of the RL step, where
//! a loop that reads logits back every decode step shows up as megabytes. The CPU backend
//! moves nothing and counts nothing. Launch parameters (a few words a kernel) are not data
//! and are not counted.

use std::sync::atomic::{AtomicU64, Ordering};

static READS: AtomicU64 = AtomicU64::new(0);
static READ_BYTES: AtomicU64 = AtomicU64::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);
static WRITE_BYTES: AtomicU64 = AtomicU64::new(0);
static WAITS: AtomicU64 = AtomicU64::new(0);

/// The counters at one moment; the difference of two is what happened between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    pub host_reads: u64,
    pub host_read_bytes: u64,
    pub host_writes: u64,
    pub host_write_bytes: u64,
    pub waits: u64,
}

impl Transfers {
    pub fn now() -> Transfers {
        Transfers {
            host_reads: READS.load(Ordering::Relaxed),
            host_read_bytes: READ_BYTES.load(Ordering::Relaxed),
            host_writes: WRITES.load(Ordering::Relaxed),
            host_write_bytes: WRITE_BYTES.load(Ordering::Relaxed),
            waits: WAITS.load(Ordering::Relaxed),
        }
    }

    /// What was counted since `self` was taken.
    pub fn elapsed(&self) -> Transfers {
        Transfers::now().minus(self)
    }

    /// `self` less `other` (a part of it).
    pub fn minus(&self, other: &Transfers) -> Transfers {
        Transfers {
            host_reads: self.host_reads.saturating_sub(other.host_reads),
            host_read_bytes: self.host_read_bytes.saturating_sub(other.host_read_bytes),
            host_writes: self.host_writes.saturating_sub(other.host_writes),
            host_write_bytes: self.host_write_bytes.saturating_sub(other.host_write_bytes),
            waits: self.waits.saturating_sub(other.waits),
        }
    }

    /// The counters from their values in the order of `fields`.
    pub fn from_values(v: [u64; 5]) -> Transfers {
        Transfers { host_reads: v[0], host_read_bytes: v[1], host_writes: v[2], host_write_bytes: v[3], waits: v[4] }
    }

    /// (name, value) pairs: `host_reads`, `host_read_bytes`, `host_writes`, `host_write_bytes`, `waits`.
    pub fn fields(&self) -> [(&'static str, u64); 5] {
        [
            ("host_reads", self.host_reads),
            ("host_read_bytes", self.host_read_bytes),
            ("host_writes", self.host_writes),
            ("host_write_bytes", self.host_write_bytes),
            ("waits", self.waits),
        ]
    }
}

impl std::ops::Add for Transfers {
    type Output = Transfers;
    fn add(self, o: Transfers) -> Transfers {
        Transfers {
            host_reads: self.host_reads + o.host_reads,
            host_read_bytes: self.host_read_bytes + o.host_read_bytes,
            host_writes: self.host_writes + o.host_writes,
            host_write_bytes: self.host_write_bytes + o.host_write_bytes,
            waits: self.waits + o.waits,
        }
    }
}

/// A copy of `bytes` from a device buffer to the host (it waits for the queue).
pub(crate) fn read(bytes: usize) {
    READS.fetch_add(1, Ordering::Relaxed);
    READ_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    WAITS.fetch_add(1, Ordering::Relaxed);
}

/// A copy of `bytes` from the host into a device buffer.
pub(crate) fn write(bytes: usize) {
    WRITES.fetch_add(1, Ordering::Relaxed);
    WRITE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// The host waited for the device's queue to drain.
pub(crate) fn wait() {
    WAITS.fetch_add(1, Ordering::Relaxed);
}
