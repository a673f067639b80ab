use pgpo::autograd::Tape;
use pgpo::model::*;
use pgpo::model::processor::Processor;
fn main() {
    let dev = pgpo::Device::Cpu;
    let dir = std::path::Path::new(&std::env::args().nth(1).unwrap()).to_path_buf();
    let w = Weights::load(&dir, &dev).unwrap();
    let p = Processor::load(&dir, Some(&w.config)).unwrap();
    let ex: Vec<_> = (0..4).map(|i| pgpo::train::synthetic::example_at(99, i)).collect();
    for e in &ex {
        let prompt = p.prompt(std::slice::from_ref(&e.image), "How many red shapes are there?").unwrap();
        let inputs = p.inputs(&prompt, &w.config, &dev).unwrap();
        let tape = Tape::new();
        let pv = ParamVars::frozen(&tape, &w);
        let feats = pgpo::model::vision::encode(&pv, &w.config.vision, &pgpo::model::vision::VisionPlan::new(&w.config.vision, &inputs.grids), inputs.pixels.as_ref().unwrap()).unwrap();
        let f = feats.value().to_vec().unwrap();
        let clean = forward(&pv, &w.config, &inputs, &ForwardOptions { keep: Keep::Last, blind: None }).unwrap().value().to_vec().unwrap();
        let blind = forward(&pv, &w.config, &inputs, &ForwardOptions { keep: Keep::Last, blind: Some(Blind { hide_markers: false }) }).unwrap().value().to_vec().unwrap();
        let d = clean.iter().zip(&blind).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let fs: f32 = f.iter().map(|x| x * x).sum::<f32>() / f.len() as f32;
        println!("{}: feats rms {:.3} first {:?}, clean-vs-blind max |d| at last {:.4}; pixel mean {:.3}", e.question, fs.sqrt(), &f[..4], d, prompt.pixels.iter().sum::<f32>() / prompt.pixels.len() as f32);
    }
}
