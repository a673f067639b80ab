//! The pgpo command line: `info`, `check`, `bench`, `forward`, `generate`, `merge`,
//! `preprocess`, `advantages`, `policy-loss`, `train`, `eval`, `compare`, `tvd`.

#[path = "pgpo/bench_cmd.rs"]
mod bench_cmd;
#[path = "pgpo/check_cmd.rs"]
mod check_cmd;
#[path = "pgpo/forward_cmd.rs"]
mod forward_cmd;
#[path = "pgpo/generate_cmd.rs"]
mod generate_cmd;
#[path = "pgpo/info_cmd.rs"]
mod info_cmd;
#[path = "pgpo/merge_cmd.rs"]
mod merge_cmd;
#[path = "pgpo/train_cmd.rs"]
mod train_cmd;
#[path = "pgpo/rl_cmds.rs"]
mod rl_cmds;
#[path = "pgpo/tvd_cmd.rs"]
mod tvd_cmd;

use clap::{Parser, Subcommand};
use pgpo::Device;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pgpo", version, about = "Hand-written GPU kernels and perception-grounded RL training")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Backends, adapters, limits and features of this machine.
    Info,
    /// Every kernel on every backend present, against the CPU (and the CPU against f64 loops).
    Check {
        /// Backends to check: all, cpu, wgpu, cuda or cuda-emu.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Only kernels whose name contains this text.
        #[arg(long)]
        kernel: Option<String>,
        /// Only the first N cases of each kernel (its smallest shapes), e.g. for a run under a
        /// sanitizer.
        #[arg(long)]
        max_cases: Option<usize>,
        /// Run the CPU reference on the calling thread alone (no thread pool): under
        /// ThreadSanitizer, whose view of the uninstrumented Rust pool is blind.
        #[arg(long)]
        single_threaded_cpu: bool,
        /// Compile every CUDA kernel with NVRTC (no driver needed) instead of running kernels.
        #[arg(long)]
        compile_only: bool,
        /// With --compile-only: write each PTX file here, as <family>.<arch>.ptx.
        #[arg(long)]
        ptx_dir: Option<std::path::PathBuf>,
    },
    /// GRPO advantages, token visual dependency (k3), PGPO weights and token advantages.
    /// IN holds rewards F32[B], group I64[B], logp_clean, logp_blind and mask F32[B, L];
    /// OUT gets adv [B], tvd, weights and token_adv [B, L].
    Advantages {
        #[arg(long = "in")]
        input: std::path::PathBuf,
        #[arg(long = "out")]
        output: std::path::PathBuf,
        #[arg(long, default_value_t = 0.4)]
        tau: f32,
        #[arg(long, default_value_t = 2.0)]
        beta: f32,
        /// paper, quantile, floor or no-norm.
        #[arg(long, default_value = "paper")]
        variant: String,
        /// Clamp of d = logp_blind - logp_clean in k3.
        #[arg(long, default_value_t = 20.0)]
        d_clamp: f32,
    },
    /// The clipped policy loss and its gradient with respect to the logits.
    /// IN holds logits F32[N, V], tokens I64[N], old_logp and adv F32[N], optionally mask
    /// F32[N] and seq I64[N]; OUT gets loss F32[1] and dlogits F32[N, V].
    PolicyLoss {
        #[arg(long = "in")]
        input: std::path::PathBuf,
        #[arg(long = "out")]
        output: std::path::PathBuf,
        #[arg(long, default_value_t = 0.2)]
        clip_low: f32,
        #[arg(long, default_value_t = 0.28)]
        clip_high: f32,
        /// Dual-clip constant for negative advantages; 0 turns it off.
        #[arg(long, default_value_t = 3.0)]
        dual_clip: f32,
        /// token-mean, seq-mean-token-mean or seq-mean-token-sum.
        #[arg(long, default_value = "token-mean")]
        agg: String,
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// cpu, wgpu, cuda or auto.
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// One forward of a Qwen2.5-VL checkpoint, for cross-checking with transformers. IN holds
    /// input_ids I64[B, T], optionally attention_mask I64[B, T] (0 at left padding),
    /// pixel_values F32[N, patch_dim] with image_grid_thw I64[n, 3], and labels I64[B, T]
    /// (-100 ignored). OUT gets logits F32[B, T, V]; with --labels also loss F32[1] and
    /// grad.<name> for every parameter, named as in the checkpoint's files.
    Forward {
        /// Checkpoint folder: config.json and model.safetensors or sharded files with the index.
        #[arg(long)]
        model: std::path::PathBuf,
        /// A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) on the
        /// model; --labels then writes grad.<key> for every key of its adapter_model.safetensors
        /// and nothing for the frozen base.
        #[arg(long)]
        adapter: Option<std::path::PathBuf>,
        #[arg(long = "inputs")]
        input: std::path::PathBuf,
        #[arg(long = "out")]
        output: std::path::PathBuf,
        /// auto, cpu, wgpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// The blind pass: image-pad tokens hidden from attention, no vision tower.
        #[arg(long)]
        blind: bool,
        /// With --blind, also hide <|vision_start|> and <|vision_end|>.
        #[arg(long, requires = "blind")]
        hide_markers: bool,
        /// Also compute the loss for IN's labels and every parameter's gradient.
        #[arg(long)]
        labels: bool,
    },
    /// The token visual dependency of responses, by the trainer's own scoring (a prompt's
    /// responses share its prefix). IN holds what `forward` takes (input_ids, attention_mask
    /// with left padding, pixel_values, image_grid_thw) and response_mask I64[B, T], 1 on the
    /// response tokens that end each row (the prompt is everything before). OUT gets k3, kl,
    /// logp_clean and logp_blind F32[B, T]: at each response token, k3 and the exact
    /// KL(p_clean || p_blind) of the distributions that predict it (and the token's two
    /// log-probs); 0 elsewhere.
    Tvd {
        #[arg(long)]
        model: std::path::PathBuf,
        #[arg(long = "inputs")]
        input: std::path::PathBuf,
        #[arg(long = "out")]
        output: std::path::PathBuf,
        /// auto, cpu, wgpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Both distributions are of logits / T.
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// Also hide <|vision_start|> and <|vision_end|> in the blind pass.
        #[arg(long)]
        hide_markers: bool,
        /// Clamp of d = logp_blind - logp_clean in k3.
        #[arg(long, default_value_t = 20.0)]
        d_clamp: f32,
    },
    /// Generate with a Qwen2.5-VL checkpoint. With --image/--prompt: answer a question about
    /// an image (the checkpoint's tokenizer, template and image processor), streamed to
    /// stdout. With --inputs/--out: the cross-check form over a batch as for `forward`,
    /// writing sequences I64[B, T + N], padded with the pad id after a stop token.
    Generate {
        #[arg(long)]
        model: std::path::PathBuf,
        /// A PEFT LoRA adapter folder on the model.
        #[arg(long)]
        adapter: Option<std::path::PathBuf>,
        /// PNG or JPEG.
        #[arg(long, conflicts_with = "input")]
        image: Option<std::path::PathBuf>,
        #[arg(long, conflicts_with = "input", required_unless_present = "input")]
        prompt: Option<String>,
        #[arg(long = "inputs", requires = "output")]
        input: Option<std::path::PathBuf>,
        #[arg(long = "out", requires = "input")]
        output: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 128)]
        max_new_tokens: usize,
        /// The most likely token at each step (also when --temperature is 0, the default).
        #[arg(long)]
        greedy: bool,
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// 0 keeps every token.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A token id that also ends a sequence (repeat for several). With --inputs it
        /// replaces the checkpoint's EOS ids.
        #[arg(long = "stop-id")]
        stop_ids: Vec<u32>,
        /// The id written after a sequence ends (default: the checkpoint's pad token).
        #[arg(long)]
        pad_id: Option<u32>,
        /// auto, cpu, wgpu or cuda.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
    /// The trainer's memory estimate for a configuration and a model config, term by term,
    /// without loading weights; over --memory-gb, the first knob that brings it under. Exits
    /// non-zero when it does not fit.
    Plan {
        /// TOML trainer config (default: the default run).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// key=value over the config, e.g. --set lora.r=64 --set rl.group=5.
        #[arg(long = "set")]
        overrides: Vec<String>,
        /// A model's config.json, or qwen2.5-vl-3b (the published one, built in).
        #[arg(long, default_value = "qwen2.5-vl-3b")]
        model_config: String,
        #[arg(long, default_value_t = 24.0)]
        memory_gb: f64,
        /// The image per prompt, HEIGHTxWIDTH in pixels.
        #[arg(long, default_value = "448x448")]
        image: String,
        /// Text tokens of a prompt besides the image's.
        #[arg(long, default_value_t = 64)]
        prompt_tokens: usize,
    },
    /// Fold a PEFT LoRA adapter into its base: OUT (a new folder) gets a Hugging Face
    /// checkpoint in the base's dtype and shard layout, with its tokenizer and processor files.
    Merge {
        /// The base checkpoint folder.
        #[arg(long)]
        model: std::path::PathBuf,
        /// The adapter folder (adapter_config.json, adapter_model.safetensors).
        #[arg(long)]
        adapter: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// transformers' processor output for one image and prompt (the cross-check form): OUT
    /// gets input_ids I64[1, T] (one user turn with the image, templated, with the generation
    /// prompt), pixel_values F32[N, patch_dim] and image_grid_thw I64[1, 3].
    Preprocess {
        /// Folder with tokenizer.json, the chat template and preprocessor_config.json.
        #[arg(long)]
        model: std::path::PathBuf,
        #[arg(long)]
        image: std::path::PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long = "out")]
        output: std::path::PathBuf,
    },
    /// SFT warm-up then GRPO/DAPO/PGPO on the synthetic task (or JSONL data, or a published
    /// checkpoint), from a TOML config (every field optional; see TrainConfig) with
    /// `--set key=value` overrides, e.g. `--set rl.algo=grpo --set rl.steps=10` (a value that is not TOML is a string).
    Train {
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Shorthand for --set backend=... (auto, cpu, wgpu or cuda).
        #[arg(long)]
        backend: Option<String>,
        /// Continue the run from its newest complete checkpoint.
        #[arg(long)]
        resume: bool,
        #[arg(long = "set")]
        overrides: Vec<String>,
    },
    /// Each algorithm on the same budget and seeds (one shared SFT per seed), then a table
    /// (markdown) and a chart (SVG) of held-out accuracy, TVD and gradient variance.
    Compare {
        /// Algorithms, each with its preset: grpo, dapo, pgpo, dr_grpo, gspo. Each is paired
        /// against dapo (when it runs) seed by seed.
        #[arg(long, default_value = "grpo,dapo,pgpo")]
        algos: String,
        /// Seeds (each with its own SFT start); the paired intervals need at least 2.
        #[arg(long, default_value_t = 5)]
        seeds: usize,
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        #[arg(long = "set")]
        overrides: Vec<String>,
    },
    /// Held-out accuracy of a checkpoint: greedy, and avg@k at temperature 1.0 (the paper's
    /// measure). The held-out split and answer length come from the config, as for train.
    Eval {
        #[arg(long)]
        checkpoint: std::path::PathBuf,
        #[arg(long, default_value_t = 8)]
        k: usize,
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        #[arg(long = "set")]
        overrides: Vec<String>,
    },
    /// Time every kernel on every backend present: median ms, GFLOP/s or GB/s, % of peak.
    Bench {
        /// Backends to time: all, cpu, wgpu or cuda.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Smaller shapes and fewer repetitions (about two minutes on a 2-core CPU machine).
        #[arg(long)]
        quick: bool,
        /// Only rows whose kernel name contains this text (e.g. "model").
        #[arg(long)]
        filter: Option<String>,
    },
}

fn main() -> ExitCode {
    // SAFETY: the first statement of main; no thread exists yet.
    unsafe { pgpo::device::quiet_driver_env() };
    let cli = Cli::parse();
    if matches!(cli.command, Command::Check { single_threaded_cpu: true, .. }) {
        // The pool's one worker is this thread, so no CPU work crosses threads.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build_global();
    } else {
        pgpo::backend::cpu::run_ops_on_this_thread();
    }
    let result = match cli.command {
        Command::Info => info_cmd::info(),
        Command::Check { backend, kernel, compile_only: true, ptx_dir, .. } => {
            let _ = (backend, kernel);
            check_cmd::compile_only(ptx_dir.as_deref())
        }
        Command::Check { backend, kernel, max_cases, .. } => {
            check_cmd::run_checks(&backend, kernel.as_deref(), max_cases.unwrap_or(usize::MAX))
        }
        Command::Forward { model, adapter, input, output, backend, blind, hide_markers, labels } => Device::parse(&backend)
            .and_then(|device| {
                forward_cmd::forward_cmd(&forward_cmd::ForwardArgs {
                    model: &model,
                    adapter: adapter.as_deref(),
                    input: &input,
                    output: &output,
                    device,
                    blind,
                    hide_markers,
                    labels,
                })
            })
            .map(|loss| {
                match loss {
                    Some(l) => println!("loss {l:.6}  wrote {}", output.display()),
                    None => println!("wrote {}", output.display()),
                }
                true
            }),
        Command::Generate {
            model,
            adapter,
            image,
            prompt,
            input,
            output,
            max_new_tokens,
            greedy,
            temperature,
            top_p,
            top_k,
            seed,
            stop_ids,
            pad_id,
            backend,
        } => {
            let s = generate_cmd::SamplingArgs { max_new_tokens, greedy, temperature, top_p, top_k, seed, stop_ids, pad_id };
            Device::parse(&backend).and_then(|device| match (input, output, prompt) {
                (Some(input), Some(output), _) => generate_cmd::batch(&model, adapter.as_deref(), &input, &output, &s, device),
                (_, _, Some(prompt)) => generate_cmd::answer(&model, adapter.as_deref(), image.as_deref(), &prompt, &s, device),
                _ => Err(pgpo::Error::input("prompt", "give --image and --prompt, or --inputs and --out")),
            })
        }
        Command::Tvd { model, input, output, backend, temperature, hide_markers, d_clamp } => Device::parse(&backend)
            .and_then(|device| tvd_cmd::tvd_cmd(&tvd_cmd::TvdArgs { model: &model, input: &input, output: &output, device, temperature, hide_markers, d_clamp }))
            .map(|n| {
                println!("scored {n} response tokens; wrote {}", output.display());
                true
            }),
        Command::Eval { checkpoint, k, config, overrides } => train_cmd::eval(&checkpoint, k, config.as_deref(), &overrides),
        Command::Compare { algos, seeds, config, overrides } => train_cmd::compare(&algos, seeds, config.as_deref(), &overrides),
        Command::Train { config, backend, resume, mut overrides } => {
            if let Some(b) = backend {
                overrides.push(format!("backend=\"{b}\""));
            }
            if resume {
                overrides.push("resume=true".into());
            }
            train_cmd::train(config.as_deref(), &overrides)
        }
        Command::Plan { config, overrides, model_config, memory_gb, image, prompt_tokens } => match image.split_once('x').and_then(|(h, w)| Some([h.parse().ok()?, w.parse().ok()?])) {
            Some(hw) => train_cmd::plan(config.as_deref(), &overrides, &model_config, memory_gb, hw, prompt_tokens),
            None => Err(pgpo::Error::input("image", format!("{image:?} is not HEIGHTxWIDTH"))),
        },
        Command::Merge { model, adapter, out } => merge_cmd::merge(&model, &adapter, &out),
        Command::Preprocess { model, image, prompt, output } => generate_cmd::preprocess(&model, &image, &prompt, &output),
        Command::Bench { backend, json, quick, filter } => bench_cmd::bench(&backend, json, quick, filter.as_deref()),
        Command::Advantages { input, output, tau, beta, variant, d_clamp } => rl_cmds::advantages(&rl_cmds::AdvantageArgs {
            input: &input,
            output: &output,
            tau,
            beta,
            variant: &variant,
            d_clamp,
        })
        .map(|()| {
            println!("wrote {}", output.display());
            true
        }),
        Command::PolicyLoss { input, output, clip_low, clip_high, dual_clip, agg, temperature, backend } => Device::parse(&backend)
            .and_then(|device| {
                let config = pgpo::ops::LossConfig { clip_low, clip_high, dual_clip, kl_coef: 0.0, temperature };
                rl_cmds::policy_loss(&rl_cmds::PolicyLossArgs { input: &input, output: &output, config, agg: &agg, device })
            })
            .map(|(loss, out)| {
                println!(
                    "loss {loss:.6}  clip_frac {:.4}  approx_kl {:.6}  entropy {:.4}  wrote {}",
                    out.clip_frac,
                    out.approx_kl,
                    out.entropy,
                    output.display()
                );
                true
            }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
