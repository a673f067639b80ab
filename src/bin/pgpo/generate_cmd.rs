//! `pgpo generate` and `pgpo preprocess`: a checkpoint answering a question about an image
//! (streamed), the batched cross-check form over a safetensors batch, and the processor's
//! output for one image and prompt.

use pgpo::autograd::Tape;
use pgpo::io::{write_arrays, Data};
use pgpo::model::chat::Chat;
use pgpo::image::processor::load_image;
use pgpo::model::input_file::read_inputs;
use pgpo::model::processor::Processor;
use pgpo::model::peft::load_with_adapter;
use pgpo::model::{generate, GenerateOptions, ModelConfig, ParamVars, Sampling};
use pgpo::{Device, Result};
use std::io::Write;
use std::path::Path;

pub struct SamplingArgs {
    pub max_new_tokens: usize,
    pub greedy: bool,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub seed: u64,
    /// Extra stop tokens (the checkpoint's EOS ids always stop).
    pub stop_ids: Vec<u32>,
    pub pad_id: Option<u32>,
}

impl SamplingArgs {
    fn options(&self, mut stop_ids: Vec<u32>) -> GenerateOptions {
        stop_ids.extend_from_slice(&self.stop_ids);
        let sampling = if self.greedy || self.temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Sample { temperature: self.temperature, top_p: self.top_p, top_k: self.top_k }
        };
        GenerateOptions { max_new_tokens: self.max_new_tokens, sampling, seed: self.seed, stop_ids, ..Default::default() }
    }
}

/// Answers `prompt` about `image`, printing the text as it is generated.
pub fn answer(model: &Path, adapter: Option<&Path>, image: Option<&Path>, prompt: &str, s: &SamplingArgs, device: Device) -> Result<bool> {
    let w = load_with_adapter(model, adapter, &device)?;
    let p = Processor::load(model, Some(&w.config))?;
    let images = match image {
        Some(path) => vec![load_image(path)?],
        None => Vec::new(),
    };
    let inputs = p.inputs(&p.prompt(&images, prompt)?, &w.config, &device)?;
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, &w);
    let mut tokens = Vec::new();
    let mut shown = String::new();
    let mut stdout = std::io::stdout();
    let stops = p.stop_ids.clone();
    let mut stream_err = None;
    let g = generate(&pv, &w.config, &inputs, &s.options(stops.clone()), |_, token| {
        if stops.contains(&token) {
            return;
        }
        tokens.push(token);
        match p.chat.decode(&tokens) {
            // A token may end inside a multi-byte character: wait for the rest.
            Ok(text) if !text.ends_with('\u{FFFD}') && text.starts_with(&shown) => {
                let _ = write!(stdout, "{}", &text[shown.len()..]);
                let _ = stdout.flush();
                shown = text;
            }
            Ok(_) => {}
            Err(e) => stream_err = Some(e),
        }
    })?;
    if let Some(e) = stream_err {
        return Err(e);
    }
    let c = &g.completions[0];
    println!();
    eprintln!("[{} tokens, {}]", c.tokens.len(), if c.stopped { "stopped at a stop token" } else { "max new tokens reached" });
    Ok(true)
}

/// The cross-check form: greedy or sampled generation for the batch in `input`, writing
/// `sequences` I64 [B, T + N] (padded with the pad id after a stop token).
pub fn batch(model: &Path, adapter: Option<&Path>, input: &Path, output: &Path, s: &SamplingArgs, device: Device) -> Result<bool> {
    let w = load_with_adapter(model, adapter, &device)?;
    let (inputs, _) = read_inputs(input, &w.config, &device, false)?;
    let (stop_ids, pad_id) = if s.stop_ids.is_empty() { generation_ids(model)? } else { (Vec::new(), s.pad_id.unwrap_or(s.stop_ids[0])) };
    let pad_id = s.pad_id.unwrap_or(pad_id);
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, &w);
    let g = generate(&pv, &w.config, &inputs, &s.options(stop_ids), |_, _| {})?;
    let (width, seqs) = g.sequences(&inputs, pad_id);
    let seqs: Vec<i64> = seqs.iter().map(|&x| i64::from(x)).collect();
    write_arrays(output, &[("sequences", vec![inputs.batch, width], Data::I64(&seqs))])?;
    println!("wrote {} ({} sequences of {width} tokens)", output.display(), inputs.batch);
    Ok(true)
}

/// Stop and pad ids of the checkpoint, with its tokenizer's when it has one.
fn generation_ids(model: &Path) -> Result<(Vec<u32>, u32)> {
    let chat = if model.join("tokenizer.json").exists() { Some(Chat::load(model)?) } else { None };
    pgpo::model::processor::generation_ids(model, chat.as_ref())
}

/// `pgpo preprocess`: the processor's output for one image and prompt.
pub fn preprocess(model: &Path, image: &Path, prompt: &str, output: &Path) -> Result<bool> {
    // A processor folder without config.json is checked against nothing.
    let config = if model.join("config.json").exists() { Some(ModelConfig::load(model)?) } else { None };
    let p = Processor::load(model, config.as_ref())?;
    let prompt = p.prompt(&[load_image(image)?], prompt)?;
    let ids: Vec<i64> = prompt.ids.iter().map(|&x| i64::from(x)).collect();
    let grids: Vec<i64> = prompt.grids.iter().flatten().map(|&x| x as i64).collect();
    let width = p.patch_dim();
    write_arrays(
        output,
        &[
            ("input_ids", vec![1, ids.len()], Data::I64(&ids)),
            ("pixel_values", vec![prompt.pixels.len() / width, width], Data::F32(&prompt.pixels)),
            ("image_grid_thw", vec![prompt.grids.len(), 3], Data::I64(&grids)),
        ],
    )?;
    println!("wrote {} ({} ids, grid {:?})", output.display(), ids.len(), prompt.grids);
    Ok(true)
}
