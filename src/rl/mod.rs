//! Reinforcement learning from verifiable rewards: rewards, group advantages with the DAPO
//! filter, token-level PGPO advantages, and the aggregation of the policy loss. The kernels
//! (kl_dual, pgpo_weights, policy_loss) live in `crate::ops`.

pub mod advantages;
pub mod policy;
pub mod rewards;
