use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use export::{check, graph, ops, parity, targets};
use protos::Message;

/// Check (and, coming, quantize and deploy) ONNX models for the int8 device runtime.
#[derive(Parser, Debug)]
#[command(name = "export", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate an ONNX model, infer shapes, count parameters and MACs, list ops the device
    /// cannot run, estimate int8 flash and RAM against a part, and check parity with tract.
    /// Exits 1 when an op is unsupported, the model does not fit, or parity fails.
    Check {
        /// The ONNX file.
        model: PathBuf,
        /// A part from the built-in table (see the report for names).
        #[arg(long)]
        target: Option<String>,
        /// Parity sample (default: `<model>.sample.pb` when it exists).
        #[arg(long)]
        sample: Option<PathBuf>,
        /// Largest tolerated |tract - burn| logit difference, relative to the largest logit
        /// magnitude (taken as at least 1).
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f32,
    },
    /// Quantize to int8 with calibration images, write the device model, and report float vs
    /// int8 accuracy on the whole test set (int8 run through device-infer on the host),
    /// per-layer SNR, flash and arena sizes.
    Quantize {
        /// The ONNX file.
        model: PathBuf,
        #[command(flatten)]
        args: QuantizeArgs,
    },
    /// Build the firmware for a board with the device model and test images embedded, run
    /// it under QEMU, compare its int8 outputs with device-infer on the host bit for bit, and
    /// print per-layer and total instruction counts, instructions per MAC, flash and RAM.
    /// Exits 1 when any output differs.
    Deploy {
        /// The device model (`.lnq8`).
        #[arg(long)]
        model: PathBuf,
        /// mps2-an386 (Cortex-M4F), mps2-an500 (Cortex-M7), microbit (Cortex-M0), or linux-aarch64 (the edge box:
        /// `lenet-classify` built statically with the model embedded, run under qemu-aarch64).
        #[arg(long)]
        board: String,
        /// Test images to embed (the first N of the dataset the model's input takes: MNIST
        /// for 28x28x1, CIFAR-10 for 32x32x3).
        #[arg(long, default_value_t = 100)]
        digits: usize,
        /// Folder holding the dataset (or a data root), as for host-train.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The QEMU binary (default: qemu-system-arm for the microcontrollers, qemu-aarch64
        /// for linux-aarch64).
        #[arg(long)]
        qemu: Option<PathBuf>,
        /// A QEMU instruction-count plugin for exact counts (default: `$LENET_INSNCOUNT_PLUGIN`,
        /// else the workspace's `tools/qemu-insncount`, built on first use).
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// The firmware crate (default: the one in this repository).
        #[arg(long)]
        firmware: Option<PathBuf>,
        /// Also run the kernel self-test on the board (random shapes, optimized vs reference
        /// kernels, bit for bit).
        #[arg(long)]
        selftest: bool,
    },
    /// Golden sets: expected outputs of one model on fixed inputs, for every target.
    Golden {
        #[command(subcommand)]
        action: GoldenAction,
    },
    /// Write a device model as an integer-only ONNX graph (u8 pixels `[1, H, W, C]` in, the
    /// device's int8 outputs out; ConvInteger/MatMulInteger and the fixed-point
    /// requantization spelled out in integer ops) that another runtime reproduces bit for
    /// bit, and check that tract does on the given images (default: the first 100 test images
    /// of the model's dataset).
    IntegerOnnx {
        /// The device model (`.lnq8`).
        model: PathBuf,
        /// Where to write (default: beside the model, `<name>.integer.onnx`).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Test images to check tract on (0: none).
        #[arg(long, default_value_t = 100)]
        check: usize,
        /// Folder holding the dataset (or a data root), as for host-train.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Host batch-1 latency of a device model through device-infer (median of many runs on the
    /// first MNIST test digit). A benchmark, not a test: compare with bench/latency.py.
    Latency {
        /// The device model (`.lnq8`).
        model: PathBuf,
        /// Timed runs.
        #[arg(long, default_value_t = 5000)]
        runs: usize,
        /// Also the throughput of batches of this many different images, one after the other
        /// on one thread (0: none).
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
}

/// `--arena`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ArenaArg {
    Overlap,
    Separate,
}

impl ArenaArg {
    fn plan(self) -> device_infer::writer::ArenaPlan {
        match self {
            ArenaArg::Overlap => device_infer::writer::ArenaPlan::Overlap,
            ArenaArg::Separate => device_infer::writer::ArenaPlan::Separate,
        }
    }
}

#[derive(Subcommand, Debug)]
enum GoldenAction {
    /// Quantize CASE/model.onnx (writing model.lnq8 and model.int8.onnx beside it) and record
    /// burn's logits and device-infer's int8 outputs for the first test images in
    /// CASE/golden.pb. CASE also holds the training run (CASE/run).
    Generate {
        /// The case folder (e.g. tests/golden/lenet5-like).
        case: PathBuf,
        /// Test images to record.
        #[arg(long, default_value_t = 100)]
        cases: usize,
        /// Calibration images (the first N training images).
        #[arg(long, default_value_t = 1000)]
        calib_images: usize,
        /// Folder holding MNIST (or a data root), as for host-train.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run targets on a golden set and compare with its expected outputs; prints the first
    /// differing cases and the max difference. Exits 1 when any target fails.
    Verify {
        /// Case folders (default: every case under tests/golden).
        cases: Vec<PathBuf>,
        /// burn, tract, host-int8, tract-int8, tract-exact, qemu-m0, qemu-m4, qemu-m7 or all
        /// (repeatable).
        #[arg(long, default_value = "all")]
        target: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    match Cli::parse().command {
        Command::Latency { model, runs, batch } => cmd_latency(model, runs, batch),
        Command::Golden { action } => cmd_golden(action),
        Command::IntegerOnnx {
            model,
            output,
            check,
            data_dir,
        } => cmd_integer_onnx(model, output, check, data_dir),
        Command::Deploy {
            model,
            board,
            digits,
            data_dir,
            qemu,
            plugin,
            firmware,
            selftest,
        } => {
            use export::{deploy, edge};
            let plugin =
                plugin.or_else(|| std::env::var_os("LENET_INSNCOUNT_PLUGIN").map(PathBuf::from));
            if let Some(board) = edge::find_board(&board) {
                anyhow::ensure!(
                    !selftest && firmware.is_none(),
                    "--selftest and --firmware are for the microcontroller boards, not {}",
                    board.name
                );
                let digits = test_digits(&model, data_dir.as_deref(), digits)?;
                let mut cfg = edge::Config::new(model, board, digits);
                if let Some(q) = qemu {
                    cfg.qemu = q;
                }
                cfg.plugin = plugin;
                let report = edge::deploy(&cfg)?;
                print!("{}", report.text());
                if !report.bit_exact() {
                    println!("MISMATCH between board and host:");
                    print!("{}", edge::mismatches(&report, 5));
                }
                return Ok(report.bit_exact());
            }
            let board = deploy::find_board(&board)?;
            let digits = test_digits(&model, data_dir.as_deref(), digits)?;
            let mut cfg = deploy::Config::new(model, board, digits);
            if let Some(q) = qemu {
                cfg.qemu = q;
            }
            cfg.selftest = selftest;
            if let Some(f) = firmware {
                cfg.firmware_dir = f;
            }
            // Exact counts by default, from the workspace's plugin; SysTick's if it cannot be
            // built here.
            cfg.plugin = match plugin {
                Some(p) => Some(p),
                None => match edge::build_plugin(&deploy::project_root(), &cfg.target_dir) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("note: no exact instruction count ({e:#}); SysTick's instead");
                        None
                    }
                },
            };
            let report = deploy::deploy(&cfg)?;
            print!("{}", report.text());
            if !report.bit_exact() {
                println!("MISMATCH between board and host:");
                print!("{}", deploy::mismatches(&report, 5));
            }
            Ok(report.bit_exact())
        }
        Command::Quantize { model, args } => cmd_quantize(model, args),
        Command::Check {
            model,
            target,
            sample,
            tolerance,
        } => {
            let part = match target.as_deref() {
                None => None,
                Some(t) => Some(targets::find(t).with_context(|| {
                    format!("unknown --target {t:?} (known: {})", targets::names())
                })?),
            };
            let g = graph::load(&model)?;
            let analysis = ops::analyse(&g).with_context(|| format!("{}", model.display()))?;
            let report = check::report(&g, &analysis, part);
            print!("{}", report.text);
            let mut ok = report.ok;
            let sample_path = sample.or_else(|| {
                let p = model.with_extension("sample.pb");
                p.exists().then_some(p)
            });
            match sample_path {
                None => println!("parity: no sample (write one with host-train export-onnx)"),
                Some(p) => {
                    let bytes = std::fs::read(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    let s = protos::lenet::ParitySample::decode(&bytes[..])
                        .with_context(|| format!("{}: not a parity sample", p.display()))?;
                    let onnx_sha = host_train::data::download::sha256_hex(&std::fs::read(&model)?);
                    if !s.onnx_sha256.is_empty() && s.onnx_sha256 != onnx_sha {
                        println!(
                            "warning: {} was written for another ONNX file (sha256 {}), this one is {onnx_sha}",
                            p.display(),
                            s.onnx_sha256
                        );
                    }
                    let r = parity::check(&model, &s)?;
                    let pass = r.passes(tolerance);
                    println!(
                        "parity with burn on {} images (tract 0.23): max |diff| {:.3e} ({:.2e} of the largest logit), argmax agrees {}/{}, tract correct {}/{} {}",
                        r.cases,
                        r.max_abs_diff,
                        r.max_rel_diff(),
                        r.argmax_agree,
                        r.cases,
                        r.correct,
                        r.cases,
                        if pass { "ok" } else { "FAILED" }
                    );
                    ok &= pass;
                }
            }
            println!("{}", if ok { "check passed" } else { "check FAILED" });
            Ok(ok)
        }
    }
}

/// `export quantize`'s options.
#[derive(clap::Args, Debug)]
struct QuantizeArgs {
    /// Calibration dataset (its first training images) and test set (default: the one
    /// whose images the model's input takes: MNIST for 28x28x1, CIFAR-10 for 32x32x3).
    #[arg(long, value_enum)]
    calib: Option<host_train::data::DatasetKind>,
    /// Folder holding the dataset (or a data root), as for host-train.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Calibration images (the first N training images).
    #[arg(long, default_value_t = 1000)]
    calib_images: usize,
    /// Cut each activation range to this percentile of the calibration values (e.g.
    /// 99.999) instead of min/max.
    #[arg(long)]
    percentile: Option<f64>,
    /// Test images to score (default: all).
    #[arg(long)]
    test_images: Option<usize>,
    /// The device model to write (`.lnq8`).
    #[arg(long)]
    out: PathBuf,
    /// Also write the same integer model as int8 ONNX (standard ops) and compare tract's
    /// int8 outputs with ours on the scored test images.
    #[arg(long)]
    onnx_out: Option<PathBuf>,
    /// Quantize the network's logits over their whole calibrated range instead of the range
    /// where the argmax is decided (smallest runner-up to largest runner-up plus half the
    /// span; confident winners and clear losers saturate). Use it when the int8 logits
    /// themselves matter more than the class.
    #[arg(long)]
    full_output_range: bool,
    /// The activation arena: `overlap` (the smallest: buffer 1 starts inside buffer 0 and
    /// a fused conv+pool writes over input rows it has consumed) or `separate` (two
    /// disjoint buffers).
    #[arg(long, value_enum, default_value_t = ArenaArg::Overlap)]
    arena: ArenaArg,
}

fn cmd_quantize(model: PathBuf, args: QuantizeArgs) -> Result<bool> {
    use export::quantize::{self, chw_to_hwc};
    let QuantizeArgs {
        calib,
        data_dir,
        calib_images,
        percentile,
        test_images,
        out,
        onnx_out,
        full_output_range,
        arena,
    } = args;
    let arena = arena.plan();
    let g = graph::load(&model)?;
    let input_hwc = match g.input_shape[..] {
        [_, c, h, w] => [h, w, c],
        ref s => anyhow::bail!("{}: input shape {s:?} is not NCHW", model.display()),
    };
    let (kind, size) = export::images::dataset_for(input_hwc)?;
    let kind = calib.unwrap_or(kind);
    let splits = export::images::load(kind, size, data_dir.as_deref())?;
    anyhow::ensure!(
        splits.test.shape == [input_hwc[2], input_hwc[0], input_hwc[1]],
        "{kind} images are {:?} (CHW), the model takes {:?} (HWC)",
        splits.test.shape,
        input_hwc
    );
    let to_f32 = export::parity::unit_pixels;
    let n_cal = calib_images.min(splits.train.len());
    let cal: Vec<Vec<f32>> = (0..n_cal).map(|i| to_f32(splits.train.image(i))).collect();
    let mut ranges = match percentile {
        None => quantize::calibrate(&g, cal.iter().map(Vec::as_slice))?,
        Some(p) if (50.0..=100.0).contains(&p) => quantize::calibrate_percentile(&g, &cal, p)?,
        Some(p) => anyhow::bail!("--percentile {p}: expected a value in 50..=100"),
    };
    if full_output_range {
        ranges.decision.clear();
    }
    let q = quantize::quantize(&g, &ranges)?;
    let bytes = device_infer::writer::write_planned(&q.spec, arena);
    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let aligned = device_infer::writer::AlignedBytes::new(&bytes);
    let m =
        device_infer::Model::from_bytes(aligned.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "calibrated on {n_cal} training images ({}{}); {} device layers",
        percentile.map_or("min/max per tensor".to_string(), |p| format!(
            "{p} percentile per tensor"
        )),
        if full_output_range {
            ""
        } else {
            ", logits over the decision range"
        },
        m.layers()
    );

    let n_test = test_images.unwrap_or(usize::MAX).min(splits.test.len());
    let mut ours_int8: Vec<Vec<i8>> = Vec::with_capacity(n_test);
    let mut arena = vec![0i8; m.arena_len()];
    let mut x = vec![0i8; m.input_dims().len()];
    let (mut float_ok, mut int8_ok, mut agree) = (0usize, 0usize, 0usize);
    let mut snr = vec![(0f64, 0f64); q.layers.len()];
    for i in 0..n_test {
        let img = splits.test.image(i);
        let vals = export::float::run(&g, &to_f32(img))?;
        let logits = &vals[&g.output].data;
        let fpred = export::parity::argmax(logits);
        m.quantize_input(&export::images::hwc(img, splits.test.shape), &mut x)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let trace_snr = i < 200;
        let outq = m
            .run_traced(&x, &mut arena, |l, y| {
                if trace_snr {
                    let (name, aq) = &q.layers[l as usize];
                    let f = chw_to_hwc(&vals[name]);
                    // Quantization noise inside the representable range (values outside it
                    // saturate by design: the decision range of the logits).
                    let (lo, hi) = (aq.dequantize(-128), aq.dequantize(127));
                    for (&fv, &qv) in f.iter().zip(y) {
                        let fv = fv.clamp(lo, hi);
                        let e = fv - aq.dequantize(qv);
                        snr[l as usize].0 += (fv * fv) as f64;
                        snr[l as usize].1 += (e * e) as f64;
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ipred = device_infer::argmax(outq);
        ours_int8.push(outq.to_vec());
        let label = splits.test.labels[i] as usize;
        float_ok += usize::from(fpred == label);
        int8_ok += usize::from(ipred == label);
        agree += usize::from(fpred == ipred);
    }
    println!(
        "{:<7} {:<22} {:>12} {:>10} {:>5} {:>9}",
        "layer", "kind", "output", "scale", "zp", "SNR dB*"
    );
    for (i, ((_, aq), (sig, err))) in q.layers.iter().zip(&snr).enumerate() {
        let l = m.layer_at(i as u16).map_err(|e| anyhow::anyhow!("{e}"))?;
        let o = l.output;
        println!(
            "{i:<7} {:<22} {:>12} {:>10.3e} {:>5} {:>9.1}",
            format!("{:?}", l.kind),
            format!("{}x{}x{}", o.h, o.w, o.c),
            aq.scale,
            aq.zero_point,
            10.0 * (sig / err.max(1e-30)).log10()
        );
    }
    println!("* on the first 200 test images, float values clipped to the layer's int8 range");
    println!(
        "float accuracy: {:.2}%",
        100.0 * float_ok as f64 / n_test as f64
    );
    println!(
        "int8 accuracy: {:.2}%",
        100.0 * int8_ok as f64 / n_test as f64
    );
    println!("int8 and float agree on {agree}/{n_test} test images");
    println!(
        "flash: {} bytes (device model {})",
        bytes.len(),
        out.display()
    );
    println!(
        "arena: {} bytes ({})",
        m.arena_len(),
        if m.overlaps() {
            "overlapping buffers"
        } else {
            "two separate buffers"
        }
    );
    if let Some(path) = onnx_out {
        use protos::Message;
        let proto = export::qonnx::int8_onnx(&g, &q)?;
        std::fs::write(&path, proto.encode_to_vec())
            .with_context(|| format!("cannot write {}", path.display()))?;
        let inputs: Vec<Vec<f32>> = (0..n_test).map(|i| to_f32(splits.test.image(i))).collect();
        let theirs = export::parity::tract_int8_outputs(&path, &g.input_shape, &inputs)?;
        let (max_lsb, agree) = export::parity::int8_agreement(&ours_int8, &theirs);
        println!(
            "int8 ONNX {}: tract 0.23 vs device-infer on {n_test} test images: max difference {max_lsb} LSB, argmax agrees {agree}/{n_test} ({:.2}%)",
            path.display(),
            100.0 * agree as f64 / n_test.max(1) as f64
        );
    }
    Ok(true)
}

fn cmd_golden(action: GoldenAction) -> Result<bool> {
    use export::golden::{self, Target};
    match action {
        GoldenAction::Generate {
            case,
            cases,
            calib_images,
            data_dir,
        } => {
            let cfg = host_train::train::read_config(&case.join("run"))?;
            let splits = export::images::load(cfg.dataset, cfg.image_size, data_dir.as_deref())?;
            let opts = golden::GenerateOptions {
                cases,
                calib_images,
                command: Some(format!(
                    "export golden generate {} --cases {cases} --calib-images {calib_images}",
                    case.display()
                )),
                ..Default::default()
            };
            let set = golden::generate(&case, &splits, &opts)?;
            let agree = set
                .cases
                .iter()
                .filter(|c| {
                    let q: Vec<i8> = c.int8_outputs.iter().map(|&v| v as i8).collect();
                    device_infer::argmax(&q) == c.expected_class as usize
                })
                .count();
            println!(
                "wrote {} ({} cases; int8 and float argmax agree on {agree}), {}, {}",
                case.join(golden::GOLDEN_FILE).display(),
                set.cases.len(),
                case.join("model.lnq8").display(),
                case.join("model.int8.onnx").display()
            );
            Ok(true)
        }
        GoldenAction::Verify { cases, target } => {
            let mut targets = Vec::new();
            for t in &target {
                if t == "all" {
                    targets.extend(Target::ALL);
                } else {
                    targets.push(Target::parse(t)?);
                }
            }
            let dirs = if cases.is_empty() {
                golden::cases(&export::deploy::project_root().join("tests/golden"))?
            } else {
                cases
            };
            anyhow::ensure!(!dirs.is_empty(), "no golden sets found");
            let mut ok = true;
            for dir in &dirs {
                println!("golden set {}", dir.display());
                for &t in &targets {
                    let v = golden::verify(dir, t)?;
                    println!("  {}", v.text().replace('\n', "\n  "));
                    ok &= v.pass;
                }
            }
            println!("golden {}", if ok { "passed" } else { "FAILED" });
            Ok(ok)
        }
    }
}

/// The first `n` test images of the dataset the device model's input takes (MNIST for
/// 28x28x1, CIFAR-10 for 32x32x3), in its HWC layout.
fn test_digits(
    model: &std::path::Path,
    data_dir: Option<&std::path::Path>,
    n: usize,
) -> Result<Vec<export::deploy::Digit>> {
    let bytes = std::fs::read(model).with_context(|| format!("cannot read {}", model.display()))?;
    let aligned = device_infer::writer::AlignedBytes::new(&bytes);
    let m = device_infer::Model::from_bytes(aligned.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
    let d = m.input_dims();
    let (kind, size) = export::images::dataset_for([d.h, d.w, d.c])?;
    let splits = export::images::load(kind, size, data_dir)?;
    Ok(export::images::test_digits(&splits, n))
}

fn cmd_integer_onnx(
    model: PathBuf,
    output: Option<PathBuf>,
    check: usize,
    data_dir: Option<PathBuf>,
) -> Result<bool> {
    let bytes =
        std::fs::read(&model).with_context(|| format!("cannot read {}", model.display()))?;
    let aligned = device_infer::writer::AlignedBytes::new(&bytes);
    let m = device_infer::Model::from_bytes(aligned.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
    let proto = export::integer_onnx::integer_onnx(&m)?;
    let out = output.unwrap_or_else(|| model.with_extension("integer.onnx"));
    host_train::checkpoint::write_atomic(&out, &proto.encode_to_vec())?;
    let graph = proto.graph.as_ref().map_or(0, |g| g.node.len());
    println!("wrote {} ({graph} nodes)", out.display());
    if check == 0 {
        return Ok(true);
    }
    let digits = test_digits(&model, data_dir.as_deref(), check)?;
    let pixels: Vec<&[u8]> = digits.iter().map(|d| d.pixels.as_slice()).collect();
    let ours = export::deploy::host_outputs(&m, &pixels)?;
    let theirs = export::parity::tract_integer_outputs(&m, &pixels)?;
    let same = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    println!(
        "tract on it vs device-infer: {same}/{} test images bit-exact",
        pixels.len()
    );
    Ok(same == pixels.len())
}

fn cmd_latency(model: PathBuf, runs: usize, batch: usize) -> Result<bool> {
    use device_infer::engine::{Classify, Int8, ModelFile};
    anyhow::ensure!(runs >= 10, "--runs must be at least 10");
    let file = ModelFile::read(&model)?;
    let mut engine = Int8::new(&file).with_context(|| model.display().to_string())?;
    let m = *engine.model();
    // A real digit: a '7' drawn as a vertical and a horizontal stroke if no data is around.
    let mut pixels = vec![0u8; m.input_dims().len()];
    for (i, p) in pixels.iter_mut().enumerate() {
        let (y, x) = (i / 28, i % 28);
        if (y == 6 && (6..22).contains(&x)) || ((7..24).contains(&y) && x == 21 - (y - 7) / 2) {
            *p = 255;
        }
    }
    // Through the engine's API, as an application calls it: u8 pixels in, class and scores out.
    let mut times = Vec::with_capacity(runs);
    let mut class = 0;
    for i in 0..runs + runs / 10 {
        let t = std::time::Instant::now();
        class = engine.classify(std::hint::black_box(&pixels))?.class;
        if i >= runs / 10 {
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let mut x = vec![0i8; pixels.len()];
    m.quantize_input(&pixels, &mut x)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut arena = vec![0i8; m.arena_len()];
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    // Per-layer breakdown: time between trace callbacks, summed over the runs.
    let mut per_layer = vec![0f64; m.layers() as usize];
    for _ in 0..runs {
        let mut last = std::time::Instant::now();
        m.run_traced(&x, &mut arena, |l, _| {
            let now = std::time::Instant::now();
            per_layer[l as usize] += (now - last).as_secs_f64() * 1e6;
            last = now;
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for (l, t) in per_layer.iter().enumerate() {
        let layer = m.layer_at(l as u16).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("  layer {l} {:?}: {:.1} us", layer.kind, t / runs as f64);
    }
    println!(
        "int8 batch-1 latency (device-infer on the host, 1 thread): median {:.1} us, p10 {:.1} us, p90 {:.1} us over {runs} runs (class {class})",
        pct(0.5),
        pct(0.1),
        pct(0.9)
    );
    if batch > 0 {
        // Different images (the digit shifted), classified one after the other.
        let images: Vec<Vec<u8>> = (0..batch)
            .map(|k| {
                let mut v = pixels.clone();
                v.rotate_right(k % 97);
                v
            })
            .collect();
        let rounds = (runs / batch).max(10);
        let mut per_batch = Vec::with_capacity(rounds);
        for r in 0..rounds + rounds / 10 {
            let t = std::time::Instant::now();
            for img in &images {
                std::hint::black_box(engine.classify(std::hint::black_box(img))?.class);
            }
            if r >= rounds / 10 {
                per_batch.push(t.elapsed().as_secs_f64());
            }
        }
        per_batch.sort_by(f64::total_cmp);
        let median = per_batch[per_batch.len() / 2];
        println!(
            "int8 batch-{batch} throughput (1 thread): {:.0} images/s, median batch {:.1} us over {} batches",
            batch as f64 / median,
            median * 1e6,
            per_batch.len()
        );
    }
    Ok(true)
}
