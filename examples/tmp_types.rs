use pgpo::model::processor::Processor;
use pgpo::model::*;
fn main() {
    let dev = pgpo::Device::Cpu;
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let w = Weights::load(&dir, &dev).unwrap();
    let p = Processor::load(&dir, Some(&w.config)).unwrap();
    let mut stats = std::collections::BTreeMap::<String, (f64, f64)>::new();
    let tape = pgpo::autograd::Tape::new();
    let pv = ParamVars::frozen(&tape, &w);
    for i in 0..200 {
        let e = pgpo::train::synthetic::example_at(12, i);
        let prompt = p.prompt(std::slice::from_ref(&e.image), &e.question).unwrap();
        let inputs = p.inputs(&prompt, &w.config, &dev).unwrap();
        let g = generate(&pv, &w.config, &inputs, &GenerateOptions { max_new_tokens: 24, stop_ids: p.stop_ids.clone(), ..Default::default() }, |_, _| {}).unwrap();
        let text = p.chat.decode(&g.completions[0].tokens).unwrap();
        let ok = text.contains(&format!("\\boxed{{{}}}", e.answer));
        let kind = e.question.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let s = stats.entry(kind).or_default();
        s.0 += ok as u8 as f64;
        s.1 += 1.0;
        if i < 3 { println!("{} -> {text} (truth {})", e.question, e.answer); }
    }
    for (k, (c, n)) in stats { println!("{k}: {:.2} of {n}", c / n); }
}
