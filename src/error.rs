//! The one error type of the crate: every failure a user can hit, with a message they can act on.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("shape error in {op}: {msg}")]
    Shape { op: &'static str, msg: String },

    #[error("{file}: {}{msg}", if field.is_empty() { String::new() } else { format!("field `{field}` ") })]
    Config { file: String, field: String, msg: String },

    #[error("input `{tensor}`: {msg}")]
    Input { tensor: String, msg: String },

    #[error("{op}: option {name} = {value} is invalid: it must be {need}")]
    Option { op: &'static str, name: &'static str, value: f64, need: &'static str },

    #[error("{op}: index {index} is out of range for a table of {size} rows")]
    Index { op: &'static str, index: usize, size: usize },

    #[error("{op}: tensors live on different devices ({a} and {b}); move one with Tensor::to_device")]
    DeviceMismatch { op: &'static str, a: String, b: String },

    #[error("{backend} is unavailable: {reason}")]
    Unavailable { backend: &'static str, reason: String },

    #[error("{what} of {requested} exceeds the adapter limit {limit} = {allowed}; split the work into smaller pieces")]
    AdapterLimit { what: &'static str, limit: &'static str, requested: u64, allowed: u64 },

    #[error("wgpu: {0}")]
    Wgpu(String),

    #[error("cuda: {0}")]
    Cuda(String),

    #[error("kernel {kernel} failed to compile: {log}")]
    Compile { kernel: String, log: String },

    #[error("non-finite value: {0}")]
    Numeric(String),

    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn input(tensor: &str, msg: impl Into<String>) -> Self {
        Error::Input { tensor: tensor.to_string(), msg: msg.into() }
    }

    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
}
