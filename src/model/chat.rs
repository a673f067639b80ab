//! The checkpoint's tokenizer (tokenizer.json through the `tokenizers` crate) and chat template
//! (Jinja through `minijinja`, with Python's string methods), as transformers'
//! Qwen2_5_VLProcessor uses them: render the conversation, expand each `<|image_pad|>` to one
//! token per merged patch of its image, tokenize. The template is looked up as transformers
//! does (chat_template.jinja, chat_template.json, then tokenizer_config.json); a checkpoint
//! without one gets the Qwen2-VL template.

use crate::json_fields;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Qwen2-VL's template, for checkpoints that carry none.
pub const QWEN2_VL_TEMPLATE: &str = include_str!("qwen2_vl_chat_template.jinja");
pub const IMAGE_PAD: &str = "<|image_pad|>";

pub struct Chat {
    tokenizer: tokenizers::Tokenizer,
    template: String,
    /// Where the template came from, for messages.
    pub template_source: String,
    /// tokenizer_config.json's special-token strings, handed to the template.
    specials: serde_json::Map<String, Value>,
}

fn config_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Config { file: path.display().to_string(), field: String::new(), msg: msg.into() }
}

/// The template inside tokenizer_config.json's or chat_template.json's `chat_template`: a string,
/// or a list of {name, template} of which "default" is taken.
fn template_field(v: &Value, path: &Path) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) => items
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::Config { file: path.display().to_string(), field: "chat_template".into(), msg: "is a list without a \"default\" template".into() }),
        _ => Err(Error::Config { file: path.display().to_string(), field: "chat_template".into(), msg: "must be a string or a list of named templates".into() }),
    }
}

/// Instructions a chat template may execute per rendering: the Qwen2-VL template uses a few
/// hundred per message.
const TEMPLATE_FUEL: u64 = 1_000_000;

impl Chat {
    pub fn load(dir: &Path) -> Result<Chat> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(config_err(&tok_path, "is missing: the checkpoint needs its tokenizer.json"));
        }
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| config_err(&tok_path, format!("is not a valid tokenizer: {e}")))?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc = json_fields::read_object(&tc_path)?.unwrap_or_default();
        let mut specials = serde_json::Map::new();
        for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
            match tc.get(key) {
                Some(Value::String(s)) => {
                    specials.insert(key.into(), json!(s));
                }
                Some(Value::Object(o)) => {
                    if let Some(s) = o.get("content").and_then(Value::as_str) {
                        specials.insert(key.into(), json!(s));
                    }
                }
                _ => {}
            }
        }
        let jinja = dir.join("chat_template.jinja");
        let ct_path = dir.join("chat_template.json");
        let (template, template_source) = if jinja.exists() {
            (std::fs::read_to_string(&jinja).map_err(|e| config_err(&jinja, format!("cannot be read: {e}")))?, jinja.display().to_string())
        } else if let Some(ct) = json_fields::read_object(&ct_path)? {
            let v = ct.get("chat_template").ok_or_else(|| Error::Config { file: ct_path.display().to_string(), field: "chat_template".into(), msg: "is missing".into() })?;
            (template_field(v, &ct_path)?, ct_path.display().to_string())
        } else if let Some(v) = tc.get("chat_template") {
            (template_field(v, &tc_path)?, tc_path.display().to_string())
        } else {
            (QWEN2_VL_TEMPLATE.to_string(), "the Qwen2-VL template (the checkpoint has none)".into())
        };
        let chat = Chat { tokenizer, template, template_source, specials };
        chat.id(IMAGE_PAD)?;
        Ok(chat)
    }

    /// The id of a special token, or an error naming it.
    pub fn id(&self, token: &str) -> Result<u32> {
        self.tokenizer.token_to_id(token).ok_or_else(|| Error::input("tokenizer", format!("has no token {token}, which Qwen2.5-VL prompts need")))
    }

    /// The named special token of tokenizer_config.json (eos_token, pad_token, ...), as an id.
    pub fn special(&self, key: &str) -> Option<u32> {
        self.specials.get(key).and_then(Value::as_str).and_then(|s| self.tokenizer.token_to_id(s))
    }

    /// Every id the tokenizer can produce is below this.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Renders `messages` (the transformers chat format) with the template.
    pub fn render(&self, messages: &Value, add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        // A template is code from the checkpoint: bound its work, so a hostile or broken one
        // (an endless loop, runaway recursion) is an error instead of a hang.
        env.set_fuel(Some(TEMPLATE_FUEL));
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        let bad = |e: minijinja::Error| Error::Config { file: self.template_source.clone(), field: "chat_template".into(), msg: format!("does not render: {e:#}") };
        env.add_template("chat", &self.template).map_err(bad)?;
        let mut ctx = self.specials.clone();
        ctx.insert("messages".into(), messages.clone());
        ctx.insert("add_generation_prompt".into(), json!(add_generation_prompt));
        env.get_template("chat").map_err(bad)?.render(minijinja::Value::from_serialize(&ctx)).map_err(bad)
    }

    /// Tokenizes `text`, special tokens recognised, as the processor's tokenizer call does.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::input("prompt", format!("does not tokenize: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokenizes `text` with each token's byte range in it.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<(usize, usize)>)> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::input("text", format!("does not tokenize: {e}")))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| Error::input("tokens", format!("do not decode: {e}")))
    }

    /// The ids of one user turn: each image (grids in patches) then `prompt`, rendered with the
    /// generation prompt; every `<|image_pad|>` expanded to t * h * w / merge² tokens.
    pub fn prompt_ids(&self, prompt: &str, grids: &[[usize; 3]], merge: usize) -> Result<Vec<u32>> {
        let mut content: Vec<Value> = grids.iter().map(|_| json!({"type": "image"})).collect();
        content.push(json!({"type": "text", "text": prompt}));
        let text = self.render(&json!([{"role": "user", "content": content}]), true)?;
        let parts: Vec<&str> = text.split(IMAGE_PAD).collect();
        if parts.len() != grids.len() + 1 {
            return Err(Error::Config {
                file: self.template_source.clone(),
                field: "chat_template".into(),
                msg: format!("rendered {} {IMAGE_PAD} for {} images", parts.len() - 1, grids.len()),
            });
        }
        let mut expanded = String::with_capacity(text.len());
        for (i, part) in parts.iter().enumerate() {
            expanded.push_str(part);
            if let Some(g) = grids.get(i) {
                expanded.push_str(&IMAGE_PAD.repeat(g[0] * g[1] * g[2] / (merge * merge)));
            }
        }
        self.encode(&expanded)
    }
}
