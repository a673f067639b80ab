//! The Qwen2.5-VL model, between the tape (autograd) and the RL layer: config, weights and
//! their names, the vision tower, the decoder, the 3-D rope index, the forward (clean and
//! blind) and the language-model loss.

pub mod config;
pub mod decoder;
pub mod forward;
pub mod input_file;
pub mod inputs;
pub mod chat;
pub mod processor;
pub mod recompute;
pub mod kv_cache;
pub mod lora;
pub mod peft;
pub mod generate;
pub mod names;
pub mod params;
pub mod rope_index;
pub mod shared_prefix;
pub mod vision;
pub mod weights;

pub use config::{ModelConfig, TextConfig, VisionConfig};
pub use forward::{decode_step, extend, extend_hidden, forward, forward_cached, forward_cached_hidden, forward_hidden, lm_head, lm_loss, Blind, ForwardOptions, Keep};
pub use kv_cache::KvCache;
pub use generate::{generate, Completion, Generation, GenerateOptions, Sampling};
pub use inputs::ModelInputs;
pub use params::ParamVars;
pub use recompute::Recompute;
pub use shared_prefix::{forward_shared_hidden, SharedBatch};
pub use lora::{LoraConfig, Target as LoraTarget};
pub use weights::{Precision, Weights};
