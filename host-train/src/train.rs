//! The training loop: seeded data order, burn autodiff + optimizer, periodic evaluation into
//! `metrics.csv`, atomic checkpoints, exact resume, and a stop on a non-finite loss.
//!
//! A run folder holds:
//! - `config.json`: the full [`TrainConfig`];
//! - `metrics.csv`: one row per evaluation (iteration, epoch, lr, train loss, train acc, test
//!   acc, images/s);
//! - `checkpoint.bin`: the latest checkpoint (see [`crate::checkpoint`]);
//! - `accuracy.svg`: test and train accuracy against iterations, redrawn at each evaluation;
//! - `model.bpk`: the final weights (burnpack), written when the run completes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint};
use crate::data::augment::Augment;
use crate::data::{DatasetKind, ImageSet, LoadOptions, Splits};
use crate::models::{ModelKind, ModelOptions, Network, PoolKind};
use crate::optim::{OptimizerKind, Schedule};
use crate::rng::{SplitMix64, epoch_permutation};

/// Everything that defines a run; saved as `config.json` in the run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The network.
    pub model: ModelKind,
    /// The dataset.
    pub dataset: DatasetKind,
    /// Passes over the training set (ignored when `iterations` is set).
    pub epochs: usize,
    /// Optimizer steps in total, overriding `epochs`.
    pub iterations: Option<usize>,
    /// Images per step.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Base learning rate.
    pub lr: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Per-epoch factor of the `exp-decay` schedule.
    pub lr_decay: f64,
    /// Seeds weight initialisation and data order.
    pub seed: u64,
    /// Evaluate on the test set every this many iterations (0: once per epoch). The run's
    /// last iteration is always evaluated.
    pub eval_every: usize,
    /// Checkpoint every this many iterations (0: once per epoch). The run's start and end are
    /// always checkpointed.
    pub checkpoint_every: usize,
    /// Train on the first N training images only.
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    pub test_limit: Option<usize>,
    /// Translate each training image by a random offset of up to this many pixels (0: no
    /// augmentation). Drawn from `(seed, iteration)`, so resumed runs see the same images.
    #[serde(default)]
    pub augment_shift: usize,
    /// Colour augmentation (crop and flip), drawn like `augment_shift`.
    #[serde(default)]
    pub augment: Augment,
    /// Side of the square input for photo datasets (the flowers); `None`: the dataset's
    /// default.
    #[serde(default)]
    pub image_size: Option<usize>,
    /// The LeNets' pooling (`None`: the model's own).
    #[serde(default)]
    pub pool: Option<PoolKind>,
    /// The LeNets' feature maps (`None`: 6 and 16).
    #[serde(default)]
    pub filters: Option<[usize; 2]>,
    /// Start from the weights of an earlier run instead of random ones (fine-tuning, or a
    /// warm restart of the schedule); the optimizer state starts fresh.
    #[serde(default)]
    pub init_from: Option<InitFrom>,
}

/// Where a run's starting weights came from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct InitFrom {
    /// The earlier run's folder, as given.
    pub run: PathBuf,
    /// SHA-256 (hex) of the weights read from it: `model.bpk`, or its checkpoint's model if
    /// it did not complete. Filled in when the run starts; a run started with it set refuses
    /// other weights.
    #[serde(default)]
    pub weights_sha256: String,
}

impl TrainConfig {
    /// A config with the defaults of `host-train train`.
    pub fn new(model: ModelKind, dataset: DatasetKind) -> Self {
        let optimizer = OptimizerKind::Adam;
        TrainConfig {
            model,
            dataset,
            epochs: 1,
            iterations: None,
            batch_size: 64,
            optimizer,
            lr: optimizer.default_lr(),
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            lr_decay: 0.9,
            seed: 42,
            eval_every: 0,
            checkpoint_every: 0,
            train_limit: None,
            test_limit: None,
            augment_shift: 0,
            augment: Augment::None,
            image_size: None,
            pool: None,
            filters: None,
            init_from: None,
        }
    }

    /// The architecture options of the run's model.
    pub fn model_options(&self) -> ModelOptions {
        ModelOptions {
            pool: self.pool,
            filters: self.filters,
        }
    }

    /// Builds the run's network with fresh (unseeded) weights.
    pub fn init_model(&self, device: &Device) -> Network {
        self.model.init_with(
            self.input_shape(),
            self.dataset.num_classes(),
            &self.model_options(),
            device,
        )
    }

    /// The input shape `[C, H, W]` of the run's images.
    pub fn input_shape(&self) -> [usize; 3] {
        self.dataset.image_shape_at(self.image_size)
    }

    /// How to load the run's dataset.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            image_size: self.image_size,
            ..LoadOptions::default()
        }
    }

    /// Steps per epoch for `n` training images (the last batch may be partial).
    pub fn iterations_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size)
    }

    /// Total steps of the run for `n` training images.
    pub fn total_iterations(&self, n: usize) -> usize {
        self.iterations
            .unwrap_or(self.epochs * self.iterations_per_epoch(n))
    }

    fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay must be >= 0, got {}", self.weight_decay);
        }
        if self.augment_shift > 0 && !self.augment.is_none() {
            bail!("--augment-shift and --augment cannot be combined");
        }
        self.augment.check().map_err(anyhow::Error::msg)?;
        self.model
            .check_input(
                self.input_shape(),
                self.dataset.num_classes(),
                &self.model_options(),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} cannot take {} images of {:?}: {e}",
                    self.model,
                    self.dataset,
                    self.input_shape()
                )
            })?;
        Ok(())
    }
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Optimizer steps done.
    pub iteration: usize,
    /// Epochs done (fractional).
    pub epoch: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean training loss since the previous row.
    pub train_loss: f64,
    /// Training accuracy since the previous row (on the batches as trained).
    pub train_acc: f64,
    /// Test accuracy now.
    pub test_acc: f64,
    /// Training throughput since the previous row (evaluation excluded).
    pub images_per_s: f64,
}

const CSV_HEADER: &str = "iteration,epoch,lr,train_loss,train_acc,test_acc,images_per_s";

impl MetricsRow {
    fn csv(&self) -> String {
        format!(
            "{},{:.4},{:.6e},{:.6},{:.6},{:.6},{:.1}",
            self.iteration,
            self.epoch,
            self.lr,
            self.train_loss,
            self.train_acc,
            self.test_acc,
            self.images_per_s
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 7 {
            return None;
        }
        Some(MetricsRow {
            iteration: f[0].parse().ok()?,
            epoch: f[1].parse().ok()?,
            lr: f[2].parse().ok()?,
            train_loss: f[3].parse().ok()?,
            train_acc: f[4].parse().ok()?,
            test_acc: f[5].parse().ok()?,
            images_per_s: f[6].parse().ok()?,
        })
    }
}

/// Reads a run's `metrics.csv`.
pub fn read_metrics(run_dir: &Path) -> Result<Vec<MetricsRow>> {
    let path = run_dir.join("metrics.csv");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, l)| {
            MetricsRow::parse(l)
                .with_context(|| format!("{}: bad row {}: {l}", path.display(), i + 2))
        })
        .collect()
}

/// The loop's own state, saved in each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LoopState {
    /// Optimizer steps done.
    iteration: usize,
    /// Sums over the current metrics window.
    window_loss: f64,
    window_correct: u64,
    window_seen: u64,
    window_secs: f64,
    /// Wall time of the run so far (training and evaluation), over resumes.
    #[serde(default)]
    wall_secs: f64,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Steps done.
    pub iterations: usize,
    /// Test accuracy at the end.
    pub test_accuracy: f64,
    /// All metrics rows of the run, resumed parts included.
    pub metrics: Vec<MetricsRow>,
    /// Wall time of training and evaluation, summed over resumes (time lost to a crash
    /// after the last checkpoint is not counted).
    pub wall_secs: f64,
    /// The trained network.
    pub model: Network,
}

/// How to run (not part of the run's identity).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The device to train on (autodiff is enabled on it).
    pub device: Device,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
    /// Stop after this many steps in total without a final checkpoint, as a crash would:
    /// used by tests of `--resume`.
    pub halt_after: Option<usize>,
    /// Draw the run's bar under this one (a grid's), advancing it by the given amount per
    /// step (the step's estimated cost, so that the grid's ETA weighs cells by their work).
    pub parent: Option<(MultiProgress, ProgressBar, u64)>,
    /// Print a line per evaluation (above the bar).
    pub log_evals: bool,
}

/// The error a run stops with when its loss is no longer finite (a learning rate too high for
/// the optimizer); a grid records the cell as diverged instead of stopping.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "training stopped: the loss became {loss} at iteration {iteration} (epoch {epoch}, lr {lr:e}). \
     The last good checkpoint (iteration {last_checkpoint}) is kept in {checkpoint}; \
     try a lower --lr or another --optimizer."
)]
pub struct Diverged {
    /// The non-finite loss.
    pub loss: f32,
    /// The 1-based step that produced it.
    pub iteration: usize,
    /// Its 1-based epoch.
    pub epoch: usize,
    /// The learning rate of that step.
    pub lr: f64,
    /// Steps done at the last checkpoint.
    pub last_checkpoint: usize,
    /// The checkpoint file.
    pub checkpoint: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            device: Device::flex(),
            progress: false,
            halt_after: None,
            parent: None,
            log_evals: true,
        }
    }
}

/// Starts a new run in `run_dir` (created; it must not already hold a run).
pub fn train(
    cfg: &TrainConfig,
    data: &Splits,
    run_dir: &Path,
    opts: &RunOptions,
) -> Result<Outcome> {
    cfg.check()?;
    let device = opts.device.clone().autodiff();
    if data.train.shape != cfg.input_shape() {
        bail!(
            "the data's images are {:?}, the run expects {:?}",
            data.train.shape,
            cfg.input_shape()
        );
    }
    // Read the starting weights before anything is written: a bad --init-from leaves no
    // half-made run folder.
    let mut cfg = cfg.clone();
    let arch = cfg_arch(&cfg);
    let start = match &mut cfg.init_from {
        Some(init) => Some(start_weights(init, &arch, &device)?),
        None => None,
    };
    let cfg = &cfg;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    if run_dir.join(checkpoint::FILE).exists() {
        bail!(
            "{} already holds a run; continue it with --resume {0} or choose another --out",
            run_dir.display()
        );
    }
    let cfg_json = serde_json::to_vec_pretty(cfg)?;
    checkpoint::write_atomic(&run_dir.join("config.json"), &cfg_json)?;
    checkpoint::write_atomic(
        &run_dir.join("metrics.csv"),
        format!("{CSV_HEADER}\n").as_bytes(),
    )?;

    // Seeded even when the weights are replaced, so that the later draws (dropout) are the
    // same either way.
    let seeded = init_seeded(cfg, &device);
    let model = start.unwrap_or(seeded);
    let optim = cfg.optimizer.build(cfg.weight_decay);
    let state = LoopState::default();
    save_checkpoint(run_dir, &state, &model, &optim)?;
    run_loop(cfg, data, run_dir, opts, model, optim, state)
}

/// What must match between a run and the run it starts from: the network and its input.
fn cfg_arch(cfg: &TrainConfig) -> String {
    format!(
        "{} on {} {:?} (pool {:?}, filters {:?})",
        cfg.model,
        cfg.dataset,
        cfg.input_shape(),
        cfg.pool,
        cfg.filters
    )
}

/// Reads the weights `init` names, checks that they come from the same architecture and, where
/// `init` already holds a digest, that they are those weights; fills the digest in.
fn start_weights(init: &mut InitFrom, arch: &str, device: &Device) -> Result<Network> {
    let base = read_config(&init.run).context("--init-from")?;
    let base_arch = cfg_arch(&base);
    if base_arch != arch {
        bail!(
            "--init-from {}: that run trains {base_arch}, this one {arch}",
            init.run.display()
        );
    }
    let bytes = run_weights(&init.run)?;
    let digest = crate::data::download::sha256_hex(&bytes);
    if !init.weights_sha256.is_empty() && init.weights_sha256 != digest {
        bail!(
            "--init-from {}: its weights have SHA-256 {digest}, the config expects {}",
            init.run.display(),
            init.weights_sha256
        );
    }
    init.weights_sha256 = digest;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).context("model weights")?;
    base.init_model(device)
        .try_load_record(record)
        .with_context(|| format!("--init-from {}: weights do not fit", init.run.display()))
}

/// The weights of a run: `model.bpk` if the run completed, else its checkpoint's.
fn run_weights(run_dir: &Path) -> Result<Vec<u8>> {
    let final_path = run_dir.join("model.bpk");
    if final_path.exists() {
        std::fs::read(&final_path).with_context(|| format!("cannot read {}", final_path.display()))
    } else {
        Ok(Checkpoint::read(&run_dir.join(checkpoint::FILE))?.model)
    }
}

/// Builds a network with weights drawn from `seed`. burn's generator is global to the process
/// and parameters are drawn lazily, so seeding, building and drawing happen under one lock:
/// another thread building a network at the same time cannot interleave its draws.
pub fn init_seeded(cfg: &TrainConfig, device: &Device) -> Network {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(cfg.seed);
    let model = cfg.init_model(device);
    // Reading every parameter materialises it now, while the lock is held.
    let _ = model.flat_weights();
    model
}

/// Reads a run's `config.json`.
pub fn read_config(run_dir: &Path) -> Result<TrainConfig> {
    let path = run_dir.join("config.json");
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {} (is {} a run folder?)",
            path.display(),
            run_dir.display()
        )
    })?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a valid run config", path.display()))
}

/// Continues the run in `run_dir` from its checkpoint, exactly as if it had not stopped: same
/// data order, optimizer state and metrics. `epochs` extends (or shortens) the run.
pub fn resume(
    run_dir: &Path,
    data: &Splits,
    epochs: Option<usize>,
    opts: &RunOptions,
) -> Result<Outcome> {
    let mut cfg = read_config(run_dir)?;
    if let Some(e) = epochs {
        cfg.epochs = e;
        cfg.iterations = None;
        checkpoint::write_atomic(
            &run_dir.join("config.json"),
            &serde_json::to_vec_pretty(&cfg)?,
        )?;
    }
    let ck = Checkpoint::read(&run_dir.join(checkpoint::FILE))?;
    let state: LoopState = serde_json::from_slice(&ck.state).context("checkpoint state")?;

    let device = opts.device.clone().autodiff();
    let model = cfg.init_model(&device);
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(ck.model)).context("checkpoint model")?;
    let model = model
        .try_load_record(record)
        .context("checkpoint model does not fit the configured network")?;
    let optim = cfg
        .optimizer
        .build(cfg.weight_decay)
        .from_bytes(Bytes::from_bytes_vec(ck.optimizer))
        .context("checkpoint optimizer state")?;

    // Drop metrics rows written after the checkpoint: the resumed run writes them again.
    let rows: Vec<MetricsRow> = read_metrics(run_dir)?
        .into_iter()
        .filter(|r| r.iteration <= state.iteration)
        .collect();
    let mut csv = format!("{CSV_HEADER}\n");
    for r in &rows {
        csv.push_str(&r.csv());
        csv.push('\n');
    }
    checkpoint::write_atomic(&run_dir.join("metrics.csv"), csv.as_bytes())?;
    run_loop(&cfg, data, run_dir, opts, model, optim, state)
}

fn save_checkpoint(
    run_dir: &Path,
    state: &LoopState,
    model: &Network,
    optim: &ModuleOptimizer,
) -> Result<()> {
    let ck = Checkpoint {
        state: serde_json::to_vec(state)?,
        model: model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_vec(),
        optimizer: optim
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .to_vec(),
    };
    ck.write(&run_dir.join(checkpoint::FILE))
}

/// Saves a network's weights as burnpack (`model.bpk`).
pub fn save_model(model: &Network, path: &Path) -> Result<()> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    checkpoint::write_atomic(path, &bytes)
}

/// Loads the weights of a run: `model.bpk` if the run completed, else its checkpoint.
pub fn load_run_model(run_dir: &Path, device: &Device) -> Result<(TrainConfig, Network)> {
    let cfg = read_config(run_dir)?;
    let bytes = run_weights(run_dir)?;
    let model = cfg.init_model(device);
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).context("model weights")?;
    let model = model
        .try_load_record(record)
        .context("weights do not fit the configured network")?;
    Ok((cfg, model))
}

/// Predicted classes of `set` (the first `limit` images), evaluated in batches of 1000 without
/// autodiff.
pub fn predict(model: &Network, set: &ImageSet, limit: Option<usize>, device: &Device) -> Vec<u8> {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let n = limit.unwrap_or(usize::MAX).min(set.len());
    let mut out = Vec::with_capacity(n);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(1000) {
        let (x, _) = set.batch(chunk, &device);
        let pred: Tensor<1, Int> = model.forward(x).argmax(1).squeeze_dim(1);
        let data = pred.into_data();
        out.extend(data.iter::<i64>().map(|p| p as u8));
    }
    out
}

/// Test accuracy of `model` on `set` (the first `limit` images).
pub fn accuracy(model: &Network, set: &ImageSet, limit: Option<usize>, device: &Device) -> f64 {
    let pred = predict(model, set, limit, device);
    let correct = pred.iter().zip(&set.labels).filter(|(p, l)| p == l).count();
    correct as f64 / pred.len().max(1) as f64
}

#[allow(clippy::too_many_arguments)]
fn run_loop(
    cfg: &TrainConfig,
    data: &Splits,
    run_dir: &Path,
    opts: &RunOptions,
    mut model: Network,
    mut optim: ModuleOptimizer,
    mut st: LoopState,
) -> Result<Outcome> {
    let device = opts.device.clone().autodiff();
    let train = &data.train;
    // The first `n` images (all unless --train-limit).
    let n = cfg.train_limit.unwrap_or(usize::MAX).min(train.len());
    if n == 0 {
        bail!("the training set is empty");
    }
    let per_epoch = cfg.iterations_per_epoch(n);
    let total = cfg.total_iterations(n);
    let eval_every = if cfg.eval_every == 0 {
        per_epoch
    } else {
        cfg.eval_every
    };
    let ckpt_every = if cfg.checkpoint_every == 0 {
        per_epoch
    } else {
        cfg.checkpoint_every
    };
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let bar = match (&opts.parent, opts.progress) {
        (Some((multi, _, _)), true) => multi.add(ProgressBar::new(total as u64)),
        (None, true) => {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
        }
        (_, false) => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} it  {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_position(st.iteration as u64);
    let mut metrics = read_metrics(run_dir)?;
    let mut csv = std::fs::OpenOptions::new()
        .append(true)
        .open(run_dir.join("metrics.csv"))
        .context("cannot open metrics.csv")?;
    let mut perm: Option<(usize, Vec<usize>)> = None;
    let mut last_ckpt = st.iteration;
    let mut test_acc = metrics.last().map(|r| r.test_acc).unwrap_or(f64::NAN);

    while st.iteration < total {
        if opts.halt_after.is_some_and(|h| st.iteration >= h) {
            bar.finish_and_clear();
            return Ok(Outcome {
                iterations: st.iteration,
                test_accuracy: test_acc,
                metrics,
                wall_secs: st.wall_secs,
                model,
            });
        }
        let it = st.iteration;
        let epoch = it / per_epoch;
        if perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
            perm = Some((epoch, epoch_permutation(n, cfg.seed, epoch)));
        }
        let order = &perm.as_ref().expect("set above").1;
        let start = (it % per_epoch) * cfg.batch_size;
        let idx = &order[start..(start + cfg.batch_size).min(n)];
        let lr = cfg.schedule.lr(cfg.lr, cfg.lr_decay, it, per_epoch, total);

        let t0 = Instant::now();
        let mut rng = SplitMix64::new(cfg.seed ^ (it as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let (x, y) = if cfg.augment_shift > 0 {
            train.batch_shifted(idx, Some((cfg.augment_shift, &mut rng)), &device)
        } else if !cfg.augment.is_none() {
            train.batch_augmented(idx, &cfg.augment, &mut rng, &device)
        } else {
            train.batch(idx, &device)
        };
        let logits = model.forward(x);
        let loss = loss_fn.forward(logits.clone(), y.clone());
        let loss_value: f32 = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            bar.finish_and_clear();
            return Err(Diverged {
                loss: loss_value,
                iteration: it + 1,
                epoch: epoch + 1,
                lr,
                last_checkpoint: last_ckpt,
                checkpoint: run_dir.join(checkpoint::FILE).display().to_string(),
            }
            .into());
        }
        let pred: Tensor<1, Int> = logits.argmax(1).squeeze_dim(1);
        let correct: i64 = pred.equal(y).int().sum().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        st.window_secs += t0.elapsed().as_secs_f64();
        st.window_loss += loss_value as f64 * idx.len() as f64;
        st.window_correct += correct as u64;
        st.window_seen += idx.len() as u64;
        st.iteration += 1;
        bar.inc(1);
        if let Some((_, grid, cost)) = &opts.parent {
            grid.inc(*cost);
        }
        if st.iteration.is_multiple_of(10) || st.iteration == total {
            bar.set_message(format!(
                "loss {:.4}  acc {:.2}%  {:.0} img/s",
                st.window_loss / st.window_seen as f64,
                100.0 * st.window_correct as f64 / st.window_seen as f64,
                st.window_seen as f64 / st.window_secs
            ));
        }

        if st.iteration.is_multiple_of(eval_every) || st.iteration == total {
            test_acc = accuracy(&model, &data.test, cfg.test_limit, &opts.device);
            let row = MetricsRow {
                iteration: st.iteration,
                epoch: st.iteration as f64 / per_epoch as f64,
                lr,
                train_loss: st.window_loss / st.window_seen as f64,
                train_acc: st.window_correct as f64 / st.window_seen as f64,
                test_acc,
                images_per_s: st.window_seen as f64 / st.window_secs,
            };
            writeln!(csv, "{}", row.csv()).context("cannot append to metrics.csv")?;
            csv.flush()?;
            if opts.log_evals {
                bar.suspend(|| {
                    eprintln!(
                    "iter {:>6}  epoch {:>6.2}  lr {:.2e}  loss {:.4}  train {:.2}%  test {:.2}%  {:.0} img/s",
                    row.iteration,
                    row.epoch,
                    row.lr,
                    row.train_loss,
                    100.0 * row.train_acc,
                    100.0 * row.test_acc,
                    row.images_per_s
                    )
                });
            }
            metrics.push(row);
            write_plot(cfg, run_dir, &metrics)?;
            st.window_loss = 0.0;
            st.window_correct = 0;
            st.window_seen = 0;
            st.window_secs = 0.0;
        }
        st.wall_secs += t0.elapsed().as_secs_f64();
        if st.iteration.is_multiple_of(ckpt_every) || st.iteration == total {
            save_checkpoint(run_dir, &st, &model, &optim)?;
            last_ckpt = st.iteration;
        }
    }
    bar.finish_and_clear();
    save_model(&model, &run_dir.join("model.bpk"))?;
    Ok(Outcome {
        iterations: st.iteration,
        test_accuracy: test_acc,
        metrics,
        wall_secs: st.wall_secs,
        model,
    })
}

/// Writes `accuracy.svg`: test (and train) accuracy against iterations so far.
fn write_plot(cfg: &TrainConfig, run_dir: &Path, metrics: &[MetricsRow]) -> Result<()> {
    let title = format!(
        "{} on {}, {} lr {}",
        cfg.model, cfg.dataset, cfg.optimizer, cfg.lr
    );
    let svg =
        crate::figures::accuracy_figure(&title, &[(cfg.model.to_string(), metrics)], true).svg()?;
    checkpoint::write_atomic(&run_dir.join("accuracy.svg"), svg.as_bytes())
}

/// The default run folder for a new run: `runs/<model>-<dataset>-<unix time>`.
pub fn default_run_dir(cfg: &TrainConfig) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{}-{}-{t}", cfg.model, cfg.dataset))
}
