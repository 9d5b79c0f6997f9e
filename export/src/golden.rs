//! Golden sets: one trained model, fixed inputs, and the answers every target must reproduce.
//!
//! A case folder (`tests/golden/<case>/`) holds the training run (`run/`), its float ONNX
//! (`model.onnx`), and what [`generate`] writes beside them: the device model (`model.lnq8`),
//! the same integer model as int8 ONNX (`model.int8.onnx`) and `golden.pb`
//! (`protos::lenet::GoldenSet`: inputs, burn's float logits, device-infer's int8 outputs,
//! tolerances, file hashes, tool versions). [`verify`] runs one [`Target`] on the inputs and
//! compares.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{Device, Tensor};
use protos::Message;
use protos::lenet::{GoldenCase, GoldenSet, Tolerances};

use crate::deploy;
use host_train::checkpoint::write_atomic;

/// The golden file's name inside a case folder.
pub const GOLDEN_FILE: &str = "golden.pb";
const ONNX: &str = "model.onnx";
const DEVICE_MODEL: &str = "model.lnq8";
const INT8_ONNX: &str = "model.int8.onnx";

/// What can be checked against a golden set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// burn (host-train) on the run's checkpoint: float logits.
    Burn,
    /// tract on the float ONNX: float logits.
    Tract,
    /// device-infer on the host: int8 outputs, bit-exact.
    HostInt8,
    /// tract on the int8 ONNX (QLinearConv / QLinearMatMul): an independent int8 run.
    TractInt8,
    /// tract on the integer verification graph of the device model
    /// ([`crate::integer_onnx`], built in memory from `model.lnq8`): int8 outputs, bit-exact.
    TractExact,
    /// The firmware on an emulated Cortex-M0 (micro:bit): int8 outputs, bit-exact.
    QemuM0,
    /// The firmware on an emulated Cortex-M4F (mps2-an386): int8 outputs, bit-exact.
    QemuM4,
    /// The firmware on an emulated Cortex-M7 (mps2-an500): int8 outputs, bit-exact.
    QemuM7,
}

impl Target {
    /// Every target, in the order `verify --target all` runs them.
    pub const ALL: [Target; 8] = [
        Target::Burn,
        Target::Tract,
        Target::HostInt8,
        Target::TractInt8,
        Target::TractExact,
        Target::QemuM0,
        Target::QemuM4,
        Target::QemuM7,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Burn => "burn",
            Target::Tract => "tract",
            Target::HostInt8 => "host-int8",
            Target::TractInt8 => "tract-int8",
            Target::TractExact => "tract-exact",
            Target::QemuM0 => "qemu-m0",
            Target::QemuM4 => "qemu-m4",
            Target::QemuM7 => "qemu-m7",
        }
    }

    /// The board a QEMU target runs on.
    pub fn board(self) -> Option<&'static str> {
        match self {
            Target::QemuM0 => Some("microbit"),
            Target::QemuM4 => Some("mps2-an386"),
            Target::QemuM7 => Some("mps2-an500"),
            _ => None,
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Result<Target> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .with_context(|| {
                let names: Vec<_> = Target::ALL.iter().map(|t| t.name()).collect();
                format!("unknown target {s:?} (known: {}, all)", names.join(", "))
            })
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(host_train::data::download::sha256_hex(&bytes))
}

fn as_i8(b: &[u8]) -> Vec<i8> {
    b.iter().map(|&v| v as i8).collect()
}

/// burn's logits for raw pixels (NCHW batch of the run's model).
fn burn_logits(run_dir: &Path, shape: [usize; 3], pixels: &[&[u8]]) -> Result<Vec<Vec<f32>>> {
    let device = Device::flex();
    let (_, model) = host_train::train::load_run_model(run_dir, &device)?;
    let [h, w, c] = shape;
    let n = pixels.len();
    let mut data = Vec::with_capacity(n * h * w * c);
    for p in pixels {
        // HWC -> CHW (identical for one channel).
        for ch in 0..c {
            for i in 0..h * w {
                data.push(p[i * c + ch] as f32 / 255.0);
            }
        }
    }
    let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(data, [n, c, h, w]), &device);
    let y = model.forward(x);
    let [_, k] = y.dims();
    let v: Vec<f32> = y.into_data().iter::<f32>().collect();
    Ok((0..n).map(|i| v[i * k..(i + 1) * k].to_vec()).collect())
}

/// device-infer's outputs for raw pixels, or with `exact`, tract's on the model's integer
/// verification graph.
fn host_int8(model_path: &Path, pixels: &[&[u8]], exact: bool) -> Result<Vec<Vec<i8>>> {
    let bytes = std::fs::read(model_path)
        .with_context(|| format!("cannot read {}", model_path.display()))?;
    let aligned = device_infer::writer::AlignedBytes::new(&bytes);
    let m = device_infer::Model::from_bytes(aligned.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", model_path.display()))?;
    if exact {
        crate::parity::tract_integer_outputs(&m, pixels)
    } else {
        deploy::host_outputs(&m, pixels)
    }
}

/// Options of [`generate`].
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Test images to record (the first N).
    pub cases: usize,
    /// Calibration images (the first N training images, min/max).
    pub calib_images: usize,
    /// The command line to record as the generator (default: the one for
    /// `tests/golden/<folder name>`).
    pub command: Option<String>,
    /// The device model's arena plan.
    pub arena: device_infer::writer::ArenaPlan,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            cases: 100,
            calib_images: 1000,
            command: None,
            arena: device_infer::writer::ArenaPlan::Overlap,
        }
    }
}

/// Quantizes `dir/model.onnx` (writing `model.lnq8` and `model.int8.onnx`) and records the
/// expected outputs of the first test images in `dir/golden.pb`. Deterministic: the same
/// inputs give the same bytes.
pub fn generate(
    dir: &Path,
    splits: &host_train::data::Splits,
    opts: &GenerateOptions,
) -> Result<GoldenSet> {
    let onnx = dir.join(ONNX);
    let run_dir = dir.join("run");
    let g = crate::graph::load(&onnx)?;
    let n_cal = opts.calib_images.min(splits.train.len());
    let cal: Vec<Vec<f32>> = (0..n_cal)
        .map(|i| crate::parity::unit_pixels(splits.train.image(i)))
        .collect();
    let ranges = crate::quantize::calibrate(&g, cal.iter().map(Vec::as_slice))?;
    let q = crate::quantize::quantize(&g, &ranges)?;
    let device_model = dir.join(DEVICE_MODEL);
    write_atomic(
        &device_model,
        &device_infer::writer::write_planned(&q.spec, opts.arena),
    )?;
    let int8_onnx = dir.join(INT8_ONNX);
    write_atomic(
        &int8_onnx,
        &crate::qonnx::int8_onnx(&g, &q)?.encode_to_vec(),
    )?;

    let [c, h, w] = splits.test.shape;
    let n = opts.cases.min(splits.test.len());
    // The device's HWC order (the golden file's and the firmware's).
    let hwc: Vec<Vec<u8>> = (0..n)
        .map(|i| crate::images::hwc(splits.test.image(i), splits.test.shape))
        .collect();
    let pixels: Vec<&[u8]> = hwc.iter().map(Vec::as_slice).collect();
    let logits = burn_logits(&run_dir, [h, w, c], &pixels)?;
    let int8 = host_int8(&device_model, &pixels, false)?;
    let cfg = host_train::train::read_config(&run_dir)?;
    let cases = (0..n)
        .map(|i| GoldenCase {
            index: i as u64,
            label: splits.test.labels[i] as u32,
            pixels: pixels[i].to_vec(),
            float_logits: logits[i].clone(),
            int8_outputs: int8[i].iter().map(|&v| v as u8).collect(),
            expected_class: crate::parity::argmax(&logits[i]) as u32,
        })
        .collect();
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let set = GoldenSet {
        name: name.clone(),
        generator: opts.command.clone().unwrap_or_else(|| {
            format!("export golden generate tests/golden/{name} --cases {n} --calib-images {n_cal}")
        }),
        onnx_sha256: sha256_file(&onnx)?,
        device_model_sha256: sha256_file(&device_model)?,
        int8_onnx_sha256: sha256_file(&int8_onnx)?,
        tool_versions: [
            ("export", env!("CARGO_PKG_VERSION")),
            ("host-train", env!("CARGO_PKG_VERSION")),
            ("device-infer", env!("CARGO_PKG_VERSION")),
            ("burn", "0.22.1"),
            ("burn-onnx", "0.22.0"),
            ("tract-onnx", "0.23.9"),
            ("device-model-format", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        seed: cfg.seed,
        dataset: cfg.dataset.to_string(),
        input_shape: vec![h as u32, w as u32, c as u32],
        tolerances: Some(Tolerances {
            // 1e-5 of the largest logit (at least 1e-5): float sums in another order differ
            // relative to the values summed (the CMSIS-NN net's logits reach 30).
            float_max_abs: 1e-5 * logits.iter().flatten().fold(1f32, |m, v| m.max(v.abs())),
            int8_max_lsb: 0,
            // tract requantizes with one float rounding, we with TFLM's two: a hidden layer
            // may differ by 1 LSB, which the logits' fine step (the decision range) can turn
            // into 2 output LSB (0.12 logits on the fixture).
            independent_int8_max_lsb: 2,
            independent_int8_min_argmax: 0.99,
        }),
        cases,
    };
    write_atomic(&dir.join(GOLDEN_FILE), &set.encode_to_vec())?;
    Ok(set)
}

/// Reads `dir/golden.pb` and checks that the model files beside it are the ones it was
/// generated for.
pub fn load(dir: &Path) -> Result<GoldenSet> {
    let path = dir.join(GOLDEN_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let set = GoldenSet::decode(&bytes[..])
        .with_context(|| format!("{}: not a golden set", path.display()))?;
    ensure!(
        !set.cases.is_empty() && set.tolerances.is_some() && set.input_shape.len() == 3,
        "{}: incomplete golden set (no cases, tolerances or input shape)",
        path.display()
    );
    let dims: Vec<usize> = set.input_shape.iter().map(|&d| d as usize).collect();
    let len = crate::graph::elements(&dims).with_context(|| {
        format!(
            "{}: input shape {dims:?} has too many values",
            path.display()
        )
    })?;
    for (i, c) in set.cases.iter().enumerate() {
        ensure!(
            c.pixels.len() == len && !c.float_logits.is_empty(),
            "{}: case {i} has {} pixels (the input shape needs {len})",
            path.display(),
            c.pixels.len()
        );
    }
    for (file, want) in [
        (ONNX, &set.onnx_sha256),
        (DEVICE_MODEL, &set.device_model_sha256),
        (INT8_ONNX, &set.int8_onnx_sha256),
    ] {
        let have = sha256_file(&dir.join(file))?;
        if &have != want {
            bail!(
                "{}: {file} is not the file this golden set was generated for (sha256 {have}, expected {want}); regenerate with `{}`",
                path.display(),
                set.generator
            );
        }
    }
    Ok(set)
}

/// The outcome of one target.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Which target.
    pub target: Target,
    /// Cases run.
    pub cases: usize,
    /// Cases within tolerance.
    pub within: usize,
    /// Largest difference (absolute for logits, LSB for int8).
    pub max_diff: f64,
    /// Cases whose argmax equals the expected one (float targets: the float class; int8
    /// targets: the argmax of the expected int8 outputs).
    pub argmax_agree: usize,
    /// Whether the target passed.
    pub pass: bool,
    /// The first differing cases, for the report.
    pub first_failures: Vec<String>,
}

impl Verdict {
    /// One line, plus the first failures when it did not pass.
    pub fn text(&self) -> String {
        let unit = match self.target {
            Target::Burn | Target::Tract => format!("max |diff| {:.2e}", self.max_diff),
            _ => format!("max diff {} LSB", self.max_diff),
        };
        let mut s = format!(
            "{:<10} {}/{} cases within tolerance, {unit}, argmax {}/{} {}",
            self.target.name(),
            self.within,
            self.cases,
            self.argmax_agree,
            self.cases,
            if self.pass { "ok" } else { "FAILED" }
        );
        for f in &self.first_failures {
            let _ = write!(s, "\n  {f}");
        }
        s
    }
}

/// Runs `target` on the golden set in `dir` and compares with its expected outputs.
pub fn verify(dir: &Path, target: Target) -> Result<Verdict> {
    let set = load(dir)?;
    let tol = set.tolerances.unwrap_or_default();
    let shape = [
        set.input_shape[0] as usize,
        set.input_shape[1] as usize,
        set.input_shape[2] as usize,
    ];
    let pixels: Vec<&[u8]> = set.cases.iter().map(|c| &c.pixels[..]).collect();
    let n = set.cases.len();
    let mut first_failures = Vec::new();
    let mut fail = |i: usize, what: String| {
        if first_failures.len() < 5 {
            first_failures.push(format!(
                "case {i} (test image {}): {what}",
                set.cases[i].index
            ));
        }
    };
    let (within, max_diff, agree, pass) = match target {
        Target::Burn | Target::Tract => {
            let got = if target == Target::Burn {
                burn_logits(&dir.join("run"), shape, &pixels)?
            } else {
                let [h, w, c] = shape;
                let flat: Vec<f32> = pixels
                    .iter()
                    .flat_map(|p| crate::images::chw_unit(p, shape))
                    .collect();
                crate::parity::tract_logits(&dir.join(ONNX), &flat, &[n, c, h, w])?
            };
            let (mut within, mut max, mut agree) = (0, 0f64, 0);
            for (i, (c, g)) in set.cases.iter().zip(&got).enumerate() {
                let d = c
                    .float_logits
                    .iter()
                    .zip(g)
                    .map(|(a, b)| (a - b).abs() as f64)
                    .fold(
                        if g.len() == c.float_logits.len() {
                            0.0
                        } else {
                            f64::INFINITY
                        },
                        f64::max,
                    );
                max = max.max(d);
                let same = crate::parity::argmax(g) == c.expected_class as usize;
                agree += usize::from(same);
                if d <= tol.float_max_abs as f64 && same {
                    within += 1;
                } else {
                    fail(
                        i,
                        format!("expected {:?}\n    got      {g:?}", c.float_logits),
                    );
                }
            }
            (within, max, agree, within == n)
        }
        Target::HostInt8
        | Target::TractInt8
        | Target::TractExact
        | Target::QemuM0
        | Target::QemuM4
        | Target::QemuM7 => {
            let got: Vec<Vec<i8>> = match target {
                Target::HostInt8 => host_int8(&dir.join(DEVICE_MODEL), &pixels, false)?,
                Target::TractExact => host_int8(&dir.join(DEVICE_MODEL), &pixels, true)?,
                Target::TractInt8 => {
                    let [h, w, c] = shape;
                    let inputs: Vec<Vec<f32>> = pixels
                        .iter()
                        .map(|p| crate::images::chw_unit(p, shape))
                        .collect();
                    crate::parity::tract_int8_outputs(&dir.join(INT8_ONNX), &[1, c, h, w], &inputs)?
                }
                _ => {
                    let board = deploy::find_board(target.board().unwrap_or("mps2-an386"))?;
                    let model = dir.join(DEVICE_MODEL);
                    let bytes = std::fs::read(&model)
                        .with_context(|| format!("cannot read {}", model.display()))?;
                    let aligned = device_infer::writer::AlignedBytes::new(&bytes);
                    let m = device_infer::Model::from_bytes(aligned.as_bytes())
                        .map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
                    // As many cases per firmware as fit the board's flash (at least one, or
                    // the refusal with its numbers).
                    let per_run =
                        deploy::digits_that_fit(&board, bytes.len(), m.input_dims().len())
                            .clamp(1, set.cases.len().max(1));
                    deploy::check_fit(&board, &m, bytes.len(), per_run)?;
                    let mut outputs = Vec::with_capacity(n);
                    for chunk in set.cases.chunks(per_run) {
                        let digits = chunk
                            .iter()
                            .map(|c| deploy::Digit {
                                label: c.label as u8,
                                pixels: c.pixels.clone(),
                            })
                            .collect();
                        let cfg = deploy::Config::new(model.clone(), board, digits);
                        outputs.extend(
                            deploy::deploy(&cfg)?
                                .run
                                .digits
                                .into_iter()
                                .map(|d| d.outputs),
                        );
                    }
                    outputs
                }
            };
            let limit = if target == Target::TractInt8 {
                tol.independent_int8_max_lsb
            } else {
                tol.int8_max_lsb
            } as i32;
            let (mut within, mut max, mut agree) = (0, 0i32, 0);
            for (i, (c, g)) in set.cases.iter().zip(&got).enumerate() {
                let want = as_i8(&c.int8_outputs);
                let d = if want.len() == g.len() {
                    want.iter()
                        .zip(g)
                        .map(|(&a, &b)| (a as i32 - b as i32).abs())
                        .max()
                        .unwrap_or(0)
                } else {
                    i32::MAX
                };
                max = max.max(d);
                let same = device_infer::argmax(&want) == device_infer::argmax(g);
                agree += usize::from(same);
                if d <= limit && (same || target == Target::TractInt8) {
                    within += 1;
                } else {
                    fail(i, format!("expected {want:?}\n    got      {g:?}"));
                }
            }
            ensure!(
                got.len() == n,
                "{}: {} outputs for {n} cases",
                target.name(),
                got.len()
            );
            let pass = within == n
                && (target != Target::TractInt8
                    || agree as f64 >= tol.independent_int8_min_argmax * n as f64);
            (within, max as f64, agree, pass)
        }
    };
    Ok(Verdict {
        target,
        cases: n,
        within,
        max_diff,
        argmax_agree: agree,
        pass,
        first_failures,
    })
}

/// The case folders under `root` that hold a golden set.
pub fn cases(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).with_context(|| format!("cannot read {}", root.display()))? {
        let p = e?.path();
        if p.join(GOLDEN_FILE).is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}
