//! WGSL sources and the pipeline cache, keyed by (kernel family, entry point, specialization).

use crate::error::{Error, Result};
use std::collections::HashMap;

/// Shared WGSL pieces, spliced in where a shader has the line `// #include "<name>"`.
const INCLUDES: &[(&str, &str)] = &[
    ("row_stats.wgsl", include_str!("../../../shaders/include/row_stats.wgsl")),
    ("numerics.wgsl", include_str!("../../../shaders/include/numerics.wgsl")),
    ("half.wgsl", include_str!("../../../shaders/include/half.wgsl")),
];

/// The WGSL source of a kernel family with its includes expanded.
pub fn source(family: &str) -> Option<String> {
    let mut src = raw_source(family)?.to_string();
    for (name, text) in INCLUDES {
        src = src.replace(&format!("// #include \"{name}\""), text);
    }
    Some(src)
}

/// The WGSL file of a kernel family, compiled into the binary.
fn raw_source(family: &str) -> Option<&'static str> {
    Some(match family {
        "elementwise" => include_str!("../../../shaders/elementwise.wgsl"),
        "reduce" => include_str!("../../../shaders/reduce.wgsl"),
        "softmax" => include_str!("../../../shaders/softmax.wgsl"),
        "matmul" => include_str!("../../../shaders/matmul.wgsl"),
        "embedding" => include_str!("../../../shaders/embedding.wgsl"),
        "permute" => include_str!("../../../shaders/permute.wgsl"),
        "concat" => include_str!("../../../shaders/concat.wgsl"),
        "rms_norm" => include_str!("../../../shaders/rms_norm.wgsl"),
        "rope" => include_str!("../../../shaders/rope.wgsl"),
        "attention" => include_str!("../../../shaders/attention.wgsl"),
        "cross_entropy" => include_str!("../../../shaders/cross_entropy.wgsl"),
        "adamw" => include_str!("../../../shaders/adamw.wgsl"),
        "kl_dual" => include_str!("../../../shaders/kl_dual.wgsl"),
        "pgpo_weights" => include_str!("../../../shaders/pgpo_weights.wgsl"),
        "policy_loss" => include_str!("../../../shaders/policy_loss.wgsl"),
        _ => return None,
    })
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    family: &'static str,
    kernel: &'static str,
    constants: Vec<(&'static str, u64)>,
}

#[derive(Default)]
pub struct Cache {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<Key, wgpu::ComputePipeline>,
}

impl Cache {
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        family: &'static str,
        kernel: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = Key { family, kernel, constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect() };
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let compile_err = |log: String| Error::Compile { kernel: format!("{family}.wgsl::{kernel}"), log };
        if !self.modules.contains_key(family) {
            let src = source(family).ok_or_else(|| compile_err("no such WGSL file".into()))?;
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(family),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(compile_err(e.to_string()));
            }
            self.modules.insert(family, module);
        }
        let module = &self.modules[family];
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel),
            layout: None,
            module,
            entry_point: Some(kernel),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(compile_err(e.to_string()));
        }
        self.pipelines.insert(key, pipeline.clone());
        Ok(pipeline)
    }
}
