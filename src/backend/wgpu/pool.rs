//! Buffer pool: storage buffers are recycled by size class instead of being created per op.
//! A dropped `GpuBuffer` returns to the pool until the pool holds `cap` bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

#[derive(Default)]
pub struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    held_bytes: u64,
    cap: u64,
}

/// A device buffer whose byte size is a multiple of 256 (at least 256).
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Arc<Mutex<Pool>>,
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("present until drop")
    }

    pub fn bytes(&self) -> u64 {
        self.raw().size()
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        let Some(buf) = self.buffer.take() else { return };
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.held_bytes + buf.size() <= pool.cap {
            pool.held_bytes += buf.size();
            pool.free.entry(buf.size()).or_default().push(buf);
        }
    }
}

/// Rounds a byte count up to the pool's size class.
pub fn size_class(bytes: u64) -> u64 {
    bytes.max(1).div_ceil(256) * 256
}

pub fn new_pool(cap: u64) -> Arc<Mutex<Pool>> {
    Arc::new(Mutex::new(Pool { cap, ..Default::default() }))
}

/// A buffer of exactly `size_class(bytes)` bytes, reused when one is free.
pub fn take(pool: &Arc<Mutex<Pool>>, device: &wgpu::Device, bytes: u64) -> GpuBuffer {
    let size = size_class(bytes);
    let reused = {
        let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
        let b = p.free.get_mut(&size).and_then(|v| v.pop());
        if b.is_some() {
            p.held_bytes -= size;
        }
        b
    };
    let buffer = reused.unwrap_or_else(|| {
        device.create_buffer(&wgpu::BufferDescriptor { label: Some("pgpo"), size, usage: USAGE, mapped_at_creation: false })
    });
    GpuBuffer { buffer: Some(buffer), pool: pool.clone() }
}
