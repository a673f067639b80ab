//! The wgpu runtime: one device and queue per process, a pipeline cache, a buffer pool,
//! uniform parameters and readback. Validation errors are captured and returned as `Err`.

pub mod adapter;
mod pipeline;
mod pool;

pub use pool::GpuBuffer;

use super::{Buf, Grid, IndexBuffer, Launch};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex, OnceLock};

/// Binding slot of the uniform parameter block in every shader.
const PARAMS_BINDING: u32 = 3;

pub struct WgpuDevice {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    pipelines: Mutex<pipeline::Cache>,
    pool: Arc<Mutex<pool::Pool>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost, once it was (driver reset, removed GPU, `destroy`).
    lost: Arc<Mutex<Option<String>>>,
}

static SHARED: OnceLock<std::result::Result<Arc<WgpuDevice>, String>> = OnceLock::new();

impl WgpuDevice {
    /// The process-wide device on the chosen adapter, created on first use.
    pub fn shared() -> Result<Arc<WgpuDevice>> {
        SHARED
            .get_or_init(|| {
                WgpuDevice::new().map(Arc::new).map_err(|e| match e {
                    Error::Unavailable { reason, .. } => reason,
                    other => other.to_string(),
                })
            })
            .clone()
            .map_err(|reason| Error::Unavailable { backend: "wgpu", reason })
    }

    pub fn new() -> Result<WgpuDevice> {
        let adapter = adapter::choose()?;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("pgpo"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Wgpu(format!("request_device: {e}")))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        }));
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *flag.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{reason:?}: {msg}"));
        });
        // Keep at most a quarter of the largest buffer, and no more than 1 GiB, idle in the pool.
        let cap = (limits.max_buffer_size / 4).min(1 << 30);
        Ok(WgpuDevice {
            device,
            queue,
            info: adapter.get_info(),
            features: adapter.features(),
            limits,
            pipelines: Mutex::new(pipeline::Cache::default()),
            pool: pool::new_pool(cap),
            errors,
            lost,
        })
    }

    /// Destroys the device, as a driver reset or a removed GPU would: every later operation
    /// on it fails with an error. For device-loss drills and tests.
    pub fn destroy(&self) {
        self.device.destroy();
    }

    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// A real GPU, as opposed to a software rasteriser such as lavapipe.
    pub fn is_hardware(&self) -> bool {
        matches!(
            self.info.device_type,
            wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::VirtualGpu
        )
    }

    /// An error once the device is lost: wgpu itself panics on some calls to a lost device,
    /// so every entry point asks first.
    fn alive(&self) -> Result<()> {
        match &*self.lost.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => Err(Error::Wgpu(format!("the device was lost ({why}); its buffers are gone: restart the process"))),
            None => Ok(()),
        }
    }

    fn take_errors(&self) -> Result<()> {
        let mut errs = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errs.is_empty() {
            Ok(())
        } else {
            let mut msg = errs.join("; ");
            errs.clear();
            if msg.contains("Out of Memory") {
                msg.push_str(": the device is out of memory; use smaller batches (pgpo train estimates its peak before the first step)");
            }
            Err(Error::Wgpu(msg))
        }
    }

    /// Refuses a buffer the adapter cannot bind, naming the limit.
    fn check_size(&self, bytes: u64) -> Result<()> {
        let bind = u64::from(self.limits.max_storage_buffer_binding_size);
        if bytes > bind {
            return Err(Error::AdapterLimit { what: "a buffer (bytes)", limit: "max_storage_buffer_binding_size", requested: bytes, allowed: bind });
        }
        if bytes > self.limits.max_buffer_size {
            return Err(Error::AdapterLimit {
                what: "a buffer (bytes)",
                limit: "max_buffer_size",
                requested: bytes,
                allowed: self.limits.max_buffer_size,
            });
        }
        Ok(())
    }

    fn buffer(&self, bytes: u64) -> Result<GpuBuffer> {
        self.alive()?;
        self.check_size(bytes)?;
        Ok(pool::take(&self.pool, &self.device, bytes))
    }

    /// An output buffer of `n` f32; filled with the poison value when poisoning is on.
    pub fn alloc(&self, n: usize) -> Result<GpuBuffer> {
        let buf = self.buffer(4 * n as u64)?;
        if let Some(poison) = crate::poison_value() {
            let fill = vec![poison; (buf.bytes() / 4) as usize];
            self.queue.write_buffer(buf.raw(), 0, bytemuck::cast_slice(&fill));
        }
        Ok(buf)
    }

    pub fn upload(&self, data: &[f32]) -> Result<GpuBuffer> {
        let buf = self.buffer(4 * data.len() as u64)?;
        if !data.is_empty() {
            self.queue.write_buffer(buf.raw(), 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    pub fn upload_u32(&self, data: &[u32]) -> Result<GpuBuffer> {
        let buf = self.buffer(4 * data.len() as u64)?;
        if !data.is_empty() {
            self.queue.write_buffer(buf.raw(), 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    /// Copies the first `n` f32 of `buf` back to the host.
    pub fn download(&self, buf: &GpuBuffer, n: usize) -> Result<Vec<f32>> {
        self.alive()?;
        if n == 0 {
            self.synchronize()?;
            return Ok(Vec::new());
        }
        let bytes = 4 * n as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pgpo readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf.raw(), 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Wgpu(format!("poll: {e}")))?;
        self.take_errors()?;
        rx.recv()
            .map_err(|_| Error::Wgpu("readback callback never ran".into()))?
            .map_err(|e| Error::Wgpu(format!("map_async: {e}")))?;
        let view = staging.get_mapped_range(..).map_err(|e| Error::Wgpu(format!("map range: {e}")))?;
        let out = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    pub fn synchronize(&self) -> Result<()> {
        self.alive()?;
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Wgpu(format!("poll: {e}")))?;
        self.take_errors()
    }

    pub(crate) fn launch(&self, l: &Launch<'_>) -> Result<()> {
        self.alive()?;
        let max = self.limits.max_compute_workgroups_per_dimension;
        let mut params = l.params;
        let (gx, gy, gz) = match l.grid {
            Grid::Rows { groups, slot } => {
                let gx = groups.min(max).max(1);
                params = params.with(slot, gx);
                (gx, groups.div_ceil(gx), 1)
            }
            Grid::Xyz(x, y, z) => (x, y, z),
        };
        if gx == 0 || gy == 0 || gz == 0 {
            return Ok(());
        }
        if gx > max || gy > max || gz > max {
            return Err(Error::AdapterLimit {
                what: "a dispatch (workgroups along one axis)",
                limit: "max_compute_workgroups_per_dimension",
                requested: u64::from(gx.max(gy).max(gz)),
                allowed: u64::from(max),
            });
        }
        let pipeline = self
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.device, l.family, l.kernel, l.constants)?;
        // Not create_buffer_init: it panics when the device is lost between two checks.
        let uniform = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pgpo params"),
            size: std::mem::size_of_val(&params) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&uniform, 0, bytemuck::bytes_of(&params));
        let mut entries: Vec<wgpu::BindGroupEntry> = l
            .bindings
            .iter()
            .map(|(binding, buf)| {
                let raw = match buf {
                    Buf::F32(t) | Buf::Any(t) => match t.storage() {
                        crate::tensor::Storage::Wgpu(b) => Ok(b.raw()),
                        _ => Err(Error::Wgpu(format!("{}: argument is not a wgpu tensor", l.kernel))),
                    },
                    Buf::U32(IndexBuffer::Wgpu(b)) => Ok(b.raw()),
                    #[allow(unreachable_patterns)]
                    Buf::U32(_) => Err(Error::Wgpu(format!("{}: index argument is not on wgpu", l.kernel))),
                }?;
                Ok(wgpu::BindGroupEntry { binding: *binding, resource: raw.as_entire_binding() })
            })
            .collect::<Result<_>>()?;
        entries.push(wgpu::BindGroupEntry { binding: PARAMS_BINDING, resource: uniform.as_entire_binding() });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(l.kernel),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(l.kernel), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(gx, gy, gz);
        }
        self.queue.submit([enc.finish()]);
        self.take_errors()
    }
}
