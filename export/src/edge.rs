//! `export deploy --board linux-aarch64`: the edge box. Builds `lenet-classify` (the workspace's
//! classifier, `classify/`) statically for the board with the device model embedded and the int8
//! engine only, runs it under QEMU user mode on the test digits as raw stdin frames, checks its
//! int8 outputs against device-infer on the host bit for bit, and reports the binary's size and
//! the instructions of one classification.
//!
//! Instruction counts: QEMU user mode has no `-icount`, so they come from this workspace's TCG
//! plugin (`tools/qemu-insncount`, built here on first use), between the classifier's
//! `lenet_classify_begin` / `lenet_classify_end` markers: one region per digit, exact and
//! repeatable. The static build links with `rust-lld` against the musl target's self-contained
//! C runtime, so no cross C toolchain is needed (`rustup target add aarch64-unknown-linux-musl`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use device_infer::model::Model;

use crate::deploy::{self, Digit};

/// A Linux board QEMU user mode emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinuxBoard {
    /// Name on the command line.
    pub name: &'static str,
    /// Rust target triple (a static musl target).
    pub target: &'static str,
    /// The CPU, in words.
    pub core: &'static str,
    /// The QEMU user-mode binary.
    pub qemu: &'static str,
}

/// The Linux boards `deploy` knows. A 32-bit `linux-armv7` is not here: this toolchain has no
/// musl target for it, and a glibc one needs a cross C toolchain for a static link.
pub const LINUX_BOARDS: [LinuxBoard; 1] = [LinuxBoard {
    name: "linux-aarch64",
    target: "aarch64-unknown-linux-musl",
    core: "ARMv8-A AArch64 (QEMU's default user-mode CPU)",
    qemu: "qemu-aarch64",
}];

/// The Linux board called `name`, if it is one.
pub fn find_board(name: &str) -> Option<LinuxBoard> {
    LINUX_BOARDS.iter().copied().find(|b| b.name == name)
}

/// What an edge deploy needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The device model (`.lnq8`), embedded in the binary.
    pub model: PathBuf,
    /// The board.
    pub board: LinuxBoard,
    /// Digits fed to the classifier as raw frames.
    pub digits: Vec<Digit>,
    /// The workspace holding `classify/` and `tools/qemu-insncount/`.
    pub workspace: PathBuf,
    /// Cargo target directory.
    pub target_dir: PathBuf,
    /// The QEMU user-mode binary (default: the board's, from PATH).
    pub qemu: PathBuf,
    /// The instruction-count plugin (default: this workspace's, built on first use).
    pub plugin: Option<PathBuf>,
    /// Longest the classifier may run under QEMU.
    pub timeout: Duration,
}

impl Config {
    /// Defaults: the workspace of [`deploy::project_root`], its target directory (or
    /// `$CARGO_TARGET_DIR`), the board's QEMU from PATH, a 120 s limit.
    pub fn new(model: PathBuf, board: LinuxBoard, digits: Vec<Digit>) -> Self {
        let root = deploy::project_root();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Config {
            model,
            board,
            digits,
            workspace: root,
            target_dir,
            qemu: PathBuf::from(board.qemu),
            plugin: None,
            timeout: Duration::from_secs(120),
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The workspace manifest, if `workspace` holds `crate_dir`.
fn manifest(workspace: &Path, crate_dir: &str) -> Result<PathBuf> {
    ensure!(
        workspace.join(crate_dir).join("Cargo.toml").is_file(),
        "no {crate_dir}/ in {} (deploy builds it from the repository): run from the \
         repository root",
        workspace.display()
    );
    Ok(workspace.join("Cargo.toml"))
}

/// Builds `lenet-classify` for the board with `cfg.model` embedded and returns a private copy
/// of the binary in `work` (a lock keeps two deploys from swapping each other's binary).
pub fn build_classifier(cfg: &Config, work: &Path) -> Result<PathBuf> {
    let manifest = manifest(&cfg.workspace, "classify")?;
    let model = std::fs::canonicalize(&cfg.model)
        .with_context(|| format!("cannot read {}", cfg.model.display()))?;
    std::fs::create_dir_all(&cfg.target_dir)?;
    let lock = std::fs::File::create(cfg.target_dir.join("lenet-classify-cross.lock"))?;
    lock.lock()?;
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        cfg.board.target.to_uppercase().replace('-', "_")
    );
    let out = cargo()
        .args(["build", "--release", "--quiet", "-p", "lenet-classify"])
        .args(["--no-default-features", "--features", "embedded-model"])
        .arg("--target")
        .arg(cfg.board.target)
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &cfg.target_dir)
        .env("LENET_CLASSIFY_MODEL", &model)
        .env(linker_var, "rust-lld")
        // Symbols stay (the plugin's markers), line tables go: the binary a board would get.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        // The host build's flags (e.g. target-cpu=native) are not the board's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .context("cannot run cargo to build lenet-classify for the board")?;
    if !out.status.success() {
        bail!(
            "building lenet-classify for {} failed (is the target installed? `rustup target add {}`):\n{}",
            cfg.board.name,
            cfg.board.target,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let built = cfg
        .target_dir
        .join(cfg.board.target)
        .join("release")
        .join("lenet-classify");
    let bin = work.join(format!("lenet-classify-{}", cfg.board.name));
    std::fs::copy(&built, &bin).with_context(|| format!("cannot copy {}", built.display()))?;
    drop(lock);
    Ok(bin)
}

/// The workspace's instruction-count plugin (`tools/qemu-insncount`), built for the host if it
/// is not yet; it also serves `qemu-system-arm` (the microcontroller boards).
pub fn build_plugin(workspace: &Path, target_dir: &Path) -> Result<PathBuf> {
    let manifest = manifest(workspace, "tools/qemu-insncount")?;
    let out = cargo()
        .args(["build", "--release", "--quiet", "-p", "qemu-insncount"])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .context("cannot run cargo to build the qemu-insncount plugin")?;
    if !out.status.success() {
        bail!(
            "building the qemu-insncount plugin failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(target_dir.join("release/libqemu_insncount.so"))
}

/// One digit as the classifier on the board reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardDigit {
    /// The predicted class.
    pub class: usize,
    /// The int8 output codes.
    pub codes: Vec<i8>,
}

/// The classifier's run on the board, parsed.
#[derive(Debug, Clone, Default)]
pub struct BoardRun {
    /// One per digit, in order.
    pub digits: Vec<BoardDigit>,
    /// Exact instructions of each classification (plugin regions), in order.
    pub insns: Vec<u64>,
    /// Instructions of the whole process.
    pub total_insns: Option<u64>,
}

/// Parses the classifier's `--json` lines and the plugin's report (`insncount: ...`).
pub fn parse_output(text: &str) -> Result<BoardRun> {
    let mut run = BoardRun::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("insncount: ") {
            let n = |s: &str| -> Result<u64> {
                s.strip_suffix(" insns")
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("plugin line {line:?}: no count"))
            };
            if let Some(total) = rest.strip_prefix("total = ") {
                run.total_insns = Some(n(total)?);
            } else if let Some((_, count)) = rest.split_once(" = ") {
                run.insns.push(n(count)?);
            }
            continue;
        }
        if !line.starts_with('{') {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("classifier line {line:?}: not JSON"))?;
        let class = v["class"]
            .as_u64()
            .with_context(|| format!("classifier line {line:?}: no class"))?;
        let codes = v["codes"]
            .as_array()
            .with_context(|| format!("classifier line {line:?}: no int8 codes"))?
            .iter()
            .map(|c| c.as_i64().and_then(|c| i8::try_from(c).ok()))
            .collect::<Option<Vec<i8>>>()
            .with_context(|| format!("classifier line {line:?}: a code is not an int8"))?;
        run.digits.push(BoardDigit {
            class: class as usize,
            codes,
        });
    }
    Ok(run)
}

/// Sizes of the board's binary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BinarySizes {
    /// The file (symbols kept, no debug info).
    pub file: u64,
    /// What the loader maps from the file: the loadable segments (about what a stripped
    /// binary holds).
    pub loaded: u64,
    /// Code.
    pub text: u64,
    /// Constants (the model lives here).
    pub rodata: u64,
}

/// Reads the binary's sizes.
pub fn binary_sizes(path: &Path) -> Result<BinarySizes> {
    use object::{Object, ObjectSection, ObjectSegment};
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = object::File::parse(&*bytes)
        .with_context(|| format!("{}: not an ELF file", path.display()))?;
    let mut s = BinarySizes {
        file: bytes.len() as u64,
        loaded: file.segments().map(|seg| seg.file_range().1).sum(),
        ..BinarySizes::default()
    };
    for sec in file.sections() {
        match sec.name().unwrap_or("") {
            ".text" => s.text += sec.size(),
            ".rodata" => s.rodata += sec.size(),
            _ => {}
        }
    }
    Ok(s)
}

/// Everything an edge deploy measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The board.
    pub board: LinuxBoard,
    /// The classifier's run.
    pub run: BoardRun,
    /// The true classes.
    pub labels: Vec<u8>,
    /// device-infer's outputs on the host for the same digits.
    pub host_outputs: Vec<Vec<i8>>,
    /// Digits whose outputs are identical on the board and on the host.
    pub identical: usize,
    /// MACs of one inference.
    pub macs: u64,
    /// The binary's sizes.
    pub sizes: BinarySizes,
    /// Device model bytes.
    pub model_bytes: u64,
}

impl Report {
    /// Whether the board's outputs equal the host's for every digit.
    pub fn bit_exact(&self) -> bool {
        self.identical == self.host_outputs.len()
            && self.run.digits.len() == self.host_outputs.len()
    }

    /// Digits the board classified as labelled.
    pub fn correct(&self) -> usize {
        self.run
            .digits
            .iter()
            .zip(&self.labels)
            .filter(|(d, l)| d.class == **l as usize)
            .count()
    }

    /// Instructions of one classification: the median over the digits.
    pub fn insns_per_inference(&self) -> u64 {
        let mut v = self.run.insns.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }

    /// The printed report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let b = &self.board;
        let n = self.run.digits.len();
        let _ = writeln!(
            s,
            "board {} ({}, {}) under {} (user mode): lenet-classify, int8 engine, {n} digits as raw stdin frames",
            b.name, b.core, b.target, b.qemu
        );
        let _ = writeln!(
            s,
            "int8 outputs identical to device-infer on the host: {}/{} digits; correct {}/{n}",
            self.identical,
            self.host_outputs.len(),
            self.correct()
        );
        let (lo, hi) = (
            self.run.insns.iter().min().copied().unwrap_or(0),
            self.run.insns.iter().max().copied().unwrap_or(0),
        );
        let per = self.insns_per_inference();
        let _ = writeln!(
            s,
            "instructions per classification: {per} (median of {}, min {lo}, max {hi}; exact, qemu-insncount), {:.2} per MAC over {} MACs",
            self.run.insns.len(),
            per as f64 / self.macs.max(1) as f64,
            self.macs
        );
        if let Some(t) = self.run.total_insns {
            let _ = writeln!(
                s,
                "instructions of the whole process (start-up, parsing, output): {t}"
            );
        }
        let z = &self.sizes;
        let _ = writeln!(
            s,
            "binary: {} bytes static (symbols kept), {} bytes loaded = .text {} + .rodata {} (model {}) + other",
            z.file, z.loaded, z.text, z.rodata, self.model_bytes
        );
        s
    }
}

/// Builds, runs and compares: the whole of `export deploy --board linux-*`.
pub fn deploy(cfg: &Config) -> Result<Report> {
    let bytes = std::fs::read(&cfg.model)
        .with_context(|| format!("cannot read {}", cfg.model.display()))?;
    let aligned = device_infer::writer::AlignedBytes::new(&bytes);
    let m = Model::from_bytes(aligned.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.model.display()))?;
    ensure!(!cfg.digits.is_empty(), "no digits to classify");
    let dims = m.input_dims();
    ensure!(
        dims.c == 1,
        "lenet-classify reads grey digits; {} takes {} channels",
        cfg.model.display(),
        dims.c
    );
    let input_len = dims.len();
    let mut frames = Vec::with_capacity(cfg.digits.len() * input_len);
    for d in &cfg.digits {
        ensure!(
            d.pixels.len() == input_len,
            "a digit has {} pixels, the model takes {input_len}",
            d.pixels.len()
        );
        frames.extend_from_slice(&d.pixels);
    }
    let pixels: Vec<&[u8]> = cfg.digits.iter().map(|d| &d.pixels[..]).collect();
    let host_outputs = deploy::host_outputs(&m, &pixels)?;

    let work = tempfile::tempdir()?;
    let bin = build_classifier(cfg, work.path())?;
    let plugin = match &cfg.plugin {
        Some(p) => p.clone(),
        None => build_plugin(&cfg.workspace, &cfg.target_dir)?,
    };
    let [begin, end] =
        deploy::symbol_addresses(&bin, ["lenet_classify_begin", "lenet_classify_end"])?;
    let mut cmd = Command::new(&cfg.qemu);
    cmd.arg("-plugin")
        .arg(format!(
            "{},start={begin:#x},stop={end:#x}",
            plugin.display()
        ))
        .args(["-d", "plugin"])
        .arg(&bin)
        .args(["--json", "--no-preprocess", "-"]);
    let what = format!("{} on {}", cfg.qemu.display(), cfg.board.name);
    let (status, text) = deploy::run_captured(cmd, &frames, cfg.timeout, &what).map_err(|e| {
        if e.downcast_ref::<std::io::Error>().is_some() {
            anyhow::anyhow!(
                "cannot run {} (install it: `apt-get install qemu-user`, or run scripts/setup.sh): {e}",
                cfg.qemu.display()
            )
        } else {
            e
        }
    })?;
    if !status.success() {
        bail!(
            "lenet-classify exited with {status} on {}; its output:\n{text}",
            cfg.board.name
        );
    }
    let run = parse_output(&text)?;
    ensure!(
        run.digits.len() == cfg.digits.len(),
        "the board classified {} digits, {} were sent; its output:\n{text}",
        run.digits.len(),
        cfg.digits.len()
    );
    ensure!(
        run.insns.len() == cfg.digits.len(),
        "the plugin counted {} classifications, {} were run (is {} a qemu-insncount plugin?)",
        run.insns.len(),
        cfg.digits.len(),
        plugin.display()
    );
    let identical = run
        .digits
        .iter()
        .zip(&host_outputs)
        .filter(|(d, h)| d.codes == **h)
        .count();
    Ok(Report {
        board: cfg.board,
        labels: cfg.digits.iter().map(|d| d.label).collect(),
        macs: deploy::layer_macs(&m)?.iter().sum(),
        sizes: binary_sizes(&bin)?,
        model_bytes: bytes.len() as u64,
        host_outputs,
        identical,
        run,
    })
}

/// The first differing digits between board and host, for an error message.
pub fn mismatches(report: &Report, limit: usize) -> String {
    let board: Vec<&[i8]> = report.run.digits.iter().map(|d| &d.codes[..]).collect();
    deploy::differing_outputs(&board, &report.host_outputs, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_classifier_and_the_plugin() {
        let text = "{\"class\":7,\"codes\":[-128,5,127],\"input\":\"stdin frame 0\",\"scores\":[0.0]}\n\
                    {\"class\":2,\"codes\":[1,2,3],\"input\":\"stdin frame 1\",\"scores\":[0.0]}\n\
                    insncount: region #0 = 1000 insns\n\
                    insncount: region #1 = 1002 insns\n\
                    insncount: total = 9000 insns\n";
        let r = parse_output(text).unwrap();
        assert_eq!(r.digits.len(), 2);
        assert_eq!(r.digits[0].class, 7);
        assert_eq!(r.digits[0].codes, vec![-128, 5, 127]);
        assert_eq!(r.insns, vec![1000, 1002]);
        assert_eq!(r.total_insns, Some(9000));
    }

    #[test]
    fn bad_classifier_lines_are_errors() {
        let e = parse_output("{\"class\":1,\"codes\":[300]}\n").unwrap_err();
        assert!(format!("{e:#}").contains("not an int8"), "{e:#}");
        let e = parse_output("{\"class\":1}\n").unwrap_err();
        assert!(format!("{e:#}").contains("no int8 codes"), "{e:#}");
        let e = parse_output("{oops\n").unwrap_err();
        assert!(format!("{e:#}").contains("not JSON"), "{e:#}");
    }

    #[test]
    fn linux_boards_are_found_by_name() {
        assert_eq!(
            find_board("linux-aarch64").unwrap().target,
            "aarch64-unknown-linux-musl"
        );
        assert!(find_board("mps2-an386").is_none());
    }
}
