//! Training: the optimizer (more of the trainer lands here).

pub mod optimizer;

pub use optimizer::AdamW;
