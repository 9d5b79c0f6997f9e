//! `lenet-classify`: classify digits in image files (PNG, JPEG, PGM; any size, photo or scan)
//! or raw frames from stdin, on the int8 engine or tract.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use device_infer::engine::{Classify, Int8, ModelFile, Scores};

/// Classify handwritten digits with a LeNet model.
#[derive(Parser, Debug)]
#[command(name = "lenet-classify", version, about)]
struct Args {
    /// The model: a device model (`.lnq8`) for `--engine int8`, an ONNX file for the others.
    /// Optional in a build with the model embedded (`export deploy --board linux-*`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// int8: device-infer's kernels (bit-exact with the microcontroller); tract: a float ONNX;
    /// tract-int8: the int8 ONNX of `export quantize --onnx-out`.
    #[arg(long, value_enum, default_value_t = EngineKind::Int8)]
    engine: EngineKind,
    /// Image files; `-` reads raw frames (the model's input size in bytes each, already
    /// MNIST-style) from stdin until it ends.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Use the image as it is (it must be the model's size, white ink on black), without the
    /// MNIST-style preprocessing.
    #[arg(long)]
    no_preprocess: bool,
    /// Write what the network sees, each input's 28x28 MNIST-style image, into this folder as
    /// `<input name>.28x28.png`.
    #[arg(long)]
    save_preprocessed: Option<PathBuf>,
    /// One JSON object per input instead of text.
    #[arg(long)]
    json: bool,
    /// Also time N classifications of the first input: latency percentiles and throughput.
    #[arg(long)]
    bench: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum EngineKind {
    Int8,
    Tract,
    TractInt8,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that stops early (`| head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The device model compiled in by the `embedded-model` feature.
#[cfg(feature = "embedded-model")]
const EMBEDDED_MODEL: Option<&[u8]> = Some(include_bytes!(env!("LENET_CLASSIFY_MODEL")));
#[cfg(not(feature = "embedded-model"))]
const EMBEDDED_MODEL: Option<&[u8]> = None;

#[cfg(feature = "tract")]
fn tract_engine(model: Option<&Path>) -> Result<Box<dyn Classify>> {
    let path = model.context("--engine tract and tract-int8 need --model FILE.onnx")?;
    Ok(Box::new(device_infer::engine::Tract::load(path)?))
}

#[cfg(not(feature = "tract"))]
fn tract_engine(_: Option<&Path>) -> Result<Box<dyn Classify>> {
    bail!("this lenet-classify was built without tract (cargo feature `tract`): use --engine int8")
}

/// Bracket one classification for instruction counting: the qemu-insncount plugin's `start=`
/// and `stop=` addresses (`export deploy --board linux-*`). Never inlined, so they stay calls
/// with addresses of their own; they cost a few instructions.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lenet_classify_begin() {
    std::hint::black_box(0u8);
}

/// See [`lenet_classify_begin`].
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn lenet_classify_end() {
    std::hint::black_box(1u8);
}

fn save_preprocessed(dir: &Path, input: &Path, pixels: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = input
        .file_name()
        .unwrap_or(input.as_os_str())
        .to_string_lossy();
    let path = dir.join(format!("{name}.28x28.png"));
    let side = lenet_classify::SIDE;
    image::GrayImage::from_raw(side, side, pixels.to_vec())
        .context("a 28x28 image")?
        .save(&path)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn run() -> Result<()> {
    let a = Args::parse();
    let file;
    let mut engine: Box<dyn Classify> = match a.engine {
        EngineKind::Int8 => {
            let name;
            (file, name) = match (&a.model, EMBEDDED_MODEL) {
                (Some(path), _) => (ModelFile::read(path)?, path.display().to_string()),
                (None, Some(bytes)) => (ModelFile::from_bytes(bytes), "the embedded model".into()),
                (None, None) => bail!("--model FILE is needed (this build embeds no model)"),
            };
            Box::new(Int8::new(&file).with_context(|| name)?)
        }
        EngineKind::Tract | EngineKind::TractInt8 => tract_engine(a.model.as_deref())?,
    };
    let shape = engine.input_shape();
    if shape[0] != 1 {
        bail!(
            "the model takes {}x{}x{} images; lenet-classify reads grey digits (one channel)",
            shape[2],
            shape[1],
            shape[0]
        );
    }
    let mut stdout = std::io::stdout().lock();
    let mut first: Option<Vec<u8>> = None;
    for input in &a.inputs {
        let frames: Vec<(String, Vec<u8>)> = if input.as_os_str() == "-" {
            let mut all = Vec::new();
            std::io::stdin()
                .read_to_end(&mut all)
                .context("cannot read stdin")?;
            let n = engine.input_len();
            if all.is_empty() || !all.len().is_multiple_of(n) {
                bail!(
                    "stdin holds {} bytes: not a whole number of {n}-byte frames ({}x{})",
                    all.len(),
                    shape[2],
                    shape[1]
                );
            }
            all.chunks(n)
                .enumerate()
                .map(|(i, f)| (format!("stdin frame {i}"), f.to_vec()))
                .collect()
        } else {
            let bytes =
                std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
            let img =
                lenet_classify::decode(&bytes).with_context(|| input.display().to_string())?;
            let pixels = if a.no_preprocess {
                if img.dimensions() != (shape[2] as u32, shape[1] as u32) {
                    bail!(
                        "{}: {}x{}, the model takes {}x{} (drop --no-preprocess)",
                        input.display(),
                        img.width(),
                        img.height(),
                        shape[2],
                        shape[1]
                    );
                }
                img.into_raw()
            } else {
                if (shape[1], shape[2]) != (28, 28) {
                    bail!(
                        "MNIST-style preprocessing makes 28x28 images; the model takes {}x{}",
                        shape[2],
                        shape[1]
                    );
                }
                let pixels = lenet_classify::mnist_style(&img)
                    .with_context(|| input.display().to_string())?
                    .pixels;
                if let Some(dir) = &a.save_preprocessed {
                    save_preprocessed(dir, input, &pixels)?;
                }
                pixels
            };
            vec![(input.display().to_string(), pixels)]
        };
        for (name, pixels) in frames {
            lenet_classify_begin();
            let out = engine.classify(&pixels);
            lenet_classify_end();
            let out = out?;
            let scores = out.scores.values();
            if a.json {
                let mut j =
                    serde_json::json!({"input": name, "class": out.class, "scores": scores});
                if let Scores::Int8 { codes, zero_point } = &out.scores {
                    j["codes"] = serde_json::json!(codes);
                    j["zero_point"] = serde_json::json!(zero_point);
                }
                writeln!(stdout, "{j}")?;
            } else {
                let s: Vec<String> = scores.iter().map(|v| format!("{v:.3}")).collect();
                writeln!(stdout, "{name}: {}  scores [{}]", out.class, s.join(", "))?;
            }
            first.get_or_insert(pixels);
        }
    }
    if let (Some(n), Some(pixels)) = (a.bench, first) {
        if n == 0 {
            bail!("--bench needs at least one run");
        }
        for _ in 0..n.min(100) {
            engine.classify(&pixels)?;
        }
        let mut times = Vec::with_capacity(n);
        let t0 = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            std::hint::black_box(engine.classify(std::hint::black_box(&pixels))?);
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let total = t0.elapsed().as_secs_f64();
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        eprintln!(
            "bench ({:?}, {n} runs, batch 1): p50 {:.1} us, p99 {:.1} us, {:.0} images/s",
            a.engine,
            pct(0.5),
            pct(0.99),
            n as f64 / total
        );
    }
    Ok(())
}
