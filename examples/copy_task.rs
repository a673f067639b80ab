//! Trains the two-layer toy transformer on the copy task and prints the loss per step.
//! `cargo run --release --example copy_task -- [cpu|wgpu|cuda|auto] [steps]`

fn main() -> pgpo::Result<()> {
    // SAFETY: the first statement of main; no thread exists yet.
    unsafe { pgpo::device::quiet_driver_env() };
    let args: Vec<String> = std::env::args().collect();
    let device = pgpo::Device::parse(args.get(1).map_or("auto", String::as_str))?;
    let steps = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let config = pgpo::toy::ToyConfig::default();
    println!("copy task on {}: {config:?}", device.name());
    for (step, loss) in pgpo::toy::train(&config, &device, steps)?.iter().enumerate() {
        println!("step {step:3}  loss {loss:.6}");
    }
    Ok(())
}
