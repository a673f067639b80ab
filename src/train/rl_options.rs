//! The RL section's choices as enums (a typo is a parse error naming the field and the allowed
//! values) and the algorithm presets: `rl.algo` sets the fields its paper fixes, and a field
//! given in the TOML or by `--set` overrides its preset.

use serde::{Deserialize, Serialize};

pub use crate::backend::cpu::pgpo_weights::Variant;
pub use crate::rl::advantages::FilterKey;

/// The algorithm, and with it the preset of `RlConfig::preset`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Algo {
    /// GRPO (DeepSeekMath): symmetric clip 0.2, no dual clip, seq-mean-token-mean, no dynamic
    /// sampling, advantages divided by the group's std.
    Grpo,
    /// DAPO: clip-higher 0.2 / 0.28, token-mean, dynamic sampling (dual clip 3.0, as EasyR1).
    Dapo,
    /// DAPO plus PGPO's token weights from the visual dependency.
    Pgpo,
    /// Dr. GRPO: advantages R - mean(R) without the std, the constant normaliser
    /// (mini_batch x max_new_tokens), symmetric clip 0.2, no dynamic sampling.
    DrGrpo,
    /// GSPO: the length-normalised sequence importance ratio, clip 3e-4 / 4e-4 (its paper's),
    /// seq-mean-token-mean, no dynamic sampling.
    Gspo,
}

impl Algo {
    pub const ALL: [Algo; 5] = [Algo::Grpo, Algo::Dapo, Algo::Pgpo, Algo::DrGrpo, Algo::Gspo];

    pub fn name(self) -> &'static str {
        match self {
            Algo::Grpo => "grpo",
            Algo::Dapo => "dapo",
            Algo::Pgpo => "pgpo",
            Algo::DrGrpo => "dr_grpo",
            Algo::Gspo => "gspo",
        }
    }

    pub fn parse(s: &str) -> Option<Algo> {
        Algo::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Whether the token advantages are reshaped by PGPO's weights.
    pub fn token_weights(self) -> bool {
        self == Algo::Pgpo
    }
}

impl std::fmt::Display for Algo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How per-token losses are aggregated into a mini-batch's loss.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LossAgg {
    /// Mean over every valid token of the mini-batch (DAPO).
    TokenMean,
    /// Mean over responses of each response's token mean (GRPO, GSPO).
    SeqMeanTokenMean,
    /// Mean over responses of each response's token sum.
    SeqMeanTokenSum,
    /// The token sum divided by mini_batch x max_new_tokens (Dr. GRPO).
    Constant,
}

/// Whose ratio the clipped objective uses.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Importance {
    /// PPO's per-token ratio.
    Token,
    /// GSPO's length-normalised sequence ratio exp(mean(logp - old)) on every token.
    Sequence,
}

/// What drives PGPO's weights.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TvdEstimate {
    /// The paper's one-sample estimate from the sampled token.
    K3,
    /// The exact KL over the whole vocabulary.
    Kl,
}

/// Which weights give the two log-probs of the visual dependency (the paper is silent).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TvdPolicy {
    /// The rollout policy, once per rollout batch (ours, the default).
    Rollout,
    /// The current policy, recomputed before each mini-batch's update.
    Current,
}

/// The weights of a degenerate response, one whose every token has the same dependency.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Degenerate {
    /// Every token weighs 1: the response trains as under DAPO (ours, the default).
    Uniform,
    /// Every token weighs 0: the response does not train.
    Zero,
}

/// The `[rl]` choices of `table`, each checked against its enum: a bad one is an error that
/// names the field and lists the allowed values (serde's own error would name neither here).
pub(crate) fn check_choices(table: &toml::Table, file: &str) -> crate::error::Result<()> {
    use serde::Deserialize;
    fn one<T: serde::de::DeserializeOwned>(rl: &toml::Table, key: &str, file: &str) -> crate::error::Result<()> {
        let Some(v) = rl.get(key) else { return Ok(()) };
        T::deserialize(v.clone()).map(|_| ()).map_err(|e| super::config::bad(file, &format!("rl.{key}"), format!("is {v}: {}", e.to_string().trim())))
    }
    if let Some(v) = table.get("recompute") {
        crate::model::Recompute::deserialize(v.clone()).map_err(|e| super::config::bad(file, "recompute", format!("is {v}: {}", e.to_string().trim())))?;
    }
    let Some(toml::Value::Table(rl)) = table.get("rl") else { return Ok(()) };
    one::<Algo>(rl, "algo", file)?;
    one::<LossAgg>(rl, "loss_agg", file)?;
    one::<Importance>(rl, "importance", file)?;
    one::<FilterKey>(rl, "filter_key", file)?;
    one::<Variant>(rl, "variant", file)?;
    one::<Degenerate>(rl, "degenerate", file)?;
    one::<TvdEstimate>(rl, "tvd", file)?;
    one::<TvdPolicy>(rl, "tvd_policy", file)
}

impl LossAgg {
    /// The aggregation of `rl::policy`, or `None` for the constant normaliser.
    pub fn aggregation(self) -> Option<crate::rl::policy::Aggregation> {
        use crate::rl::policy::Aggregation;
        match self {
            LossAgg::TokenMean => Some(Aggregation::TokenMean),
            LossAgg::SeqMeanTokenMean => Some(Aggregation::SeqMeanTokenMean),
            LossAgg::SeqMeanTokenSum => Some(Aggregation::SeqMeanTokenSum),
            LossAgg::Constant => None,
        }
    }
}
