//! The Qwen2.5-VL model: between the tape (autograd) and the RL layer. So far its
//! configuration; weights, the vision encoder, the decoder and the blind pass follow
//! (issue 10).

pub mod config;

pub use config::{ModelConfig, TextConfig, VisionConfig};
