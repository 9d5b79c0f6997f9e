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
        /// Largest tolerated |tract - burn| logit difference.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f32,
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
                    let onnx_sha = sha256_hex(&std::fs::read(&model)?);
                    if !s.onnx_sha256.is_empty() && s.onnx_sha256 != onnx_sha {
                        println!(
                            "warning: {} was written for another ONNX file (sha256 {}), this one is {onnx_sha}",
                            p.display(),
                            s.onnx_sha256
                        );
                    }
                    let r = parity::check(&model, &s)?;
                    let pass = r.max_abs_diff <= tolerance && r.argmax_agree == r.cases;
                    println!(
                        "parity with burn on {} images (tract 0.23): max |diff| {:.3e}, argmax agrees {}/{}, tract correct {}/{} {}",
                        r.cases,
                        r.max_abs_diff,
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

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
