//! Crash safety of `pgpo train`. A training process killed with SIGKILL at random moments
//! (mid-step, mid-checkpoint, mid-report) never leaves a visible checkpoint that does not
//! load; `--resume` picks the newest complete one and says which, and the run finished
//! through 40 kills writes the metrics of an uninterrupted run byte for byte. A checkpoint write
//! that fails for lack of space is an error, and the previous checkpoint survives: on a real
//! full disk (a small tmpfs, where the test may mount one) and with the kernel refusing
//! writes past a file-size limit (anywhere). A
//! checkpoint corrupted after the fact is passed over, by name, for the one before it.

use pgpo::model::Weights;
use pgpo::rng::Rng;
use pgpo::Device;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pgpo-crash-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `pgpo train --resume` of a toy run: every step checkpointed, two kept.
fn train(out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgpo"));
    c.args(["train", "--resume", "--backend", "cpu"]);
    let sets = [
        "name=\"crash\"".to_string(),
        format!("out_dir=\"{}\"", out.display()),
        "tiny.hidden=64".into(),
        "tiny.layers=1".into(),
        "sft.steps=8".into(),
        "sft.batch=4".into(),
        "data.eval_size=4".into(),
        "rl.algo=\"grpo\"".into(),
        "rl.dynamic_sampling=false".into(),
        "rl.steps=4".into(),
        "rl.prompts=2".into(),
        "rl.group=2".into(),
        "rl.max_new_tokens=6".into(),
        "rl.eval_every=0".into(),
        "checkpoint.every=1".into(),
        "checkpoint.keep=2".into(),
        // Byte-identical metrics across runs: no wall-clock fields.
        "log_timings=false".into(),
    ];
    for s in sets.iter().map(String::as_str).chain(extra.iter().copied()) {
        c.args(["--set", s]);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn run_dir(out: &Path) -> PathBuf {
    out.join("crash")
}

/// The metrics file's text, every line checked to be a JSON object.
fn metrics(out: &Path) -> String {
    let text = std::fs::read_to_string(run_dir(out).join("metrics.jsonl")).unwrap_or_default();
    for l in text.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()), "bad metrics line {l:?}");
    }
    text
}

/// Trains `out` to the end (every checkpoint kept); its metrics.
fn finished_run(out: &Path) -> String {
    let o = train(out, &["checkpoint.keep=100"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    metrics(out)
}

/// Hidden leftovers (temporary or half-deleted checkpoints) in the run's checkpoint folder.
fn hidden_leftovers(out: &Path) -> Vec<std::ffi::OsString> {
    let root = run_dir(out).join("checkpoints");
    std::fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect()
}

/// Every visible checkpoint loads (weights, optimizer, trainer state); returns the newest.
fn check_checkpoints(out: &Path, after: &str) -> Option<PathBuf> {
    let root = run_dir(out).join("checkpoints");
    let mut newest: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let dir = e.path();
        let state: serde_json::Value = std::fs::read_to_string(dir.join("trainer_state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| panic!("{after}: {} has no readable trainer_state.json", dir.display()));
        Weights::load(&dir, &Device::Cpu).unwrap_or_else(|e| panic!("{after}: {} does not load: {e}", dir.display()));
        pgpo::io::TensorFile::open(&dir.join("optimizer.safetensors")).unwrap_or_else(|e| panic!("{after}: {e}"));
        let g = state["global"].as_u64().unwrap();
        if newest.as_ref().is_none_or(|(n, _)| g > *n) {
            newest = Some((g, dir));
        }
    }
    newest.map(|(_, d)| d)
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_latest_checkpoint_and_resume_loses_nothing() {
    let reference = out_dir("reference");
    let clock = Instant::now();
    let o = train(&reference, &[]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let whole = clock.elapsed();
    let want = metrics(&reference);

    let mut rng = Rng::new(20261125);
    let (mut kills, mut episodes, mut resumes) = (0, 0, 0);
    while kills < 40 {
        episodes += 1;
        let out = out_dir(&format!("episode{episodes}"));
        let mut expect_from: Option<PathBuf> = None;
        loop {
            let mut child = train(&out, &[]).spawn().unwrap();
            let wait = whole.mul_f32(rng.range(0.05, 0.9));
            let start = Instant::now();
            let finished = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if start.elapsed() >= wait {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            if finished.is_none() {
                child.kill().unwrap(); // SIGKILL
            }
            let o = child.wait_with_output().unwrap();
            let log = text(&o);
            // The previous kill's newest checkpoint is where this process said it resumed. A
            // process killed before it got as far as saying so (while starting) says nothing;
            // one that said it, or finished, must name that checkpoint.
            match &expect_from {
                Some(dir) if finished.is_some() || log.contains("resuming from") => {
                    assert!(log.contains(&format!("resuming from {}", dir.display())), "expected to resume from {}:\n{log}", dir.display());
                    resumes += 1;
                }
                Some(_) => {}
                None => assert!(!log.contains("resuming from"), "{log}"),
            }
            if let Some(status) = finished {
                assert!(status.success(), "{log}");
                break;
            }
            kills += 1;
            expect_from = check_checkpoints(&out, &format!("kill {kills} after {wait:?}"));
        }
        assert_eq!(metrics(&out), want, "episode {episodes}: the run resumed through kills differs from the uninterrupted one");
        check_checkpoints(&out, "the finished run");
        let _ = std::fs::remove_dir_all(&out);
    }
    eprintln!("{kills} kills over {episodes} episodes, {resumes} resumes named their checkpoint; an uninterrupted run takes {whole:?}");
    assert!(resumes > 0, "no process named the checkpoint it resumed from");
    let _ = std::fs::remove_dir_all(&reference);
}

/// The newest two checkpoints of a finished run with every checkpoint kept; the later ones removed.
fn cut_after(out: &Path, tag: &str) -> Vec<PathBuf> {
    let root = run_dir(out).join("checkpoints");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).collect();
    all.sort();
    // sft-00001 .. sft-00007, sft-final, rl-00001 .. rl-00003, rl-final: sorted, "rl" first.
    let order: Vec<PathBuf> = all.iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("sft")).chain(all.iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("rl"))).cloned().collect();
    let at = order.iter().position(|p| p.ends_with(tag)).unwrap();
    for later in &order[at + 1..] {
        std::fs::remove_dir_all(later).unwrap();
    }
    order[..=at].to_vec()
}

#[test]
fn a_full_disk_during_a_checkpoint_write_is_an_error_and_the_previous_checkpoint_survives() {
    let out = out_dir("disk");
    let want = finished_run(&out);
    cut_after(&out, "sft-00003");
    let size = std::fs::metadata(run_dir(&out).join("init/model.safetensors")).unwrap().len();
    let mut c = train(&out, &["checkpoint.keep=100"]);
    // The kernel refuses any write past half a weights file (EFBIG, the same failed write as
    // ENOSPC), so the next checkpoint cannot be written; the signal it also sends is ignored.
    let limit = size / 2;
    unsafe {
        c.pre_exec(move || {
            let r = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    let log = text(&o);
    assert!(!o.status.success(), "a failed checkpoint write must fail the run:\n{log}");
    assert!(log.contains("sft-00004") && log.contains("model.safetensors") && log.contains("too large"), "the error names the file and the cause:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    let newest = check_checkpoints(&out, "the failed write").unwrap();
    assert!(newest.ends_with("sft-00003"), "{}", newest.display());
    let hidden = hidden_leftovers(&out);
    assert!(hidden.is_empty(), "the failed write left {hidden:?}");
    // With room again, the run resumes from the survivor and ends as the uninterrupted one.
    let o = train(&out, &["checkpoint.keep=100"]).output().unwrap();
    assert!(o.status.success() && text(&o).contains("resuming from") && text(&o).contains("sft-00003"), "{}", text(&o));
    assert_eq!(metrics(&out), want);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_corrupt_newest_checkpoint_is_passed_over_by_name_for_the_one_before() {
    let out = out_dir("corrupt");
    let want = finished_run(&out);
    let kept = cut_after(&out, "rl-00002");
    let newest = kept.last().unwrap();
    let weights = newest.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&weights).unwrap().set_len(len / 3).unwrap();
    let o = train(&out, &["checkpoint.keep=100"]).output().unwrap();
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    assert!(log.contains(&format!("passed over checkpoint {}", newest.display())) && log.contains("model.safetensors"), "{log}");
    assert!(log.contains(&format!("resuming from {}", kept[kept.len() - 2].display())), "{log}");
    assert_eq!(metrics(&out), want);
    let _ = std::fs::remove_dir_all(&out);
}

/// A tmpfs of `mb` megabytes mounted for the test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// None (with a line saying why) where mounting is not permitted (not root); a failure
    /// instead when PGPO_REQUIRE_TMPFS=1 (CI sets it, so the case cannot silently skip there).
    fn mount(tag: &str, mb: usize) -> Option<SmallDisk> {
        let dir = out_dir(tag);
        std::fs::create_dir_all(&dir).unwrap();
        let required = std::env::var("PGPO_REQUIRE_TMPFS").as_deref() == Ok("1");
        let why = match Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"]).arg(&dir).output() {
            Ok(o) if o.status.success() => return Some(SmallDisk(dir)),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("mount cannot run: {e}"),
        };
        assert!(!required, "PGPO_REQUIRE_TMPFS=1 but a tmpfs cannot be mounted here ({why})");
        println!("skipping the real full-disk case: cannot mount a tmpfs here ({why})");
        None
    }

    fn grow(&self, mb: usize) {
        let o = Command::new("mount").args(["-o", &format!("remount,size={mb}m")]).arg(&self.0).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real full disk (ENOSPC on a small tmpfs, where the kernel allows mounting one): the run
/// fails with an error naming the file, every visible checkpoint still loads, no temporary
/// folder is left, and with room again the run resumes and ends as the uninterrupted one.
#[test]
fn a_real_full_disk_stops_the_run_with_an_error_and_resume_loses_nothing() {
    let reference = out_dir("enospc-reference");
    let want = finished_run(&reference);
    let _ = std::fs::remove_dir_all(&reference);
    // Room for the fresh model and a few checkpoints, not for all fourteen.
    let Some(disk) = SmallDisk::mount("enospc", 6) else { return };
    let o = train(&disk.0, &["checkpoint.keep=100"]).output().unwrap();
    let log = text(&o);
    assert!(!o.status.success(), "the run should have filled the 6 MB disk:\n{log}");
    assert!(log.contains("No space left on device") && !log.contains("panicked"), "{log}");
    println!("the full disk: {}", log.lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" / "));
    let newest = check_checkpoints(&disk.0, "the full disk");
    assert!(newest.is_some(), "6 MB should hold some checkpoints before the disk fills:\n{log}");
    let hidden = hidden_leftovers(&disk.0);
    assert!(hidden.is_empty(), "the failed write left {hidden:?}");
    disk.grow(64);
    let o = train(&disk.0, &["checkpoint.keep=100"]).output().unwrap();
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    if let Some(dir) = newest {
        assert!(log.contains(&format!("resuming from {}", dir.display())), "{log}");
    }
    assert_eq!(metrics(&disk.0), want);
}
