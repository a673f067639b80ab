//! `pgpo info`: backends, adapters, limits and features.

use pgpo::Device;

pub fn info() -> pgpo::Result<bool> {
    println!("cpu: available, {} rayon threads", rayon::current_num_threads());
    wgpu_info();
    cuda_info();
    println!("auto: {}", Device::auto().name());
    Ok(true)
}

#[cfg(feature = "wgpu")]
fn wgpu_info() {
    use pgpo::backend::wgpu::adapter;
    let adapters = adapter::enumerate();
    match adapters {
        Ok(list) if !list.is_empty() => {
            println!("wgpu: {} adapter(s)", list.len());
            for a in &list {
                let i = a.get_info();
                println!(
                    "  - {} [{:?}, {:?}] driver: {} {}",
                    i.name, i.device_type, i.backend, i.driver, i.driver_info
                );
            }
        }
        Ok(_) => println!("wgpu: no adapter found (install mesa-vulkan-drivers for a software Vulkan device)"),
        Err(e) => println!("wgpu: {e}"),
    }
    match Device::wgpu() {
        Ok(Device::Wgpu(d)) => {
            let l = d.limits();
            println!("  chosen: {} ({})", d.adapter_name(), if d.is_hardware() { "GPU" } else { "software" });
            println!("  limits: max_storage_buffer_binding_size {} B, max_buffer_size {} B", l.max_storage_buffer_binding_size, l.max_buffer_size);
            println!(
                "          max_compute_workgroup_storage_size {} B, max_compute_invocations_per_workgroup {}, max_compute_workgroups_per_dimension {}",
                l.max_compute_workgroup_storage_size, l.max_compute_invocations_per_workgroup, l.max_compute_workgroups_per_dimension
            );
            let f = d.features();
            let i = d.info();
            println!(
                "  features: shader_f16 {}, subgroup {} (sizes {}..{}), timestamp_query {}",
                f.contains(wgpu::Features::SHADER_F16),
                f.contains(wgpu::Features::SUBGROUP),
                i.subgroup_min_size,
                i.subgroup_max_size,
                f.contains(wgpu::Features::TIMESTAMP_QUERY)
            );
        }
        Ok(_) => {}
        Err(e) => println!("  chosen: none ({e})"),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_info() {
    println!("wgpu: unavailable: built without the `wgpu` feature");
}

#[cfg(feature = "cuda")]
fn cuda_info() {
    match pgpo::backend::cuda::compile::nvrtc_missing() {
        None => println!("nvrtc: available (CUDA kernels can be compiled)"),
        Some(why) => println!("nvrtc: unavailable: {why}"),
    }
    match pgpo::backend::cuda::blas::blas_missing() {
        None => println!("cublas: available (f32 products on cuda; PGPO_CUBLAS=0 for pgpo's own kernel)"),
        Some(why) => println!("cublas: unavailable: {why}"),
    }
    match Device::cuda(0) {
        Ok(d) => println!("cuda: available, {}", d.name()),
        Err(e) => println!("cuda: {e}"),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_info() {
    println!("cuda: unavailable: built without the `cuda` feature");
}
