//! Parameters no phase trains (the vision tower with `sft.train_vision` and `rl.train_vision`
//! both off) are frozen: AdamW never steps them, so they have no moments (none in the
//! checkpoint's optimizer file) and weight decay cannot shrink them, while every trained
//! parameter moves.
//!
//! Mistake this catches: stepping frozen parameters with zero gradients, as the trainer did
//! before (checked by putting that back once: the vision weights shrank under
//! rl.weight_decay = 0.5 and the test failed on `visual.patch_embed.proj.weight`).

mod common;

use pgpo::model::Weights;
use pgpo::train::run::run;
use pgpo::Device;

#[test]
fn frozen_parameters_keep_their_values_and_get_no_optimizer_state() {
    let mut c = common::toy_train_config("frozen", "cpu");
    c.rl.weight_decay = 0.5;
    assert!(!c.sft.train_vision && !c.rl.train_vision);
    run(c.clone(), &mut |_| {}).unwrap();
    let dir = c.run_dir();
    let init = Weights::load(&dir.join("init"), &Device::Cpu).unwrap();
    let last = dir.join("checkpoints/rl-final");
    let trained = Weights::load(&last, &Device::Cpu).unwrap();
    let opt = std::fs::read(last.join("optimizer.safetensors")).unwrap();
    let opt = safetensors::SafeTensors::deserialize(&opt).unwrap();
    let keys: Vec<String> = opt.names().into_iter().map(|k| k.to_string()).collect();
    let mut moved = 0;
    for (name, (a, b)) in init.names().iter().zip(init.tensors().iter().zip(trained.tensors())) {
        let same = a.to_vec().unwrap() == b.to_vec().unwrap();
        if name.starts_with("visual.") {
            assert!(same, "{name} is frozen but changed");
            assert!(!keys.contains(&format!("m.{name}")), "{name} is frozen but has AdamW moments");
        } else {
            moved += usize::from(!same);
            assert!(keys.contains(&format!("m.{name}")) && keys.contains(&format!("v.{name}")), "{name} trains but has no moments");
        }
    }
    // The signal: training did move the trained weights.
    assert!(moved > 0, "no trained parameter moved");
    let _ = std::fs::remove_dir_all(&dir);
}
