//! `pgpo tvd`: the cross-check form of the token visual dependency. It runs the trainer's own
//! scoring (`train::visual_dependency`, shared prompt prefix included) on a batch of prompt +
//! response rows and writes, at each response token, k3 and the exact KL(p_clean || p_blind)
//! of the distributions that predict it.

use pgpo::autograd::Tape;
use pgpo::io::{expect_shape, TensorFile};
use pgpo::model::input_file::read_inputs;
use pgpo::model::processor::Prompt;
use pgpo::model::{ParamVars, Weights};
use pgpo::train::visual_dependency::{visual_dependency, Scoring};
use pgpo::{Device, Error, Result};
use std::path::Path;

pub struct TvdArgs<'a> {
    pub model: &'a Path,
    pub input: &'a Path,
    pub output: &'a Path,
    pub device: Device,
    pub temperature: f32,
    pub hide_markers: bool,
    pub d_clamp: f32,
}

fn bad(path: &Path, name: &str, msg: String) -> Error {
    Error::input(name, format!("{msg} ({})", path.display()))
}

/// Scores every row; returns the number of response tokens scored.
pub fn tvd_cmd(a: &TvdArgs) -> Result<usize> {
    if !(a.temperature.is_finite() && a.temperature > 0.0) {
        return Err(Error::input("--temperature", format!("must be above 0, got {}", a.temperature)));
    }
    let w = Weights::load(a.model, &a.device)?;
    let (x, _) = read_inputs(a.input, &w.config, &a.device, false)?;
    let f = TensorFile::open(a.input)?;
    let (shape, response) = f.i64("response_mask", 2)?;
    let (b, t) = (x.batch, x.seq);
    expect_shape(a.input, "response_mask", &shape, &[b, t])?;
    let pixels = match &x.pixels {
        Some(p) => p.to_vec()?,
        None => Vec::new(),
    };
    let width = x.pixels.as_ref().map_or(0, |p| p.shape()[1]);
    let per_image: Vec<usize> = x.grids.iter().map(|g| g.iter().product()).collect();
    let (mut prompts, mut tails, mut columns) = (Vec::with_capacity(b), Vec::with_capacity(b), Vec::with_capacity(b));
    let (mut image, mut patch) = (0usize, 0usize);
    for r in 0..b {
        let row = |v: usize| r * t + v;
        let valid: Vec<usize> = (0..t).filter(|&c| x.mask[row(c)]).collect();
        if valid.windows(2).any(|p| p[1] != p[0] + 1) || valid.last().is_some_and(|&c| c != t - 1) {
            return Err(bad(a.input, "attention_mask", format!("row {r} is not left-padded (its tokens must be one run ending at column {})", t - 1)));
        }
        if let Some(c) = (0..t).find(|&c| response[row(c)] != 0 && response[row(c)] != 1) {
            return Err(bad(a.input, "response_mask", format!("holds {} at [{r}, {c}]; it must be 0 or 1", response[row(c)])));
        }
        let cols: Vec<usize> = (0..t).filter(|&c| response[row(c)] == 1).collect();
        if let Some(&c) = cols.iter().find(|&&c| !x.mask[row(c)]) {
            return Err(bad(a.input, "response_mask", format!("marks [{r}, {c}], a padding position")));
        }
        if cols.windows(2).any(|p| p[1] != p[0] + 1) || cols.last().is_some_and(|&c| c != t - 1) {
            return Err(bad(a.input, "response_mask", format!("row {r}'s response is not one run of tokens ending the row")));
        }
        let first = cols.first().copied().unwrap_or(t);
        if cols.first().is_some_and(|&c| c == valid[0]) {
            return Err(bad(a.input, "response_mask", format!("row {r} has no prompt: its first token is a response token, which nothing predicts")));
        }
        let ids: Vec<u32> = valid.iter().filter(|&&c| c < first).map(|&c| x.ids[row(c)]).collect();
        let tail: Vec<u32> = cols.iter().map(|&c| x.ids[row(c)]).collect();
        if let Some(c) = cols.iter().find(|&&c| w.config.vision_token_ids().contains(&x.ids[row(c)])) {
            return Err(bad(a.input, "response_mask", format!("marks [{r}, {c}], a vision token; a response is text")));
        }
        // This row's images: one per run of image pads in its prompt, in order.
        let runs = pgpo::model::inputs::count_images(&ids, w.config.image_token_id);
        let grids = x.grids.get(image..image + runs).ok_or_else(|| bad(a.input, "image_grid_thw", format!("lists {} images; the rows up to {r} hold more", x.grids.len())))?.to_vec();
        let n: usize = per_image[image..image + runs].iter().sum();
        let pix = pixels.get(patch * width..(patch + n) * width).ok_or_else(|| bad(a.input, "pixel_values", format!("has fewer patches than the images up to row {r} need")))?.to_vec();
        (image, patch) = (image + runs, patch + n);
        prompts.push(Prompt { ids, pixels: pix, grids });
        tails.push(tail);
        columns.push(cols);
    }
    let tape = Tape::new();
    let scoring = Scoring { config: &w.config, device: &a.device, pad_id: 0, hide_markers: a.hide_markers, d_clamp: a.d_clamp };
    let prompt_refs: Vec<&Prompt> = prompts.iter().collect();
    let tail_refs: Vec<&[u32]> = tails.iter().map(|s| s.as_slice()).collect();
    let s = visual_dependency(&ParamVars::frozen(&tape, &w), &scoring, &prompt_refs, &tail_refs, a.temperature)?;
    let values = [("k3", s.kl.k3.to_vec()?), ("kl", s.kl.kl.to_vec()?), ("logp_clean", s.kl.logp_clean.to_vec()?), ("logp_blind", s.kl.logp_blind.to_vec()?)];
    let mut grids: Vec<Vec<f32>> = vec![vec![0f32; b * t]; values.len()];
    let mut k = 0;
    for (r, cols) in columns.iter().enumerate() {
        for &c in cols {
            for (g, (_, v)) in grids.iter_mut().zip(&values) {
                g[r * t + c] = v[k];
            }
            k += 1;
        }
    }
    let arrays: Vec<(&str, Vec<usize>, &[f32])> = values.iter().zip(&grids).map(|((name, _), g)| (*name, vec![b, t], g.as_slice())).collect();
    pgpo::io::write_f32(a.output, &arrays)?;
    Ok(k)
}
