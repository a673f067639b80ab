//! Training: the synthetic task and the tiny model, data and batches, the SFT warm-up, the RL
//! step (GRPO, DAPO, PGPO), the optimizer, metrics, checkpoints and the run loop.

pub mod batch;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod memory;
pub mod plan;
pub mod metrics;
pub mod optimizer;
pub mod plots;
pub mod progress;
pub mod report;
pub mod rl_options;
pub mod rl_step;
pub mod run;
pub mod synthetic;
pub mod tiny;
pub mod trainer;
pub mod visual_dependency;

pub use config::TrainConfig;
pub use optimizer::AdamW;
pub use run::{run, Event, Summary};
