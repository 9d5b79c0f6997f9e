//! The `host-train` command line.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::compare::{self, CompareOptions, Grid};
use crate::data::augment::Augment;
use crate::data::{self, DatasetKind};
use crate::models::{ModelKind, ModelOptions, PoolKind};
use crate::optim::{OptimizerKind, Schedule};
use crate::summary;
use crate::train::{self, RunOptions, TrainConfig};

/// Train LeNet-style classifiers with burn.
#[derive(Parser, Debug)]
#[command(name = "host-train", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model (or continue a run with --resume) and print its test accuracy.
    Train(Box<TrainArgs>),
    /// Test accuracy and confusion matrix of a trained run.
    Eval(EvalArgs),
    /// Which datasets are present where, and whether their checksums verify.
    Datasets(DataArgs),
    /// Write a dataset's train and test splits as NumPy `.npy` files (u8 NCHW images, u8
    /// labels), as host-train trains on them: for other frameworks (scripts/gpu-check.sh).
    Dump(DumpArgs),
    /// Per-layer output shape, parameters, MACs and activation bytes of a model.
    Summary(SummaryArgs),
    /// Plot test accuracy against iterations of one or more runs into one PNG or SVG.
    Plot(PlotArgs),
    /// Train a grid of models x optimizers x learning rates (x seeds) and draw the seed's
    /// comparison figures; an interrupted grid resumes, finished cells are skipped.
    Compare(Box<CompareArgs>),
    /// Export a trained run to ONNX (logits out), with a parity sample beside it.
    ExportOnnx(ExportOnnxArgs),
}

#[derive(Args, Debug)]
struct ExportOnnxArgs {
    /// A run folder written by `train`.
    #[arg(long)]
    run: PathBuf,
    /// The ONNX file to write; the parity sample goes beside it as `<name>.sample.pb`.
    #[arg(long)]
    out: PathBuf,
    /// Test images (with burn's logits) in the parity sample.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// Export a dynamic batch axis instead of a static batch of 1.
    #[arg(long)]
    dynamic_batch: bool,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// A grid file (TOML, the fields of `grid.toml`); flags given here override it.
    #[arg(long)]
    grid: Option<PathBuf>,
    /// The dataset [default: mnist].
    #[arg(long, value_enum)]
    dataset: Option<DatasetKind>,
    /// The networks, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    models: Vec<ModelKind>,
    /// The optimizers, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    optimizers: Vec<OptimizerKind>,
    /// The learning rates, comma-separated.
    #[arg(long, value_delimiter = ',')]
    lrs: Vec<f64>,
    /// Optimizer steps per cell.
    #[arg(long)]
    iterations: Option<usize>,
    /// Passes over the training set per cell, without --iterations [default: 1].
    #[arg(long)]
    epochs: Option<usize>,
    /// Evaluate on the test set every N steps [default: 20 evaluations per cell].
    #[arg(long)]
    eval_every: Option<usize>,
    /// Seeds per setting (the lines become means with a ± sd band) [default: 1].
    #[arg(long)]
    seeds: Option<usize>,
    /// The first seed [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Images per step [default: 64].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Side of the flowers' square input [default: 224].
    #[arg(long)]
    image_size: Option<usize>,
    /// Augment colour images (see `train --augment`).
    #[arg(long, value_enum)]
    augment: Option<AugmentKind>,
    /// The grid's folder: a run folder per cell, the summary and the figures.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

impl CompareArgs {
    /// The grid: the file's, with the flags given on top.
    fn grid(&self) -> Result<Grid> {
        let mut g = match &self.grid {
            Some(p) => Grid::read(p)?,
            None => Grid::new(DatasetKind::Mnist, vec![], vec![], vec![]),
        };
        if let Some(d) = self.dataset {
            g.dataset = d;
        }
        if !self.models.is_empty() {
            g.models = self.models.clone();
        }
        if !self.optimizers.is_empty() {
            g.optimizers = self.optimizers.clone();
        }
        if !self.lrs.is_empty() {
            g.lrs = self.lrs.clone();
        }
        if self.iterations.is_some() {
            g.iterations = self.iterations;
        }
        if let Some(e) = self.epochs {
            g.epochs = e;
            g.iterations = self.iterations;
        }
        g.eval_every = self.eval_every.or(g.eval_every);
        g.seeds = self.seeds.unwrap_or(g.seeds);
        g.seed = self.seed.unwrap_or(g.seed);
        g.batch_size = self.batch_size.unwrap_or(g.batch_size);
        g.train_limit = self.train_limit.or(g.train_limit);
        g.test_limit = self.test_limit.or(g.test_limit);
        g.image_size = self.image_size.or(g.image_size);
        if let Some(a) = self.augment {
            g.augment = a.policy(4, 0.35);
        }
        Ok(g)
    }
}

#[derive(Args, Debug)]
struct PlotArgs {
    /// Run folders to compare (each labelled by its folder name).
    #[arg(long = "run", required = true)]
    runs: Vec<PathBuf>,
    /// The figure to write: `.png` or `.svg`.
    #[arg(long)]
    out: PathBuf,
    /// Also draw training accuracy (dashed).
    #[arg(long)]
    train: bool,
    /// Title of the figure.
    #[arg(long, default_value = "test accuracy")]
    title: String,
}

/// Where the data is.
#[derive(Args, Debug, Clone)]
struct DataArgs {
    /// Folder holding the dataset's files, or a data root holding `mnist/`, `cifar10/`,
    /// `oxflower17/` (else
    /// $HOST_TRAIN_DATA_DIR, else ./data; downloaded if nowhere).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The compute device.
#[derive(Args, Debug, Clone)]
struct DeviceArgs {
    /// Where tensors live: flex (pure-Rust CPU), or a GPU backend compiled in with
    /// `--features cuda` / `--features wgpu`.
    #[arg(long, value_enum, default_value_t = DeviceKind::Flex)]
    device: DeviceKind,
    /// CPU threads for the flex backend (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum AugmentKind {
    None,
    CropFlip,
    ResizedCropFlip,
}

impl AugmentKind {
    fn policy(self, pad: usize, min_scale: f64) -> Augment {
        match self {
            AugmentKind::None => Augment::None,
            AugmentKind::CropFlip => Augment::CropFlip { pad },
            AugmentKind::ResizedCropFlip => Augment::ResizedCropFlip { min_scale },
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceKind {
    Flex,
    Cuda,
    Wgpu,
}

impl DeviceArgs {
    fn device(&self) -> Result<Device> {
        if let Some(t) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build_global()
                .context("cannot set up the thread pool")?;
        }
        match self.device {
            DeviceKind::Flex => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => probe(Device::cuda(0), "cuda", "libcuda (the NVIDIA driver)"),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => probe(
                Device::wgpu(Default::default()),
                "wgpu",
                "a Vulkan, Metal or DX12 adapter",
            ),
            #[allow(unreachable_patterns)]
            other => bail!(
                "--device {} is not compiled in: rebuild with `cargo build --release -p host-train --features {}`",
                format!("{other:?}").to_lowercase(),
                format!("{other:?}").to_lowercase()
            ),
        }
    }
}

/// Runs one tiny operation on a GPU device, so that a missing driver or adapter is an error
/// here rather than a panic from the backend's worker thread in the middle of a run.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn probe(device: Device, name: &str, needs: &str) -> Result<Device> {
    let d = device.clone();
    let ok = std::panic::catch_unwind(move || {
        burn::tensor::Tensor::<1>::ones([4], &d)
            .sum()
            .into_scalar::<f32>()
    });
    match ok {
        Ok(4.0) => Ok(device),
        Ok(v) => bail!("--device {name}: a test sum gave {v}, not 4"),
        Err(_) => bail!(
            "--device {name}: the device did not start (it needs {needs}; the backend's message is above)"
        ),
    }
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// The network.
    #[arg(long, value_enum, default_value_t = ModelKind::Lenet5Like)]
    model: ModelKind,
    /// The dataset.
    #[arg(long, value_enum, default_value_t = DatasetKind::Mnist)]
    dataset: DatasetKind,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Passes over the training set [default: 1].
    #[arg(long)]
    epochs: Option<usize>,
    /// Total optimizer steps (overrides --epochs).
    #[arg(long)]
    iterations: Option<usize>,
    /// The optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    optimizer: OptimizerKind,
    /// Learning rate (default: one that suits the optimizer: sgd 0.1, momentum 0.01, adam and
    /// rmsprop 1e-3, adagrad 0.01).
    #[arg(long)]
    lr: Option<f64>,
    /// L2 penalty on all weights.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = Schedule::Constant)]
    schedule: Schedule,
    /// Per-epoch factor of the exp-decay schedule.
    #[arg(long, default_value_t = 0.9)]
    lr_decay: f64,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed of weight initialisation and data order; a CPU run is reproducible bit for bit
    /// with the same seed and --threads.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Evaluate on the test set every N iterations (0: once per epoch).
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    /// Write a checkpoint every N iterations (0: once per epoch).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
    /// Train on the first N training images only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Augment: translate each training image by up to N pixels at random (0: off).
    #[arg(long, default_value_t = 0)]
    augment_shift: usize,
    /// Augment colour images: `crop-flip` (pad, random crop, flip; CIFAR-10) or
    /// `resized-crop-flip` (random area/aspect crop resized back, flip; the flowers).
    #[arg(long, value_enum, default_value_t = AugmentKind::None)]
    augment: AugmentKind,
    /// Zeros padded on each side before a `crop-flip` crop.
    #[arg(long, default_value_t = 4)]
    augment_pad: usize,
    /// Smallest area fraction of a `resized-crop-flip` crop.
    #[arg(long, default_value_t = 0.35)]
    augment_min_scale: f64,
    /// Side of the square input for the flowers (photos are resized to it) [default: 224].
    #[arg(long)]
    image_size: Option<usize>,
    /// The LeNets' pooling [default: max for lenet5-like, avg for lenet5].
    #[arg(long, value_enum)]
    pool: Option<PoolKind>,
    /// The LeNets' feature maps as C1,C2 [default: 6,16].
    #[arg(long, value_parser = parse_filters)]
    filters: Option<[usize; 2]>,
    /// Run folder (default: runs/<model>-<dataset>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start from the weights of this earlier run of the same network and data (fine-tuning,
    /// or a warm restart with a new schedule); the optimizer starts fresh.
    #[arg(long, conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (its config is reused;
    /// --epochs may extend it).
    #[arg(long, conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A run folder written by `train`.
    #[arg(long)]
    run: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
struct DumpArgs {
    /// The dataset.
    #[arg(long, value_enum)]
    dataset: DatasetKind,
    #[command(flatten)]
    data: DataArgs,
    /// Side of the square input for the flowers [default: 224].
    #[arg(long)]
    image_size: Option<usize>,
    /// `npy`: `train-images.npy`, `train-labels.npy`, `test-images.npy`, `test-labels.npy`;
    /// `jpeg`: the flowers as a resized class-folder copy (same names, so the same split), small
    /// enough to carry to a machine without the originals.
    #[arg(long, value_enum, default_value_t = DumpFormat::Npy)]
    format: DumpFormat,
    /// JPEG quality of `--format jpeg`.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// The folder to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum DumpFormat {
    Npy,
    Jpeg,
}

#[derive(Args, Debug)]
struct SummaryArgs {
    /// The network.
    #[arg(long, value_enum, default_value_t = ModelKind::Lenet5Like)]
    model: ModelKind,
    /// Input size as WxHxC (e.g. 28x28x1).
    #[arg(long, default_value = "28x28x1", value_parser = parse_input)]
    input: [usize; 3],
    /// Output classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// The LeNets' pooling.
    #[arg(long, value_enum)]
    pool: Option<PoolKind>,
    /// The LeNets' feature maps as C1,C2 [default: 6,16].
    #[arg(long, value_parser = parse_filters)]
    filters: Option<[usize; 2]>,
}

/// Parses `C1,C2` feature-map counts.
fn parse_filters(s: &str) -> Result<[usize; 2], String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected two counts like 6,16, got {s:?}"))?;
    match v.as_slice() {
        [a, b] if *a > 0 && *b > 0 => Ok([*a, *b]),
        _ => Err(format!("expected two positive counts like 6,16, got {s:?}")),
    }
}

/// Parses `WxHxC` (or `WxH`, one channel) into `[C, H, W]`.
fn parse_input(s: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = s.split('x').collect();
    let nums: Result<Vec<usize>, _> = parts.iter().map(|p| p.trim().parse::<usize>()).collect();
    match nums.as_deref() {
        Ok([w, h, c]) if *w > 0 && *h > 0 && *c > 0 => Ok([*c, *h, *w]),
        Ok([w, h]) if *w > 0 && *h > 0 => Ok([1, *h, *w]),
        _ => Err(format!("expected WxHxC like 28x28x1, got {s:?}")),
    }
}

/// Runs the command line.
pub fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Train(a) => cmd_train(*a),
        Command::Eval(a) => cmd_eval(a),
        Command::Datasets(a) => cmd_datasets(a),
        Command::Dump(a) => cmd_dump(a),
        Command::Compare(a) => cmd_compare(*a),
        Command::Plot(a) => {
            let metrics = a
                .runs
                .iter()
                .map(|r| train::read_metrics(r))
                .collect::<Result<Vec<_>>>()?;
            let runs: Vec<(String, &[train::MetricsRow])> = a
                .runs
                .iter()
                .zip(&metrics)
                .map(|(r, rows)| {
                    let label = r.file_name().map_or_else(
                        || r.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    (label, rows.as_slice())
                })
                .collect();
            let fig = crate::figures::accuracy_figure(&a.title, &runs, a.train);
            let bytes = match a.out.extension().and_then(|e| e.to_str()) {
                Some("png") => fig.png()?,
                Some("svg") => fig.svg()?.into_bytes(),
                _ => bail!("--out {}: name a .png or .svg file", a.out.display()),
            };
            crate::checkpoint::write_atomic(&a.out, &bytes)?;
            eprintln!("wrote {}", a.out.display());
            Ok(())
        }
        Command::ExportOnnx(a) => {
            let cfg = train::read_config(&a.run)?;
            let data = load_data(&cfg, &a.data)?;
            let e = crate::onnx::export_run(&a.run, &a.out, &data, a.samples, a.dynamic_batch)?;
            println!(
                "wrote {} ({} bytes, sha256 {})",
                e.onnx.display(),
                e.bytes,
                e.sha256
            );
            println!(
                "wrote {} ({} test images with burn's logits)",
                e.sample.display(),
                a.samples
            );
            Ok(())
        }
        Command::Summary(a) => {
            let opts = ModelOptions {
                pool: a.pool,
                filters: a.filters,
            };
            let rows =
                summary::summarize(a.input, &a.model.layers_with(a.input, a.classes, &opts))?;
            println!(
                "{} on {}x{}x{}, {} classes",
                a.model, a.input[2], a.input[1], a.input[0], a.classes
            );
            print!("{}", summary::render(a.input, &rows));
            Ok(())
        }
    }
}

/// Loads the dataset of a run, as its config says (size, split).
fn load_data(cfg: &TrainConfig, data: &DataArgs) -> Result<data::Splits> {
    let kind = cfg.dataset;
    let found = data::locate_or_download(kind, data.data_dir.as_deref())?;
    let t0 = std::time::Instant::now();
    let splits = kind.load_with(&found.dir, &cfg.load_options())?;
    eprintln!(
        "{kind}: {} ({}): {} train / {} test images of {}, loaded in {:.1} s{}",
        found.dir.display(),
        found.how,
        splits.train.len(),
        splits.test.len(),
        splits
            .train
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x"),
        t0.elapsed().as_secs_f64(),
        if kind == DatasetKind::Cifar10 {
            format!(
                " ({} of 5 training batches)",
                data::cifar10::train_batches(&found.dir).len()
            )
        } else {
            String::new()
        }
    );
    Ok(splits)
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let device = a.device.device()?;
    let opts = RunOptions {
        device,
        progress: !a.quiet,
        ..RunOptions::default()
    };
    let (outcome, dir) = if let Some(run) = &a.resume {
        let cfg = train::read_config(run)?;
        let data = load_data(&cfg, &a.data)?;
        eprintln!(
            "resuming {} ({} on {})",
            run.display(),
            cfg.model,
            cfg.dataset
        );
        (train::resume(run, &data, a.epochs, &opts)?, run.clone())
    } else {
        let cfg = TrainConfig {
            epochs: a.epochs.unwrap_or(1),
            iterations: a.iterations,
            batch_size: a.batch_size,
            optimizer: a.optimizer,
            lr: a.lr.unwrap_or(a.optimizer.default_lr()),
            weight_decay: a.weight_decay,
            schedule: a.schedule,
            lr_decay: a.lr_decay,
            seed: a.seed,
            eval_every: a.eval_every,
            checkpoint_every: a.checkpoint_every,
            train_limit: a.train_limit,
            test_limit: a.test_limit,
            augment_shift: a.augment_shift,
            augment: a.augment.policy(a.augment_pad, a.augment_min_scale),
            image_size: a.image_size,
            pool: a.pool,
            filters: a.filters,
            init_from: a.init_from.clone().map(|run| train::InitFrom {
                run,
                weights_sha256: String::new(),
            }),
            ..TrainConfig::new(a.model, a.dataset)
        };
        let data = load_data(&cfg, &a.data)?;
        let dir = a
            .out
            .clone()
            .unwrap_or_else(|| train::default_run_dir(&cfg));
        eprintln!(
            "training {} on {} ({} train / {} test images), {} x {} iterations, {} lr {:e} -> {}",
            cfg.model,
            cfg.dataset,
            cfg.train_limit.unwrap_or(usize::MAX).min(data.train.len()),
            cfg.test_limit.unwrap_or(usize::MAX).min(data.test.len()),
            cfg.total_iterations(cfg.train_limit.unwrap_or(usize::MAX).min(data.train.len())),
            cfg.batch_size,
            cfg.optimizer,
            cfg.lr,
            dir.display()
        );
        (train::train(&cfg, &data, &dir, &opts)?, dir)
    };
    eprintln!("run folder: {}", dir.display());
    println!("test accuracy: {:.2}%", 100.0 * outcome.test_accuracy);
    Ok(())
}

fn cmd_compare(a: CompareArgs) -> Result<()> {
    let grid = a.grid()?;
    grid.check()?;
    let device = a.device.device()?;
    // The data of the first cell; every cell shares dataset, size and limits.
    let probe = TrainConfig {
        image_size: grid.image_size,
        ..TrainConfig::new(grid.models[0], grid.dataset)
    };
    let data = load_data(&probe, &a.data)?;
    let n = grid.cells().len();
    eprintln!(
        "grid: {} on {}: {} models x {} optimizers x {} rates x {} seeds = {n} cells -> {}",
        grid.models
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(","),
        grid.dataset,
        grid.models.len(),
        grid.optimizers.len(),
        grid.lrs.len(),
        grid.seeds,
        a.out.display()
    );
    let report = compare::run(
        &grid,
        &data,
        &a.out,
        &CompareOptions {
            device,
            progress: !a.quiet,
        },
    )?;
    eprintln!(
        "{} cells trained, {} already finished",
        report.trained, report.skipped
    );
    for p in &report.written {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let device = a.device.device()?;
    let (cfg, model) = train::load_run_model(&a.run, &device)?;
    let data = load_data(&cfg, &a.data)?;
    let pred = train::predict(&model, &data.test, None, &device);
    let k = cfg.dataset.num_classes();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&p, &l) in pred.iter().zip(&data.test.labels) {
        confusion[l as usize][p as usize] += 1;
    }
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    println!("confusion matrix (rows: true class, columns: predicted)");
    print!("{:>6}", "");
    for j in 0..k {
        print!("{j:>6}");
    }
    println!("{:>9}", "recall");
    for (i, row) in confusion.iter().enumerate() {
        print!("{i:>6}");
        for c in row {
            print!("{c:>6}");
        }
        let total: usize = row.iter().sum();
        println!("{:>8.2}%", 100.0 * row[i] as f64 / total.max(1) as f64);
    }
    println!(
        "test accuracy: {:.2}% ({correct}/{})",
        100.0 * correct as f64 / pred.len().max(1) as f64,
        pred.len()
    );
    Ok(())
}

fn cmd_dump(a: DumpArgs) -> Result<()> {
    let found = data::locate_or_download(a.dataset, a.data.data_dir.as_deref())?;
    if a.format == DumpFormat::Jpeg {
        if a.dataset != DatasetKind::Oxflower17 {
            bail!(
                "--format jpeg writes the flowers only (MNIST and CIFAR-10 are small as they are)"
            );
        }
        let size = a.image_size.unwrap_or(data::flowers::DEFAULT_SIZE);
        let (count, bytes) =
            data::flowers::write_resized_copy(&found.dir, size, &a.out, a.quality)?;
        println!(
            "{}: {} images at {size}x{size}, JPEG quality {} -> {} ({:.1} MB)",
            a.dataset,
            count,
            a.quality,
            a.out.display(),
            bytes as f64 / 1e6
        );
        return Ok(());
    }
    let opts = data::LoadOptions {
        image_size: a.image_size,
        cache_dir: None,
    };
    let splits = a.dataset.load_with(&found.dir, &opts)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    for (prefix, set) in [("train", &splits.train), ("test", &splits.test)] {
        data::npy::write_split(&a.out, prefix, set)?;
        let [c, h, w] = set.shape;
        println!(
            "{}: {} {prefix} images of {c}x{h}x{w} -> {}/{prefix}-images.npy, {prefix}-labels.npy",
            a.dataset,
            set.len(),
            a.out.display()
        );
    }
    Ok(())
}

fn cmd_datasets(a: DataArgs) -> Result<()> {
    let mut all_ok = true;
    for &kind in DatasetKind::ALL {
        match data::locate(kind, a.data_dir.as_deref()) {
            None => {
                all_ok = false;
                println!(
                    "{kind}: not found (looked in --data-dir, ${}, ./data); `host-train train --dataset {kind}` downloads it",
                    data::DATA_DIR_ENV
                );
            }
            Some(found) => {
                println!("{kind}: {} ({})", found.dir.display(), found.how);
                for (name, r) in data::verify(kind, &found.dir) {
                    match r {
                        Ok(detail) => println!("  {name:<32} {detail}"),
                        Err(e) => {
                            all_ok = false;
                            println!("  {name:<32} NOT VERIFIED: {e}");
                        }
                    }
                }
            }
        }
    }
    if !all_ok {
        bail!("some datasets are missing or do not verify");
    }
    Ok(())
}
