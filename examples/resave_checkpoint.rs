//! Loads a Qwen2.5-VL checkpoint and saves it to another folder in the same layout (files,
//! shards, names, dtypes): `cargo run --release --example resave_checkpoint -- IN OUT`.
//! scripts/make_hf_fixtures.py --verify-saved OUT then proves transformers reads it back.

use pgpo::model::Weights;
use pgpo::Device;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: resave_checkpoint IN_DIR OUT_DIR");
        return ExitCode::FAILURE;
    };
    match Weights::load(input.as_ref(), &Device::Cpu).and_then(|w| w.save(output.as_ref())) {
        Ok(()) => {
            println!("saved {input} to {output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
