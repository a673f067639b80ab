//! The parameters of Qwen2.5-VL: their names and shapes, and the two ways checkpoints name
//! them. pgpo names a parameter as published checkpoints do (`model.layers.N.…`,
//! `visual.blocks.N.…`, `lm_head.weight`); transformers 5 nests the same tensors under
//! `model.language_model.` and `model.visual.`.

use super::config::ModelConfig;

/// How a checkpoint's files name the tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// Published checkpoints: `model.…` for the decoder, `visual.…` for the vision tower.
    Published,
    /// transformers 5's save_pretrained: `model.language_model.…` and `model.visual.…`.
    Nested,
}

impl Naming {
    /// The name of pgpo's parameter `name` in a file of this naming.
    pub fn to_file(self, name: &str) -> String {
        match self {
            Naming::Published => name.to_string(),
            Naming::Nested => {
                if let Some(rest) = name.strip_prefix("visual.") {
                    format!("model.visual.{rest}")
                } else if let Some(rest) = name.strip_prefix("model.") {
                    format!("model.language_model.{rest}")
                } else {
                    name.to_string()
                }
            }
        }
    }

    /// pgpo's name of a tensor stored under `file_name` in a file of either naming.
    pub fn to_pgpo(file_name: &str) -> String {
        if let Some(rest) = file_name.strip_prefix("model.language_model.") {
            format!("model.{rest}")
        } else if let Some(rest) = file_name.strip_prefix("model.visual.") {
            format!("visual.{rest}")
        } else {
            file_name.to_string()
        }
    }

    /// The naming a set of stored tensor names uses.
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Naming {
        let nested = names.into_iter().any(|n| n.starts_with("model.language_model.") || n.starts_with("model.visual."));
        if nested { Naming::Nested } else { Naming::Published }
    }
}

/// Every parameter of the model, in a fixed order (vision tower, decoder, head), with its
/// shape as stored: linear weights are [out, in], the patch embedding is the Conv3d kernel
/// [hidden, channels, temporal, patch, patch].
pub fn parameters(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (v, t) = (&c.vision, &c.text);
    let mut p: Vec<(String, Vec<usize>)> = Vec::new();
    let mut add = |name: String, shape: &[usize]| p.push((name, shape.to_vec()));
    let e = v.hidden_size;
    add("visual.patch_embed.proj.weight".into(), &[e, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size]);
    for i in 0..v.depth {
        let b = format!("visual.blocks.{i}");
        add(format!("{b}.norm1.weight"), &[e]);
        add(format!("{b}.norm2.weight"), &[e]);
        add(format!("{b}.attn.qkv.weight"), &[3 * e, e]);
        add(format!("{b}.attn.qkv.bias"), &[3 * e]);
        add(format!("{b}.attn.proj.weight"), &[e, e]);
        add(format!("{b}.attn.proj.bias"), &[e]);
        for (proj, out, inp) in [("gate_proj", v.intermediate_size, e), ("up_proj", v.intermediate_size, e), ("down_proj", e, v.intermediate_size)] {
            add(format!("{b}.mlp.{proj}.weight"), &[out, inp]);
            add(format!("{b}.mlp.{proj}.bias"), &[out]);
        }
    }
    let m = e * v.spatial_merge_size * v.spatial_merge_size;
    add("visual.merger.ln_q.weight".into(), &[e]);
    add("visual.merger.mlp.0.weight".into(), &[m, m]);
    add("visual.merger.mlp.0.bias".into(), &[m]);
    add("visual.merger.mlp.2.weight".into(), &[v.out_hidden_size, m]);
    add("visual.merger.mlp.2.bias".into(), &[v.out_hidden_size]);

    let (h, d) = (t.hidden_size, t.head_dim());
    let (q, kv) = (t.num_attention_heads * d, t.num_key_value_heads * d);
    add("model.embed_tokens.weight".into(), &[t.vocab_size, h]);
    for i in 0..t.num_hidden_layers {
        let l = format!("model.layers.{i}");
        add(format!("{l}.input_layernorm.weight"), &[h]);
        add(format!("{l}.post_attention_layernorm.weight"), &[h]);
        for (proj, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            add(format!("{l}.self_attn.{proj}.weight"), &[out, h]);
            add(format!("{l}.self_attn.{proj}.bias"), &[out]);
        }
        add(format!("{l}.self_attn.o_proj.weight"), &[h, q]);
        add(format!("{l}.mlp.gate_proj.weight"), &[t.intermediate_size, h]);
        add(format!("{l}.mlp.up_proj.weight"), &[t.intermediate_size, h]);
        add(format!("{l}.mlp.down_proj.weight"), &[h, t.intermediate_size]);
    }
    add("model.norm.weight".into(), &[h]);
    if !c.tie_word_embeddings {
        add("lm_head.weight".into(), &[t.vocab_size, h]);
    }
    p
}
