//! `pgpo forward`: one forward (and with labels, backward) of a Qwen2.5-VL checkpoint on
//! inputs from a safetensors file, writing logits, loss and every parameter's gradient, to
//! cross-check against transformers or another framework; with a PEFT adapter, against peft.

use pgpo::autograd::Tape;
use pgpo::model::input_file::read_inputs;
use pgpo::model::lora::is_adapter;
use pgpo::model::peft::{load_with_adapter, peft_key};
use pgpo::model::{forward, lm_loss, Blind, ForwardOptions, ParamVars};
use pgpo::{Device, Error, Result};
use std::path::Path;

pub struct ForwardArgs<'a> {
    pub model: &'a Path,
    /// A PEFT adapter on the model: the gradients are then the adapter's alone.
    pub adapter: Option<&'a Path>,
    pub input: &'a Path,
    pub output: &'a Path,
    pub device: Device,
    pub blind: bool,
    pub hide_markers: bool,
    pub labels: bool,
}

/// Runs the forward; returns the loss when labels were asked for.
pub fn forward_cmd(a: &ForwardArgs) -> Result<Option<f32>> {
    let w = load_with_adapter(a.model, a.adapter, &a.device)?;
    let (inputs, labels) = read_inputs(a.input, &w.config, &a.device, a.blind)?;
    let tape = Tape::new();
    // With an adapter the base is frozen, as in training.
    let adapted = w.lora.is_some();
    let pv = ParamVars::new(&tape, &w, |n| a.labels && (!adapted || is_adapter(n)));
    let opts = ForwardOptions { blind: a.blind.then_some(Blind { hide_markers: a.hide_markers }), ..Default::default() };
    let logits = forward(&pv, &w.config, &inputs, &opts)?;
    let (b, t, v) = (inputs.batch, inputs.seq, w.config.text.vocab_size);
    let mut arrays: Vec<(String, Vec<usize>, Vec<f32>)> = vec![("logits".into(), vec![b, t, v], logits.value().to_vec()?)];
    let mut loss_value = None;
    if a.labels {
        let labels = labels.ok_or_else(|| Error::input("labels", format!("is missing from {}; --labels needs it", a.input.display())))?;
        let loss = lm_loss(&logits, &labels, b, t)?;
        let grads = tape.backward(&loss)?;
        let l = loss.value().to_vec()?;
        loss_value = Some(l[0]);
        arrays.push(("loss".into(), vec![1], l));
        for (name, g) in pv.gradients(&grads) {
            let key = match &w.lora {
                Some(l) => peft_key(&name, l.naming),
                None => w.layout.naming.to_file(&name),
            };
            arrays.push((format!("grad.{key}"), g.shape().to_vec(), g.to_vec()?));
        }
    }
    let refs: Vec<(&str, Vec<usize>, &[f32])> = arrays.iter().map(|(n, s, d)| (n.as_str(), s.clone(), d.as_slice())).collect();
    pgpo::io::write_f32(a.output, &refs)?;
    Ok(loss_value)
}
