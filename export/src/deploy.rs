//! `export deploy`: builds the firmware (`firmware/`) for a board with a device model and some
//! test digits embedded, runs it under QEMU, checks its int8 outputs against device-infer on
//! the host bit for bit, and reports instruction counts and flash/RAM from the ELF.
//!
//! Instruction counts: QEMU has no cycle model, but with `-icount shift=0` every instruction
//! takes 1 ns of virtual time, so the firmware's SysTick deltas (core clock) are instruction
//! counts to within one tick (40 instructions on mps2-an386, 62.5 on the micro:bit). With an
//! instruction-count plugin (`Config::plugin`; the CLI builds the workspace's
//! `tools/qemu-insncount` by default) the first digit's inference is also counted exactly.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use device_infer::model::{Kind, Model};

/// A board QEMU emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// Name on the command line (also the firmware's cargo feature and QEMU's machine).
    pub name: &'static str,
    /// Rust target triple.
    pub target: &'static str,
    /// The core, in words.
    pub core: &'static str,
    /// SysTick (core) clock QEMU gives the board.
    pub clock_hz: u32,
    /// Flash the firmware links into (`firmware/boards/<name>.x`).
    pub flash: usize,
    /// RAM the firmware links into.
    pub ram: usize,
}

/// The boards `deploy` knows.
pub const BOARDS: [Board; 3] = [
    Board {
        name: "mps2-an386",
        target: "thumbv7em-none-eabihf",
        core: "Cortex-M4F",
        clock_hz: 25_000_000,
        flash: 4 << 20,
        ram: 64 << 10,
    },
    Board {
        name: "mps2-an500",
        target: "thumbv7em-none-eabihf",
        core: "Cortex-M7",
        clock_hz: 25_000_000,
        flash: 4 << 20,
        ram: 64 << 10,
    },
    Board {
        name: "microbit",
        target: "thumbv6m-none-eabi",
        core: "Cortex-M0",
        clock_hz: 16_000_000,
        flash: 256 << 10,
        ram: 16 << 10,
    },
];

/// The board called `name`.
pub fn find_board(name: &str) -> Result<Board> {
    BOARDS
        .iter()
        .copied()
        .find(|b| b.name == name)
        .with_context(|| {
            let names: Vec<_> = BOARDS
                .iter()
                .map(|b| b.name)
                .chain(crate::edge::LINUX_BOARDS.iter().map(|b| b.name))
                .collect();
            format!("unknown board {name:?} (known: {})", names.join(", "))
        })
}

/// One digit to classify: its label and raw u8 pixels.
#[derive(Debug, Clone)]
pub struct Digit {
    /// The true class.
    pub label: u8,
    /// Raw pixels in the model's input layout.
    pub pixels: Vec<u8>,
}

/// What `deploy` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The device model (`.lnq8`).
    pub model: PathBuf,
    /// The board.
    pub board: Board,
    /// Digits embedded in the firmware.
    pub digits: Vec<Digit>,
    /// The firmware crate.
    pub firmware_dir: PathBuf,
    /// Cargo target directory for the firmware build.
    pub target_dir: PathBuf,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The qemu-insncount plugin, for an exact count of the first inference.
    pub plugin: Option<PathBuf>,
    /// Longest QEMU may run.
    pub timeout: Duration,
    /// Build the firmware with its kernel self-test (random cases, optimized vs reference
    /// kernels on the target itself).
    pub selftest: bool,
}

/// The checkout `firmware/` is built from: the one this binary was built in if it is still
/// there, else the current directory when it is a checkout (a binary built in another copy of
/// the repository, or by CI, then works from this one). `--firmware` overrides it.
pub fn project_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built_in.join("firmware/Cargo.toml").is_file() {
        return built_in;
    }
    match std::env::current_dir() {
        Ok(cwd) if cwd.join("firmware/Cargo.toml").is_file() => cwd,
        _ => built_in,
    }
}

impl Config {
    /// Defaults: the firmware of [`project_root`], its target directory (or
    /// `$CARGO_TARGET_DIR`), `qemu-system-arm` from PATH, a 120 s limit.
    pub fn new(model: PathBuf, board: Board, digits: Vec<Digit>) -> Self {
        let root = project_root();
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Config {
            model,
            board,
            digits,
            firmware_dir: root.join("firmware"),
            target_dir,
            qemu: PathBuf::from("qemu-system-arm"),
            plugin: None,
            timeout: Duration::from_secs(120),
            selftest: false,
        }
    }
}

/// One digit as the firmware reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitResult {
    /// The true class.
    pub label: u8,
    /// The firmware's prediction.
    pub pred: usize,
    /// SysTick ticks of the inference.
    pub ticks: u64,
    /// The int8 outputs.
    pub outputs: Vec<i8>,
}

/// The firmware's report, parsed.
#[derive(Debug, Clone, Default)]
pub struct FirmwareRun {
    /// One per digit, in order.
    pub digits: Vec<DigitResult>,
    /// SysTick ticks per layer of the first digit.
    pub layer_ticks: Vec<u64>,
    /// FNV-1a of all outputs.
    pub checksum: u32,
    /// Stack bytes used by one inference (painted stack).
    pub stack_hwm: u64,
    /// Exact instructions of the first inference (plugin only).
    pub exact_insns: Option<u64>,
    /// Kernel self-test cases that passed (`selftest` builds).
    pub selftest_cases: Option<u64>,
}

impl FirmwareRun {
    /// Digits the firmware classified as labelled.
    pub fn correct(&self) -> usize {
        self.digits
            .iter()
            .filter(|d| d.pred == d.label as usize)
            .count()
    }
}

/// Parses the firmware's semihosting output (see `firmware/src/main.rs`).
pub fn parse_output(text: &str) -> Result<FirmwareRun> {
    let mut run = FirmwareRun::default();
    let mut done = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> Result<u64> {
            f.get(i)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("firmware line {line:?}: field {i} is not a number"))
        };
        match f.first().copied() {
            Some("error:") => bail!("the firmware failed: {line}"),
            Some("digit") => {
                ensure!(
                    f.len() >= 9 && f[2] == "label" && f[4] == "pred" && f[8] == "out",
                    "firmware line {line:?}: not a digit line"
                );
                ensure!(
                    num(1)? as usize == run.digits.len(),
                    "firmware line {line:?}: digits out of order"
                );
                let outputs = f[9..]
                    .iter()
                    .map(|s| s.parse::<i8>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("firmware line {line:?}: bad output value"))?;
                run.digits.push(DigitResult {
                    label: num(3)? as u8,
                    pred: num(5)? as usize,
                    ticks: num(7)?,
                    outputs,
                });
            }
            Some("layer") => run.layer_ticks.push(num(3)?),
            Some("checksum") => {
                run.checksum = f
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("firmware line {line:?}: bad checksum"))?;
            }
            Some("stack_hwm") => run.stack_hwm = num(1)?,
            Some("selftest") if f.get(2) == Some(&"ok") => run.selftest_cases = Some(num(1)?),
            Some("done") => done = true,
            _ => {
                if let Some(n) = line
                    .strip_prefix("insncount: region #0 = ")
                    .and_then(|r| r.strip_suffix(" insns"))
                {
                    run.exact_insns = n.parse().ok();
                }
            }
        }
    }
    ensure!(
        done,
        "the firmware stopped before its report ended; its output:\n{text}"
    );
    Ok(run)
}

/// Section sizes of the firmware ELF.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ElfSizes {
    /// Code.
    pub text: u64,
    /// Constants (the model and the digits live here).
    pub rodata: u64,
    /// Initialised statics (flash and RAM).
    pub data: u64,
    /// Zeroed statics (RAM: the arena).
    pub bss: u64,
    /// The vector table.
    pub vector_table: u64,
    /// The part of `.text` in device-infer's own functions (what it inlines into the
    /// firmware's functions counts as the firmware's).
    pub runtime_text: u64,
}

/// Reads the allocated sections' sizes.
pub fn elf_sizes(path: &Path) -> Result<ElfSizes> {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolSection};
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = object::File::parse(&*bytes)
        .with_context(|| format!("{}: not an ELF file", path.display()))?;
    let mut s = ElfSizes::default();
    let mut text_index = None;
    for sec in file.sections() {
        let size = sec.size();
        match sec.name().unwrap_or("") {
            ".text" => {
                s.text += size;
                text_index = Some(sec.index());
            }
            ".rodata" => s.rodata += size,
            ".data" => s.data += size,
            ".bss" | ".uninit" => s.bss += size,
            ".vector_table" => s.vector_table += size,
            _ => {}
        }
    }
    // Mangled names hold the crate name as `12device_infer` (legacy and v0 schemes alike).
    s.runtime_text = file
        .symbols()
        .filter(|sym| {
            text_index.is_some_and(|t| sym.section() == SymbolSection::Section(t))
                && sym.name().is_ok_and(|n| n.contains("12device_infer"))
        })
        .map(|sym| sym.size())
        .sum();
    Ok(s)
}

/// Multiply-accumulates per layer, as the device computes them (a fused pooling's discarded
/// edge rows are not computed).
pub fn layer_macs(m: &Model) -> Result<Vec<u64>> {
    (0..m.layers())
        .map(|i| {
            let l = m.layer_at(i).map_err(|e| anyhow::anyhow!("{e}"))?;
            let vol = (l.kernel[0] * l.kernel[1] * l.input.c) as u64;
            Ok(match l.kind {
                Kind::Conv2d(Some(_)) => 4 * l.output.len() as u64 * vol,
                Kind::Conv2d(None) => l.output.len() as u64 * vol,
                Kind::Dense => (l.input.len() * l.output.len()) as u64,
                _ => 0,
            })
        })
        .collect()
}

/// The firmware's cargo features: the board, the self-test if asked, and the optional
/// device-infer kernels the model needs (the rest stay out of flash, as TFLM's op resolver
/// keeps unused kernels out).
pub fn firmware_features(cfg: &Config, model: &[u8]) -> Result<String> {
    let aligned = device_infer::writer::AlignedBytes::new(model);
    let m = device_infer::Model::from_bytes(aligned.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.model.display()))?;
    let mut features = vec![cfg.board.name];
    if cfg.selftest {
        features.push("selftest");
    }
    features.extend(m.kernel_features().features());
    Ok(features.join(","))
}

/// Builds the firmware for `cfg.board` and returns a private copy of the ELF (the build
/// directory is shared; a lock keeps two deploys from swapping each other's firmware).
pub fn build_firmware(cfg: &Config, work: &Path) -> Result<PathBuf> {
    let digits_path = work.join("digits.bin");
    let mut blob = Vec::new();
    for d in &cfg.digits {
        blob.push(d.label);
        blob.extend_from_slice(&d.pixels);
    }
    std::fs::write(&digits_path, blob)?;
    let model = std::fs::canonicalize(&cfg.model)
        .with_context(|| format!("cannot read {}", cfg.model.display()))?;
    let manifest = cfg.firmware_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "no firmware at {} (deploy builds the repository's firmware/): run from the \
             repository root or pass --firmware DIR",
            cfg.firmware_dir.display()
        );
    }
    std::fs::create_dir_all(&cfg.target_dir)?;
    let lock = std::fs::File::create(cfg.target_dir.join("lenet-firmware.lock"))?;
    lock.lock()?;
    let features = firmware_features(cfg, &std::fs::read(&model)?)?;
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--quiet", "--target"])
        .arg(cfg.board.target)
        .args(["--features", &features, "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &cfg.target_dir)
        .env("LENET_FW_MODEL", &model)
        .env("LENET_FW_DIGITS", &digits_path)
        // The host build's flags (e.g. target-cpu=native) are not the board's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .context("cannot run cargo to build the firmware")?;
    if !out.status.success() {
        bail!(
            "building the firmware for {} failed (is the target installed? `rustup target add {}`):\n{}",
            cfg.board.name,
            cfg.board.target,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let built = cfg
        .target_dir
        .join(cfg.board.target)
        .join("release")
        .join("lenet-firmware");
    let elf = work.join(format!("lenet-firmware-{}.elf", cfg.board.name));
    std::fs::copy(&built, &elf).with_context(|| format!("cannot copy {}", built.display()))?;
    drop(lock);
    Ok(elf)
}

/// The addresses of global function symbols (Thumb bit cleared), in the order asked.
pub fn symbol_addresses<const N: usize>(elf: &Path, names: [&str; N]) -> Result<[u64; N]> {
    use object::{Object, ObjectSymbol};
    let bytes = std::fs::read(elf)?;
    let file = object::File::parse(&*bytes)?;
    let mut out = [0u64; N];
    for (addr, name) in out.iter_mut().zip(names) {
        *addr = file
            .symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address() & !1)
            .with_context(|| format!("{}: no symbol {name}", elf.display()))?;
    }
    Ok(out)
}

/// Runs `cmd` with `input` on its stdin and returns its exit status and its stdout followed by
/// its stderr; kills it after `timeout` (an error naming `what`). A command that cannot start is
/// an `std::io::Error` in the chain.
pub fn run_captured(
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
    what: &str,
) -> Result<(std::process::ExitStatus, String)> {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("child stdin")?;
    let input = input.to_vec();
    // A child that exits early closes its stdin: the write error is not ours to report.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().context("child stdout")?;
    let mut stderr = child.stderr.take().context("child stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} ran longer than {timeout:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    Ok((
        status,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        ),
    ))
}

/// Runs the firmware under QEMU and parses its report; fails on a non-zero exit or timeout.
pub fn run_qemu(cfg: &Config, elf: &Path) -> Result<FirmwareRun> {
    let mut cmd = Command::new(&cfg.qemu);
    cmd.args(["-machine", cfg.board.name, "-nographic", "-monitor", "none"])
        .args(["-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-icount", "shift=0"]);
    if let Some(plugin) = &cfg.plugin {
        let [start, stop] = symbol_addresses(elf, ["bench_start", "bench_stop"])?;
        // A per-address profile for kernel work (bench/README.md), when asked for.
        let profile = std::env::var("LENET_INSNCOUNT_PROFILE")
            .map(|p| format!(",profile={p}"))
            .unwrap_or_default();
        cmd.arg("-plugin")
            .arg(format!(
                "{},start={start:#x},stop={stop:#x}{profile}",
                plugin.display()
            ))
            .args(["-d", "plugin"]);
    }
    cmd.arg("-kernel").arg(elf);
    let what = format!("{} on {}", cfg.qemu.display(), cfg.board.name);
    let (status, text) = run_captured(cmd, &[], cfg.timeout, &what).map_err(|e| {
        if e.downcast_ref::<std::io::Error>().is_some() {
            anyhow::anyhow!(
                "cannot run {} (install it: `apt-get install qemu-system-arm`, or run scripts/setup.sh): {e}",
                cfg.qemu.display()
            )
        } else {
            e
        }
    })?;
    if !status.success() {
        bail!(
            "the firmware exited with {status} on {}; its output:\n{text}",
            cfg.board.name
        );
    }
    parse_output(&text)
}

/// Everything `deploy` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The board.
    pub board: Board,
    /// The firmware's report.
    pub run: FirmwareRun,
    /// device-infer's outputs on the host for the same digits.
    pub host_outputs: Vec<Vec<i8>>,
    /// Digits whose outputs are identical on the board and on the host.
    pub identical: usize,
    /// MACs per layer.
    pub macs: Vec<u64>,
    /// Layer kinds.
    pub kinds: Vec<Kind>,
    /// ELF section sizes.
    pub sizes: ElfSizes,
    /// Device model bytes.
    pub model_bytes: u64,
    /// Embedded digit bytes.
    pub digit_bytes: u64,
    /// Arena bytes.
    pub arena: u64,
}

impl Report {
    /// Nanoseconds of QEMU virtual time per SysTick tick, i.e. instructions per tick.
    pub fn insns_per_tick(&self) -> f64 {
        1e9 / self.board.clock_hz as f64
    }

    /// Instructions of one inference (first digit): exact with the plugin, else from SysTick.
    pub fn insns_per_inference(&self) -> u64 {
        self.run.exact_insns.unwrap_or_else(|| {
            let t = self.run.digits.first().map_or(0, |d| d.ticks);
            (t as f64 * self.insns_per_tick()).round() as u64
        })
    }

    /// Flash besides the test digits: vectors, code, constants and `.data`.
    pub fn flash_without_digits(&self) -> u64 {
        let z = &self.sizes;
        (z.vector_table + z.text + z.rodata + z.data).saturating_sub(self.digit_bytes)
    }

    /// Flash besides the model and the test digits: code, other constants, vectors (the
    /// issue's "weights + 6 KB of code" budget is on this).
    pub fn code_and_tables(&self) -> u64 {
        self.flash_without_digits().saturating_sub(self.model_bytes)
    }

    /// Instructions per multiply-accumulate over the whole model.
    pub fn insns_per_mac(&self) -> f64 {
        self.insns_per_inference() as f64 / self.macs.iter().sum::<u64>().max(1) as f64
    }

    /// Whether the board's outputs equal the host's for every digit.
    pub fn bit_exact(&self) -> bool {
        self.identical == self.host_outputs.len()
            && self.run.digits.len() == self.host_outputs.len()
    }

    /// The printed report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let b = &self.board;
        let n = self.run.digits.len();
        let _ = writeln!(
            s,
            "board {} ({}, {}) under QEMU -icount shift=0: {} digits",
            b.name, b.core, b.target, n
        );
        let correct = self.run.correct();
        if let Some(cases) = self.run.selftest_cases {
            let _ = writeln!(
                s,
                "kernel self-test on the board: {cases} random conv+pool and dense cases bit-exact with the reference kernels"
            );
        }
        let _ = writeln!(
            s,
            "int8 outputs identical to device-infer on the host: {}/{} digits (checksum 0x{:08x}); correct {correct}/{n}",
            self.identical, n, self.run.checksum
        );
        let tick = self.insns_per_tick();
        let _ = writeln!(
            s,
            "{:<6} {:<20} {:>9} {:>13} {:>9}",
            "layer", "kind", "MACs", "instructions", "insn/MAC"
        );
        for (i, ((kind, macs), ticks)) in self
            .kinds
            .iter()
            .zip(&self.macs)
            .zip(&self.run.layer_ticks)
            .enumerate()
        {
            let insns = (*ticks as f64 * tick).round();
            let per = if *macs > 0 {
                format!("{:.2}", insns / *macs as f64)
            } else {
                "-".into()
            };
            let _ = writeln!(
                s,
                "{i:<6} {:<20} {macs:>9} {insns:>13} {per:>9}",
                format!("{kind:?}")
            );
        }
        let total_macs: u64 = self.macs.iter().sum();
        let how = if self.run.exact_insns.is_some() {
            "exact, qemu-insncount".to_string()
        } else {
            format!("from SysTick, +-{tick} per layer")
        };
        let _ = writeln!(
            s,
            "{:<6} {:<20} {total_macs:>9} {:>13} {:>9.2}   ({how})",
            "total",
            "",
            self.insns_per_inference(),
            self.insns_per_mac()
        );
        let _ = writeln!(
            s,
            "instructions per inference: {}",
            self.insns_per_inference()
        );
        let _ = writeln!(s, "instructions per MAC: {:.2}", self.insns_per_mac());
        let z = &self.sizes;
        let flash = z.vector_table + z.text + z.rodata + z.data;
        let _ = writeln!(
            s,
            "flash: {flash} bytes = .text {} (code) + .rodata {} (model {}, test digits {}, other {}) + .data {} + vectors {}",
            z.text,
            z.rodata,
            self.model_bytes,
            self.digit_bytes,
            z.rodata.saturating_sub(self.model_bytes + self.digit_bytes),
            z.data,
            z.vector_table
        );
        let _ = writeln!(
            s,
            "flash without the test digits: {} bytes (model {} + code and tables {})",
            self.flash_without_digits(),
            self.model_bytes,
            self.code_and_tables()
        );
        let _ = writeln!(
            s,
            "code: .text {} = device-infer {} + firmware, core library and startup {}",
            z.text,
            z.runtime_text,
            z.text.saturating_sub(z.runtime_text)
        );
        let ram = z.data + z.bss + self.run.stack_hwm;
        let _ = writeln!(
            s,
            "RAM: {ram} bytes = .data {} + .bss {} (arena {}) + stack high-water {}",
            z.data, z.bss, self.arena, self.run.stack_hwm
        );
        s
    }
}

/// device-infer's int8 outputs on the host for raw pixels, through the firmware's code path
/// (quantized into the arena's input slot, then `run_in_place`).
pub fn host_outputs(m: &Model, pixels: &[&[u8]]) -> Result<Vec<Vec<i8>>> {
    let mut arena = vec![0i8; m.arena_len()];
    let mut out = Vec::with_capacity(pixels.len());
    for p in pixels {
        let slot = m
            .input_slot(&mut arena)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        m.quantize_input(p, slot)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let y = m
            .run_in_place(&mut arena, |_, _| {})
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push(y.to_vec());
    }
    Ok(out)
}

/// How many test images of `input_len` pixels fit `board`'s flash beside a device model of
/// `model_len` bytes and the code reserve (`targets::CODE_RESERVE`).
pub fn digits_that_fit(board: &Board, model_len: usize, input_len: usize) -> usize {
    board
        .flash
        .saturating_sub(model_len + crate::targets::CODE_RESERVE)
        / (1 + input_len)
}

/// Refuses, with the numbers, a model that does not fit `board` with `digits` test images
/// embedded: flash (model + images + the code reserve) and RAM (arena + the stack reserve).
pub fn check_fit(board: &Board, m: &Model, model_len: usize, digits: usize) -> Result<()> {
    use crate::targets::{CODE_RESERVE, STACK_RESERVE};
    let images = digits * (1 + m.input_dims().len());
    let flash = model_len + images + CODE_RESERVE;
    let ram = m.arena_len() + STACK_RESERVE;
    ensure!(
        flash <= board.flash && ram <= board.ram,
        "the model does not fit {} ({}): flash {flash} bytes (model {model_len} + {digits} test images {images} + code reserve {CODE_RESERVE}) of {} {}, RAM {ram} bytes (arena {} + stack reserve {STACK_RESERVE}) of {} {}",
        board.name,
        board.core,
        board.flash,
        if flash <= board.flash {
            "fits"
        } else {
            "DOES NOT FIT"
        },
        m.arena_len(),
        board.ram,
        if ram <= board.ram {
            "fits"
        } else {
            "DOES NOT FIT"
        },
    );
    Ok(())
}

/// Builds, runs and compares: the whole of `export deploy`.
pub fn deploy(cfg: &Config) -> Result<Report> {
    let bytes = std::fs::read(&cfg.model)
        .with_context(|| format!("cannot read {}", cfg.model.display()))?;
    let aligned = device_infer::writer::AlignedBytes::new(&bytes);
    let m = Model::from_bytes(aligned.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.model.display()))?;
    ensure!(!cfg.digits.is_empty(), "no digits to classify");
    check_fit(&cfg.board, &m, bytes.len(), cfg.digits.len())?;
    let input_len = m.input_dims().len();
    for d in &cfg.digits {
        ensure!(
            d.pixels.len() == input_len,
            "a digit has {} pixels, the model takes {input_len}",
            d.pixels.len()
        );
    }
    let pixels: Vec<&[u8]> = cfg.digits.iter().map(|d| &d.pixels[..]).collect();
    let host_outputs = host_outputs(&m, &pixels)?;

    let work = tempfile::tempdir()?;
    let elf = build_firmware(cfg, work.path())?;
    let run = run_qemu(cfg, &elf)?;
    ensure!(
        run.digits.len() == cfg.digits.len(),
        "the firmware reported {} digits, {} were embedded",
        run.digits.len(),
        cfg.digits.len()
    );
    let identical = run
        .digits
        .iter()
        .zip(&host_outputs)
        .filter(|(d, h)| d.outputs == **h)
        .count();
    let sizes = elf_sizes(&elf)?;
    let kinds = (0..m.layers())
        .map(|i| m.layer_at(i).map(|l| l.kind))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Report {
        board: cfg.board,
        macs: layer_macs(&m)?,
        kinds,
        sizes,
        model_bytes: bytes.len() as u64,
        digit_bytes: (cfg.digits.len() * (1 + input_len)) as u64,
        arena: m.arena_len() as u64,
        host_outputs,
        identical,
        run,
    })
}

/// The first differing digits between board and host, for an error message.
pub fn mismatches(report: &Report, limit: usize) -> String {
    let board: Vec<&[i8]> = report.run.digits.iter().map(|d| &d.outputs[..]).collect();
    differing_outputs(&board, &report.host_outputs, limit)
}

/// The first `limit` digits whose board outputs differ from the host's, one pair of lines
/// each (also the Linux boards' report, `edge::mismatches`).
pub fn differing_outputs(board: &[&[i8]], host: &[Vec<i8>], limit: usize) -> String {
    let mut s = String::new();
    for (i, (b, h)) in board
        .iter()
        .zip(host)
        .enumerate()
        .filter(|(_, (b, h))| **b != &h[..])
        .take(limit)
    {
        let _ = writeln!(s, "digit {i}: board {b:?}\n          host  {h:?}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "fw board=mps2-an386 clock_hz=25000000\n\
        digit 0 label 7 pred 2 ticks 100 out -3 0 5\n\
        digit 1 label 1 pred 0 ticks 101 out 9 -128 127\n\
        layer 0 ticks 60\nlayer 1 ticks 39\nchecksum 195948557\nstack_hwm 512\ndone\n";

    #[test]
    fn parses_the_firmware_report() {
        let r = parse_output(GOOD).unwrap();
        assert_eq!(r.digits.len(), 2);
        assert_eq!(r.digits[1].outputs, vec![9, -128, 127]);
        assert_eq!(
            (r.digits[0].label, r.digits[0].pred, r.digits[0].ticks),
            (7, 2, 100)
        );
        assert_eq!(r.layer_ticks, vec![60, 39]);
        assert_eq!(r.checksum, 0x0bad_f00d);
        assert_eq!(r.stack_hwm, 512);
        assert_eq!(r.exact_insns, None);
        let with_plugin = format!("{GOOD}insncount: region #0 = 4000 insns\n");
        assert_eq!(parse_output(&with_plugin).unwrap().exact_insns, Some(4000));
    }

    #[test]
    fn rejects_failed_truncated_or_garbled_reports() {
        let e = parse_output("fw board=x\nerror: hard fault\n").unwrap_err();
        assert!(e.to_string().contains("hard fault"), "{e}");
        let cut = &GOOD[..GOOD.find("layer 1").unwrap()];
        let e = parse_output(cut).unwrap_err();
        assert!(e.to_string().contains("stopped before"), "{e}");
        let bad = GOOD.replace("out 9 -128 127", "out 9 -129 127");
        assert!(format!("{:#}", parse_output(&bad).unwrap_err()).contains("bad output"));
        let swapped = GOOD.replace("digit 1 ", "digit 5 ");
        assert!(
            parse_output(&swapped)
                .unwrap_err()
                .to_string()
                .contains("order")
        );
    }
}
