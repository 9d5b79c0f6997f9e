//! `host-train compare`: the seed's experiments as one command. A grid of models x optimizers x
//! learning rates x seeds on one dataset; every cell is an ordinary run folder
//! (`<out>/<model>/<optimizer>-lr<lr>-seed<seed>/`), so an interrupted grid resumes where it
//! stopped and finished cells are skipped. At the end (and on every call) it writes:
//!
//! - `summary.csv`: one row per cell: final and best test accuracy, wall time, images/s;
//! - `summary.md`: the same per setting (mean ± sd over seeds), the best setting per model marked;
//! - `<model>-optimizers.{png,svg}`: one panel per optimizer, one line per learning rate (the
//!   seed's layout);
//! - `best.{png,svg}`: one panel per model, every optimizer at its best learning rate;
//! - `grid.toml`: the grid as run, which `--grid` reads back.
//!
//! With several seeds the lines are the mean over seeds and the band is ± one standard
//! deviation. A cell whose loss stops being finite is recorded as diverged (`cell.json`) and its
//! curve ends with a cross; the grid goes on.
//!
//! The accuracy columns and curves are a function of the grid: the same grid, seeds and
//! `--threads` give the same numbers bit for bit. Wall time and images/s are measurements.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, write_atomic};
use crate::data::augment::Augment;
use crate::data::{DatasetKind, Splits};
use crate::figures::{Curve, Figure, Legend, Panel, percent_range};
use crate::models::{ModelKind, PoolKind};
use crate::optim::{OptimizerKind, Schedule};
use crate::train::{self, Diverged, MetricsRow, RunOptions, TrainConfig};

/// A grid, as `--grid FILE` (TOML) or the command line gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// The dataset every cell trains on.
    pub dataset: DatasetKind,
    /// The networks.
    pub models: Vec<ModelKind>,
    /// The optimizers.
    pub optimizers: Vec<OptimizerKind>,
    /// The learning rates.
    pub lrs: Vec<f64>,
    /// Optimizer steps per cell (else `epochs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
    /// Passes over the training set per cell, when `iterations` is not set.
    #[serde(default = "one")]
    pub epochs: usize,
    /// Evaluate every N steps [default: 20 evaluations per cell].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<usize>,
    /// Seeds per setting: `seed`, `seed + 1`, ...
    #[serde(default = "one")]
    pub seeds: usize,
    /// The first seed.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Images per step.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Learning-rate schedule.
    #[serde(default = "constant")]
    pub schedule: Schedule,
    /// L2 penalty.
    #[serde(default)]
    pub weight_decay: f64,
    /// Train on the first N images only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_limit: Option<usize>,
    /// Training-time augmentation of colour images.
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
    /// Side of the flowers' square input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// The LeNets' pooling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolKind>,
    /// The LeNets' feature maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<[usize; 2]>,
}

fn one() -> usize {
    1
}
fn default_seed() -> u64 {
    42
}
fn default_batch() -> usize {
    64
}
fn constant() -> Schedule {
    Schedule::Constant
}

impl Grid {
    /// A grid with the defaults of the optional fields.
    pub fn new(
        dataset: DatasetKind,
        models: Vec<ModelKind>,
        optimizers: Vec<OptimizerKind>,
        lrs: Vec<f64>,
    ) -> Self {
        Grid {
            dataset,
            models,
            optimizers,
            lrs,
            iterations: None,
            epochs: 1,
            eval_every: None,
            seeds: 1,
            seed: default_seed(),
            batch_size: default_batch(),
            schedule: Schedule::Constant,
            weight_decay: 0.0,
            train_limit: None,
            test_limit: None,
            augment: Augment::None,
            image_size: None,
            pool: None,
            filters: None,
        }
    }

    /// Reads a grid file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: not a valid grid", path.display()))
    }

    /// The grid as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a grid serializes")
    }

    /// Refuses an empty grid or a rate that is not a positive number.
    pub fn check(&self) -> Result<()> {
        for (what, n) in [
            ("--models", self.models.len()),
            ("--optimizers", self.optimizers.len()),
            ("--lrs", self.lrs.len()),
            ("--seeds", self.seeds),
        ] {
            if n == 0 {
                bail!("the grid is empty: {what} has no entries");
            }
        }
        if let Some(lr) = self.lrs.iter().find(|lr| !(lr.is_finite() && **lr > 0.0)) {
            bail!("learning rate {lr} is not a positive number");
        }
        Ok(())
    }

    /// The cells, in the order they run: model, then optimizer, then rate, then seed.
    pub fn cells(&self) -> Vec<Cell> {
        let mut v = Vec::new();
        for &model in &self.models {
            for &optimizer in &self.optimizers {
                for &lr in &self.lrs {
                    for k in 0..self.seeds {
                        v.push(Cell {
                            model,
                            optimizer,
                            lr,
                            seed: self.seed + k as u64,
                        });
                    }
                }
            }
        }
        v
    }

    /// The run config of a cell, for a training set of `n` images.
    pub fn config(&self, cell: &Cell, n: usize) -> TrainConfig {
        let mut cfg = TrainConfig {
            epochs: self.epochs,
            iterations: self.iterations,
            batch_size: self.batch_size,
            optimizer: cell.optimizer,
            lr: cell.lr,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            seed: cell.seed,
            train_limit: self.train_limit,
            test_limit: self.test_limit,
            augment: self.augment,
            image_size: self.image_size,
            pool: self.pool,
            filters: self.filters,
            ..TrainConfig::new(cell.model, self.dataset)
        };
        let total = cfg.total_iterations(self.train_limit.unwrap_or(usize::MAX).min(n));
        cfg.eval_every = self.eval_every.unwrap_or(total.div_ceil(20)).max(1);
        // Checkpoint at each evaluation, so an interrupted cell loses little.
        cfg.checkpoint_every = cfg.eval_every;
        cfg
    }
}

/// One setting of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// The network.
    pub model: ModelKind,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// The learning rate.
    pub lr: f64,
    /// The seed of initialisation and data order.
    pub seed: u64,
}

impl Cell {
    /// The cell's run folder under the grid's folder.
    pub fn dir(&self, out: &Path) -> PathBuf {
        out.join(self.model.to_string()).join(format!(
            "{}-lr{}-seed{}",
            self.optimizer, self.lr, self.seed
        ))
    }
}

/// What `cell.json` records when a cell is finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// `done` or `diverged`.
    pub status: CellStatus,
    /// Steps done.
    pub iterations: usize,
    /// Wall time of training and evaluation, seconds.
    pub wall_secs: f64,
    /// For a diverged cell: the step whose loss was not finite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_at: Option<usize>,
}

/// How a cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellStatus {
    /// Trained to the end.
    Done,
    /// Stopped on a non-finite loss.
    Diverged,
}

/// A finished cell with its metrics.
#[derive(Debug, Clone)]
pub struct CellResult {
    /// The setting.
    pub cell: Cell,
    /// Its record.
    pub record: CellRecord,
    /// Its metrics rows.
    pub metrics: Vec<MetricsRow>,
    /// Batch size (for images/s).
    pub batch_size: usize,
}

impl CellResult {
    /// Test accuracy at the end; NaN when the cell diverged.
    pub fn final_acc(&self) -> f64 {
        match self.record.status {
            CellStatus::Done => self.metrics.last().map_or(f64::NAN, |r| r.test_acc),
            CellStatus::Diverged => f64::NAN,
        }
    }

    /// The best test accuracy and the step it was reached at.
    pub fn best(&self) -> (f64, usize) {
        self.metrics
            .iter()
            .filter(|r| r.test_acc.is_finite())
            .fold((f64::NAN, 0), |(b, at), r| {
                if b.is_nan() || r.test_acc > b {
                    (r.test_acc, r.iteration)
                } else {
                    (b, at)
                }
            })
    }

    /// Training throughput over the whole cell (evaluation excluded).
    pub fn images_per_s(&self) -> f64 {
        let (mut images, mut secs, mut prev) = (0.0, 0.0, 0usize);
        for r in &self.metrics {
            let n = ((r.iteration - prev) * self.batch_size) as f64;
            if r.images_per_s > 0.0 {
                images += n;
                secs += n / r.images_per_s;
            }
            prev = r.iteration;
        }
        if secs > 0.0 { images / secs } else { f64::NAN }
    }
}

/// How to run a grid (not part of its identity).
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The training device.
    pub device: burn::tensor::Device,
    /// Draw progress bars.
    pub progress: bool,
}

/// What a call did.
#[derive(Debug, Clone)]
pub struct CompareReport {
    /// Every cell of the grid, finished.
    pub results: Vec<CellResult>,
    /// Cells trained (or resumed) by this call.
    pub trained: usize,
    /// Cells found finished and skipped.
    pub skipped: usize,
    /// Files written (summary and figures).
    pub written: Vec<PathBuf>,
}

/// Runs every unfinished cell of `grid` into `out`, then writes the summary and figures.
pub fn run(grid: &Grid, data: &Splits, out: &Path, opts: &CompareOptions) -> Result<CompareReport> {
    grid.check()?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cells = grid.cells();
    let n_train = data.train.len();

    // Check every existing cell before training any, so a mismatch fails at once.
    let mut todo: Vec<(usize, TrainConfig, u64)> = Vec::new();
    let mut results: Vec<Option<CellResult>> = vec![None; cells.len()];
    let mut grid_total = 0u64;
    let mut grid_done = 0u64;
    for (i, cell) in cells.iter().enumerate() {
        let dir = cell.dir(out);
        let cfg = grid.config(cell, n_train);
        let total = cfg.total_iterations(cfg.train_limit.unwrap_or(usize::MAX).min(n_train));
        let cost = step_cost(&cfg);
        grid_total += total as u64 * cost;
        if dir.join("config.json").exists() {
            let found = train::read_config(&dir)?;
            if found != cfg {
                bail!(
                    "{} holds a run with another config than this grid's cell ({}); \
                     choose another --out or remove that folder",
                    dir.display(),
                    config_difference(&found, &cfg)
                );
            }
        }
        if let Some(record) = read_record(&dir)? {
            grid_done += total as u64 * cost;
            results[i] = Some(CellResult {
                cell: *cell,
                record,
                metrics: train::read_metrics(&dir)?,
                batch_size: cfg.batch_size,
            });
        } else {
            grid_done += resumable_iteration(&dir) as u64 * cost;
            todo.push((i, cfg, cost));
        }
    }
    let skipped = cells.len() - todo.len();
    write_atomic(&out.join("grid.toml"), grid.to_toml().as_bytes())?;

    let multi = MultiProgress::with_draw_target(if opts.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let grid_bar = multi.add(ProgressBar::new(grid_total));
    grid_bar.set_style(
        ProgressStyle::with_template(
            "grid {prefix} [{bar:30}] elapsed {elapsed_precise}, ETA {eta_precise}  {msg}",
        )
        .expect("static template")
        .progress_chars("#>-"),
    );
    grid_bar.set_position(grid_done);
    grid_bar.reset_eta();
    let log = |line: String| multi.suspend(|| eprintln!("{line}"));
    if skipped > 0 {
        log(format!(
            "{skipped} of {} cells already finished in {}: skipped",
            cells.len(),
            out.display()
        ));
    }
    let mut finished = skipped;
    for (k, (i, cfg, cost)) in todo.iter().enumerate() {
        let run_opts = RunOptions {
            device: opts.device.clone(),
            progress: opts.progress,
            parent: Some((multi.clone(), grid_bar.clone(), *cost)),
            log_evals: false,
            ..RunOptions::default()
        };
        let cell = &cells[*i];
        let dir = cell.dir(out);
        grid_bar.set_prefix(format!("{finished}/{} cells", cells.len()));
        grid_bar.set_message(format!(
            "now {} {} lr {} seed {}",
            cell.model, cell.optimizer, cell.lr, cell.seed
        ));
        let t0 = Instant::now();
        let resuming = dir.join(checkpoint::FILE).exists();
        let outcome = if resuming {
            train::resume(&dir, data, None, &run_opts)
        } else {
            train::train(cfg, data, &dir, &run_opts)
        };
        let record = match outcome {
            Ok(o) => CellRecord {
                status: CellStatus::Done,
                iterations: o.iterations,
                wall_secs: o.wall_secs,
                diverged_at: None,
            },
            Err(e) => match e.downcast_ref::<Diverged>() {
                Some(d) => CellRecord {
                    status: CellStatus::Diverged,
                    iterations: d.iteration - 1,
                    wall_secs: t0.elapsed().as_secs_f64(),
                    diverged_at: Some(d.iteration),
                },
                None => {
                    return Err(e.context(format!(
                        "cell {} failed ({} of {} in this call)",
                        dir.display(),
                        k + 1,
                        todo.len()
                    )));
                }
            },
        };
        write_atomic(&dir.join("cell.json"), &serde_json::to_vec_pretty(&record)?)?;
        let result = CellResult {
            cell: *cell,
            record,
            metrics: train::read_metrics(&dir)?,
            batch_size: cfg.batch_size,
        };
        finished += 1;
        log(format!(
            "[{finished}/{}] {} {} lr {} seed {}: {}{}",
            cells.len(),
            cell.model,
            cell.optimizer,
            cell.lr,
            cell.seed,
            describe(&result),
            if resuming { " (resumed)" } else { "" }
        ));
        results[*i] = Some(result);
    }
    grid_bar.finish_and_clear();
    let results: Vec<CellResult> = results
        .into_iter()
        .map(|r| r.expect("every cell ran or was read"))
        .collect();
    let written = write_outputs(grid, &results, out)?;
    Ok(CompareReport {
        results,
        trained: todo.len(),
        skipped,
        written,
    })
}

/// The estimated work of one training step, for the grid's ETA: the batch times the model's
/// MACs plus a per-image overhead (data, loss, optimizer), as MAC equivalents; forward and
/// backward scale alike, so the factor of about 3 between them cancels.
fn step_cost(cfg: &TrainConfig) -> u64 {
    const PER_IMAGE_OVERHEAD: usize = 20_000;
    let input = cfg.input_shape();
    let macs = crate::summary::summarize(
        input,
        &cfg.model
            .layers_with(input, cfg.dataset.num_classes(), &cfg.model_options()),
    )
    .map(|rows| rows.iter().map(|r| r.macs).sum::<usize>())
    .unwrap_or(0);
    ((macs + PER_IMAGE_OVERHEAD) * cfg.batch_size) as u64
}

fn describe(r: &CellResult) -> String {
    let (best, at) = r.best();
    let head = match r.record.status {
        CellStatus::Done => format!("test {:.2}%", 100.0 * r.final_acc()),
        CellStatus::Diverged => format!(
            "diverged at step {}",
            r.record.diverged_at.unwrap_or(r.record.iterations + 1)
        ),
    };
    format!(
        "{head} (best {:.2}% at {at}), {:.2} s, {:.0} img/s",
        100.0 * best,
        r.record.wall_secs,
        r.images_per_s()
    )
}

/// The first field in which two configs differ, for the error message.
fn config_difference(found: &TrainConfig, wanted: &TrainConfig) -> String {
    let (a, b) = (
        serde_json::to_value(found).unwrap_or_default(),
        serde_json::to_value(wanted).unwrap_or_default(),
    );
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (k, va) in a {
            let vb = b.get(k).cloned().unwrap_or_default();
            if *va != vb {
                return format!("{k} is {va} there, {vb} here");
            }
        }
    }
    "the configs differ".into()
}

fn read_record(dir: &Path) -> Result<Option<CellRecord>> {
    let path = dir.join("cell.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{}: not a valid cell record", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Steps already done by an interrupted cell (its last metrics row; 0 if none).
fn resumable_iteration(dir: &Path) -> usize {
    if !dir.join(checkpoint::FILE).exists() {
        return 0;
    }
    train::read_metrics(dir)
        .ok()
        .and_then(|m| m.last().map(|r| r.iteration))
        .unwrap_or(0)
}

/// A setting over its seeds.
struct Setting<'a> {
    model: ModelKind,
    optimizer: OptimizerKind,
    lr: f64,
    runs: Vec<&'a CellResult>,
}

impl Setting<'_> {
    /// Mean and sample standard deviation of the final accuracy (NaN if any seed diverged).
    fn final_stats(&self) -> (f64, f64) {
        mean_sd(self.runs.iter().map(|r| r.final_acc()))
    }

    fn best_stats(&self) -> (f64, f64) {
        mean_sd(self.runs.iter().map(|r| r.best().0))
    }

    fn diverged(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.record.status == CellStatus::Diverged)
            .count()
    }

    /// The ranking key: mean final accuracy, diverged settings last.
    fn score(&self) -> f64 {
        let m = self.final_stats().0;
        if m.is_finite() { m } else { f64::NEG_INFINITY }
    }

    /// The mean curve over seeds (at the iterations every seed evaluated) and its ± sd band.
    fn curve(&self, label: String, color: usize) -> Curve {
        let first = &self.runs[0].metrics;
        let mut points = vec![];
        let mut band = vec![];
        for (j, row) in first.iter().enumerate() {
            let vals: Vec<f64> = self
                .runs
                .iter()
                .filter_map(|r| r.metrics.get(j))
                .filter(|r| r.iteration == row.iteration)
                .map(|r| 100.0 * r.test_acc)
                .collect();
            if vals.len() != self.runs.len() {
                break;
            }
            let (m, sd) = mean_sd(vals.iter().copied());
            points.push((row.iteration as f64, m));
            band.push((row.iteration as f64, m - sd, m + sd));
        }
        Curve {
            label,
            points,
            band: (self.runs.len() > 1).then_some(band),
            color,
            stopped: self.diverged() > 0,
            dashed: false,
        }
    }
}

fn mean_sd(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = vals.collect();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

fn settings<'a>(grid: &Grid, results: &'a [CellResult]) -> Vec<Setting<'a>> {
    let mut out: Vec<Setting> = Vec::new();
    for r in results {
        let c = r.cell;
        match out
            .iter_mut()
            .find(|s| s.model == c.model && s.optimizer == c.optimizer && s.lr == c.lr)
        {
            Some(s) => s.runs.push(r),
            None => out.push(Setting {
                model: c.model,
                optimizer: c.optimizer,
                lr: c.lr,
                runs: vec![r],
            }),
        }
    }
    debug_assert_eq!(
        out.len(),
        grid.models.len() * grid.optimizers.len() * grid.lrs.len()
    );
    out
}

/// The best setting of each optimizer for `model`, in the grid's optimizer order.
fn best_per_optimizer<'a, 's>(
    grid: &Grid,
    settings: &'s [Setting<'a>],
    model: ModelKind,
) -> Vec<&'s Setting<'a>> {
    grid.optimizers
        .iter()
        .filter_map(|&o| {
            settings
                .iter()
                .filter(|s| s.model == model && s.optimizer == o)
                .max_by(|a, b| a.score().total_cmp(&b.score()))
        })
        .collect()
}

/// The grid's setting in words, for titles.
fn describe_grid(grid: &Grid, results: &[CellResult]) -> String {
    let iterations = results
        .iter()
        .map(|r| r.record.iterations)
        .max()
        .unwrap_or(0);
    let mut s = format!("batch {}, {iterations} iterations", grid.batch_size);
    if grid.seeds > 1 {
        let _ = write!(
            s,
            ", mean of {} seeds ({}..{}), band ± 1 sd",
            grid.seeds,
            grid.seed,
            grid.seed + grid.seeds as u64 - 1
        );
    } else {
        let _ = write!(s, ", seed {}", grid.seed);
    }
    if let Some(n) = grid.image_size {
        let _ = write!(s, ", {n}x{n} input");
    }
    if !grid.augment.is_none() {
        let _ = write!(s, ", augmented");
    }
    if let Some(n) = grid.train_limit {
        let _ = write!(s, ", first {n} training images");
    }
    s
}

/// Writes `summary.csv`, `summary.md` and the figures; returns the paths.
pub fn write_outputs(grid: &Grid, results: &[CellResult], out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = vec![];
    let mut put = |name: String, bytes: &[u8]| -> Result<()> {
        let p = out.join(name);
        write_atomic(&p, bytes)?;
        written.push(p);
        Ok(())
    };

    // summary.csv: a row per cell.
    let mut csv = String::from(
        "dataset,model,optimizer,lr,seed,status,iterations,final_test_acc,best_test_acc,best_iteration,wall_s,images_per_s\n",
    );
    for r in results {
        let (best, at) = r.best();
        let fin = r.final_acc();
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{:.6},{},{:.2},{:.1}",
            grid.dataset,
            r.cell.model,
            r.cell.optimizer,
            r.cell.lr,
            r.cell.seed,
            match r.record.status {
                CellStatus::Done => "done",
                CellStatus::Diverged => "diverged",
            },
            r.record.iterations,
            if fin.is_finite() {
                format!("{fin:.6}")
            } else {
                String::new()
            },
            best,
            at,
            r.record.wall_secs,
            r.images_per_s()
        );
    }
    put("summary.csv".into(), csv.as_bytes())?;

    let settings = settings(grid, results);
    let setting_text = describe_grid(grid, results);

    // summary.md: a table per model.
    let mut md = format!(
        "# {} grid: {}\n\n{setting_text}. Final and best test accuracy in %, mean ± sd over seeds; \
         wall time per cell (training and evaluation) and training images/s from this machine. \
         **Bold**: the best setting of the model (by final accuracy).\n",
        grid.dataset,
        grid.models
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for &model in &grid.models {
        let rows: Vec<&Setting> = settings.iter().filter(|s| s.model == model).collect();
        let best = rows
            .iter()
            .max_by(|a, b| a.score().total_cmp(&b.score()))
            .map(|s| (s.optimizer, s.lr));
        let _ = writeln!(
            md,
            "\n## {model}\n\n| optimizer | lr | final test acc | best test acc | wall s | images/s |\n|---|---:|---:|---:|---:|---:|"
        );
        for s in rows {
            let (f, fsd) = s.final_stats();
            let (b, bsd) = s.best_stats();
            let pm = |m: f64, sd: f64| {
                if !m.is_finite() {
                    "–".to_string()
                } else if grid.seeds > 1 {
                    format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * sd)
                } else {
                    format!("{:.2}", 100.0 * m)
                }
            };
            let fin = match s.diverged() {
                0 => pm(f, fsd),
                d if d == s.runs.len() => "diverged".into(),
                d => format!("diverged ({d} of {} seeds)", s.runs.len()),
            };
            let wall = s.runs.iter().map(|r| r.record.wall_secs).sum::<f64>() / s.runs.len() as f64;
            let ips = s.runs.iter().map(|r| r.images_per_s()).sum::<f64>() / s.runs.len() as f64;
            let mark = best == Some((s.optimizer, s.lr));
            let b_ = if mark { "**" } else { "" };
            let _ = writeln!(
                md,
                "| {b_}{}{b_} | {b_}{}{b_} | {b_}{fin}{b_} | {} | {wall:.1} | {ips:.0} |",
                s.optimizer,
                s.lr,
                pm(b, bsd)
            );
        }
    }
    put("summary.md".into(), md.as_bytes())?;

    // Per model: a panel per optimizer, a line per rate.
    let rate_color = |lr: f64| grid.lrs.iter().position(|&l| l == lr).unwrap_or(0);
    for &model in &grid.models {
        let panels = grid
            .optimizers
            .iter()
            .map(|&o| Panel {
                y_range: None,
                title: optimizer_title(o),
                curves: settings
                    .iter()
                    .filter(|s| s.model == model && s.optimizer == o)
                    .map(|s| s.curve(curve_label(s, format!("lr {}", s.lr)), rate_color(s.lr)))
                    .collect(),
            })
            .collect();
        let fig = Figure {
            title: format!(
                "{}, {model}: test accuracy by optimizer and learning rate",
                dataset_title(grid.dataset)
            ),
            subtitle: setting_text.clone(),
            panels,
            x_label: "iteration".into(),
            y_label: "test accuracy (%)".into(),
            y_range: (0.0, 100.0),
            legend: Legend::MiddleRight,
        };
        put(format!("{model}-optimizers.png"), &fig.png()?)?;
        put(format!("{model}-optimizers.svg"), fig.svg()?.as_bytes())?;
    }

    // A panel per model: every optimizer at its best rate.
    let mut panels = vec![];
    for &model in &grid.models {
        let best = best_per_optimizer(grid, &settings, model);
        let curves: Vec<Curve> = best
            .iter()
            .map(|s| {
                let color = grid
                    .optimizers
                    .iter()
                    .position(|&o| o == s.optimizer)
                    .unwrap_or(0);
                s.curve(
                    curve_label(s, format!("{} lr {}", s.optimizer, s.lr)),
                    color,
                )
            })
            .collect();
        // Each model's panel zooms on the second half of its curves that learned (the start
        // of a curve may leave the chart at the bottom).
        let mut shown = vec![];
        for c in curves.iter().filter(|c| !c.stopped) {
            let half = c.points.last().map_or(0.0, |p| p.0) / 2.0;
            shown.extend(c.points.iter().filter(|p| p.0 >= half).map(|p| p.1));
        }
        // Room below the curves for the legend (lower right): 40% more span.
        let (lo, hi) = percent_range(shown.iter().copied());
        shown.push(lo - 0.4 * (hi - lo));
        panels.push(Panel {
            title: model.to_string(),
            curves,
            y_range: Some(percent_range(shown)),
        });
    }
    let fig = Figure {
        title: format!(
            "{}: each optimizer at its best learning rate",
            dataset_title(grid.dataset)
        ),
        subtitle: setting_text,
        panels,
        x_label: "iteration".into(),
        y_label: "test accuracy (%)".into(),
        y_range: (0.0, 100.0),
        legend: Legend::LowerRight,
    };
    put("best.png".into(), &fig.png()?)?;
    put("best.svg".into(), fig.svg()?.as_bytes())?;
    Ok(written)
}

fn curve_label(s: &Setting, head: String) -> String {
    let (f, _) = s.final_stats();
    match s.diverged() {
        0 => format!("{head}: {:.2}%", 100.0 * f),
        _ => format!("{head}: diverged"),
    }
}

fn optimizer_title(o: OptimizerKind) -> String {
    match o {
        OptimizerKind::Sgd => "gradient descent (sgd)".into(),
        OptimizerKind::Momentum => "momentum 0.9".into(),
        OptimizerKind::Adam => "Adam".into(),
        OptimizerKind::Adagrad => "AdaGrad".into(),
        OptimizerKind::Rmsprop => "RMSProp".into(),
    }
}

fn dataset_title(d: DatasetKind) -> &'static str {
    match d {
        DatasetKind::Mnist => "MNIST",
        DatasetKind::Cifar10 => "CIFAR-10",
        DatasetKind::Oxflower17 => "Oxford-17 flowers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_round_trips_through_toml_and_defaults_apply() {
        let text = r#"
            dataset = "mnist"
            models = ["fc", "lenet5"]
            optimizers = ["sgd", "adam"]
            lrs = [0.001, 0.1]
            iterations = 500
            seeds = 3
        "#;
        let g: Grid = toml::from_str(text).unwrap();
        assert_eq!(g.batch_size, 64);
        assert_eq!(g.seed, 42);
        assert_eq!(g.cells().len(), 2 * 2 * 2 * 3);
        assert_eq!(toml::from_str::<Grid>(&g.to_toml()).unwrap(), g);
        let bad = toml::from_str::<Grid>(&format!("{text}\nlearning_rate = 3")).unwrap_err();
        assert!(bad.to_string().contains("learning_rate"), "{bad}");
    }

    #[test]
    fn cell_config_and_folder() {
        let mut g = Grid::new(
            DatasetKind::Mnist,
            vec![ModelKind::Lenet5Like],
            vec![OptimizerKind::Rmsprop],
            vec![5e-5],
        );
        g.iterations = Some(1000);
        let cell = g.cells()[0];
        let cfg = g.config(&cell, 60_000);
        assert_eq!(
            (cfg.eval_every, cfg.checkpoint_every, cfg.lr),
            (50, 50, 5e-5)
        );
        assert_eq!(
            cell.dir(Path::new("g")),
            Path::new("g/lenet5-like/rmsprop-lr0.00005-seed42")
        );
        g.lrs.push(-1.0);
        assert!(g.check().unwrap_err().to_string().contains("-1"));
    }

    #[test]
    fn mean_and_sd() {
        assert_eq!(mean_sd([1.0, 3.0].into_iter()), (2.0, 2f64.sqrt()));
        assert_eq!(mean_sd([0.5].into_iter()), (0.5, 0.0));
    }
}
