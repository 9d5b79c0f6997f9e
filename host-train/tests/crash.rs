//! Crashes and failing disks (docs/reliability.md, case 12), on the real MNIST through the
//! binary: a run killed with SIGKILL and resumed ends exactly as an uninterrupted one, with
//! no gap and no duplicate row in metrics.csv; a checkpoint write that fails keeps the previous
//! checkpoint and stops the run with a message; a stale temporary file is ignored.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_host-train"));
    c.env("HOST_TRAIN_MIRRORS", "http://127.0.0.1:9/");
    c
}

fn data_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// `train` of fc with SGD for `iterations` steps, evaluated every 40 and checkpointed every
/// 120 (so that a kill usually lands with evaluations after the last checkpoint).
fn train(out: &Path, iterations: u32) -> Command {
    let mut c = bin();
    c.args(["train", "--model", "fc", "--optimizer", "sgd", "--quiet"])
        .args([
            "--threads",
            "1",
            "--train-limit",
            "4000",
            "--test-limit",
            "500",
        ])
        .args(["--eval-every", "40", "--checkpoint-every", "120"])
        .args(["--iterations", &iterations.to_string()])
        .arg("--data-dir")
        .arg(data_root())
        .arg("--out")
        .arg(out);
    c
}

fn resume(run: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--quiet"])
        .arg("--data-dir")
        .arg(data_root())
        .arg("--resume")
        .arg(run);
    c
}

fn ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// metrics.csv without its header.
fn rows(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The columns that do not depend on wall time: iteration, epoch, lr, loss, accuracies.
fn deterministic(rows: &[String]) -> Vec<String> {
    rows.iter()
        .map(|r| r.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn sigkill_a_failing_write_and_a_stale_file_then_resume_ends_as_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let steps = 4800;
    ok(&mut train(&whole, steps));

    // The same run, killed once a few evaluations (and checkpoints) are on disk.
    let mut child = train(&killed, steps)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let n = std::fs::read_to_string(killed.join("metrics.csv"))
            .map(|s| s.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if n >= 5 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed: make it longer"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = rows(&killed);
    assert!(before.len() < rows(&whole).len(), "killed before the end");

    // A disk that fails the next checkpoint write (its temporary file cannot be created, as
    // when full or read-only): the resumed run stops with a message and keeps the checkpoint.
    let kept = std::fs::read(killed.join("checkpoint.bin")).unwrap();
    std::fs::create_dir(killed.join(".checkpoint.bin.tmp")).unwrap();
    let out = resume(&killed).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run must stop");
    assert!(
        err.contains("cannot write") && err.contains("checkpoint.bin"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(killed.join("checkpoint.bin")).unwrap(),
        kept,
        "the previous checkpoint is kept"
    );
    std::fs::remove_dir(killed.join(".checkpoint.bin.tmp")).unwrap();
    // A temporary file left by a write a kill interrupted: ignored, then replaced.
    std::fs::write(killed.join(".checkpoint.bin.tmp"), b"half a checkpoint").unwrap();

    ok(&mut resume(&killed));
    let after = rows(&killed);
    let iterations: Vec<u32> = after
        .iter()
        .map(|r| r.split(',').next().unwrap().parse().unwrap())
        .collect();
    let expected: Vec<u32> = (1..=steps / 40).map(|k| 40 * k).collect();
    assert_eq!(iterations, expected, "no gap, no duplicate row");
    assert_eq!(
        deterministic(&after),
        deterministic(&rows(&whole)),
        "the resumed run is the uninterrupted one"
    );
    assert!(!killed.join(".checkpoint.bin.tmp").exists());
}

/// Mounts a tmpfs of `size` at `dir` (root only, where the container allows it).
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts `dir` when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_run_with_a_message_and_keeps_the_checkpoint() {
    // A real full disk: a small tmpfs, filled up while the run trains on it. Where no tmpfs
    // can be mounted (not root, a locked-down container) the injected failing write of the
    // test above stands in for it.
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    if !mount_tmpfs(&mnt, "8m") {
        eprintln!("no tmpfs can be mounted here: the injected write failure covers this case");
        return;
    }
    let _guard = Unmount(mnt.clone());
    let (whole, run) = (dir.path().join("whole"), mnt.join("run"));
    let steps = 4800;
    ok(&mut train(&whole, steps));
    let mut child = train(&run, steps)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while rows_now(&run) < 5 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before the disk filled"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Fill the disk.
    let mut filler = std::fs::File::create(mnt.join("filler")).unwrap();
    let chunk = vec![0u8; 64 << 10];
    use std::io::Write as _;
    while filler.write_all(&chunk).is_ok() {}
    let _ = filler.sync_all();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run must stop on a full disk");
    assert!(
        err.contains("No space left on device") || err.contains("cannot"),
        "{err}"
    );
    // The checkpoint on the full disk is whole: with room again, the run resumes from it and
    // ends as the uninterrupted one.
    drop(filler);
    std::fs::remove_file(mnt.join("filler")).unwrap();
    ok(&mut resume(&run));
    assert_eq!(deterministic(&rows(&run)), deterministic(&rows(&whole)));
}

/// Rows of metrics.csv so far (0 before it exists).
fn rows_now(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv"))
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}
