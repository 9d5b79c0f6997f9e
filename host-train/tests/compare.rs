//! `host-train compare` on the real MNIST: a 2x2 grid of a few steps per cell, its folders,
//! summary and figures; skipping finished cells; the same numbers on a second run; a diverged
//! cell recorded, not fatal; a folder trained with another config refused.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use host_train::compare::{self, CellStatus, CompareOptions, Grid};
use host_train::data::{self, DatasetKind, Splits};
use host_train::models::ModelKind;
use host_train::optim::OptimizerKind;
use host_train::train;

fn mnist() -> &'static Splits {
    static DATA: OnceLock<Splits> = OnceLock::new();
    DATA.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
        let found = data::locate(DatasetKind::Mnist, Some(&root))
            .expect("the tests need the real MNIST in ../shared/data or $HOST_TRAIN_DATA_DIR");
        DatasetKind::Mnist.load(&found.dir).expect("MNIST loads")
    })
}

fn tiny_grid() -> Grid {
    let mut g = Grid::new(
        DatasetKind::Mnist,
        vec![ModelKind::Fc],
        vec![OptimizerKind::Sgd, OptimizerKind::Adam],
        vec![0.01, 0.1],
    );
    g.iterations = Some(30);
    g.eval_every = Some(10);
    g.train_limit = Some(4000);
    g.test_limit = Some(500);
    g
}

fn opts() -> CompareOptions {
    CompareOptions {
        device: burn::tensor::Device::flex(),
        progress: false,
    }
}

/// summary.csv without the two measured columns (wall time, images/s).
fn accuracy_columns(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("summary.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
        .collect()
}

#[test]
fn a_tiny_grid_trains_every_cell_writes_its_figures_and_skips_on_the_second_call() {
    let grid = tiny_grid();
    let out = tempfile::tempdir().unwrap();
    let report = compare::run(&grid, mnist(), out.path(), &opts()).unwrap();
    assert_eq!((report.trained, report.skipped), (4, 0));

    // Each cell is an ordinary, finished run folder.
    for cell in grid.cells() {
        let dir = cell.dir(out.path());
        for f in ["config.json", "metrics.csv", "model.bpk", "cell.json"] {
            assert!(dir.join(f).is_file(), "{} lacks {f}", dir.display());
        }
        let cfg = train::read_config(&dir).unwrap();
        assert_eq!(
            (cfg.optimizer, cfg.lr, cfg.seed),
            (cell.optimizer, cell.lr, 42)
        );
        let rows = train::read_metrics(&dir).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.iteration).collect::<Vec<_>>(),
            [10, 20, 30]
        );
    }

    // A CSV row per cell, whose final accuracy is the cell's last evaluation.
    let csv = std::fs::read_to_string(out.path().join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 4, "{csv}");
    assert!(lines[0].starts_with("dataset,model,optimizer,lr,seed,status,"));
    for (line, cell) in lines[1..].iter().zip(grid.cells()) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(
            f[..6],
            [
                "mnist",
                "fc",
                &cell.optimizer.to_string(),
                &cell.lr.to_string(),
                "42",
                "done"
            ]
        );
        let last = train::read_metrics(&cell.dir(out.path()))
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(f[7], format!("{:.6}", last.test_acc));
        // 30 steps on 4,000 digits: every cell learns something.
        assert!(last.test_acc > 0.3, "{line}");
    }
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert_eq!(
        md.lines().filter(|l| l.starts_with("| **")).count(),
        1,
        "one best setting marked:\n{md}"
    );

    // The figures decode, at the size their layout gives.
    // (Panels of 520x380 under a 64-pixel title; a figure of one panel is 760x440.)
    for (name, size) in [
        ("fc-optimizers.png", (2 * 520, 64 + 380)),
        ("best.png", (760, 64 + 440)),
    ] {
        let img = image::open(out.path().join(name)).unwrap();
        assert_eq!((img.width(), img.height()), size, "{name}");
        let svg = std::fs::read_to_string(out.path().join(name.replace(".png", ".svg"))).unwrap();
        assert!(svg.contains("test accuracy (%)"), "{name}");
    }
    let svg = std::fs::read_to_string(out.path().join("fc-optimizers.svg")).unwrap();
    assert!(svg.contains("lr 0.01") && svg.contains("lr 0.1") && svg.contains("Adam"));

    // The second call trains nothing and writes the same numbers.
    let before = accuracy_columns(out.path());
    let again = compare::run(&grid, mnist(), out.path(), &opts()).unwrap();
    assert_eq!((again.trained, again.skipped), (0, 4));
    assert_eq!(accuracy_columns(out.path()), before);

    // A cell that lost its record (killed after its last checkpoint) is resumed, not redone.
    let cell = grid.cells()[3];
    std::fs::remove_file(cell.dir(out.path()).join("cell.json")).unwrap();
    let third = compare::run(&grid, mnist(), out.path(), &opts()).unwrap();
    assert_eq!((third.trained, third.skipped), (1, 3));
    assert_eq!(accuracy_columns(out.path()), before);

    // The same grid in a fresh folder gives the same CSV and the same curves.
    let other = tempfile::tempdir().unwrap();
    compare::run(&grid, mnist(), other.path(), &opts()).unwrap();
    assert_eq!(accuracy_columns(other.path()), before);
    for cell in grid.cells() {
        let a = train::read_metrics(&cell.dir(out.path())).unwrap();
        let b = train::read_metrics(&cell.dir(other.path())).unwrap();
        let acc = |m: &[train::MetricsRow]| {
            m.iter()
                .map(|r| (r.test_acc, r.train_loss))
                .collect::<Vec<_>>()
        };
        assert_eq!(acc(&a), acc(&b));
    }

    // A folder trained with other settings is refused, naming what differs.
    let mut longer = grid.clone();
    longer.iterations = Some(40);
    let err = compare::run(&longer, mnist(), out.path(), &opts())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another config") && err.contains("iterations"),
        "{err}"
    );
    let kept = Grid::read(&out.path().join("grid.toml")).unwrap();
    assert_eq!(kept, grid, "a refused grid leaves grid.toml as it was");
}

#[test]
fn a_diverging_cell_is_recorded_and_the_grid_goes_on() {
    let mut grid = tiny_grid();
    grid.optimizers = vec![OptimizerKind::Sgd];
    // So high that the weights overflow f32 at the second step (1e20 still trains: the
    // softmax's gradient is bounded).
    grid.lrs = vec![1e38, 0.05];
    let out = tempfile::tempdir().unwrap();
    let report = compare::run(&grid, mnist(), out.path(), &opts()).unwrap();
    let status: Vec<CellStatus> = report.results.iter().map(|r| r.record.status).collect();
    assert_eq!(status, [CellStatus::Diverged, CellStatus::Done]);
    let csv = std::fs::read_to_string(out.path().join("summary.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[5..8], ["diverged", "1", ""], "{csv}");
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(
        md.contains("| diverged |") && md.contains("| **sgd** | **0.05** |"),
        "{md}"
    );
    // A finished diverged cell is not retried.
    let again = compare::run(&grid, mnist(), out.path(), &opts()).unwrap();
    assert_eq!((again.trained, again.skipped), (0, 2));
}

#[test]
fn several_seeds_give_a_mean_with_a_band() {
    let mut grid = tiny_grid();
    grid.optimizers = vec![OptimizerKind::Adam];
    grid.lrs = vec![0.01];
    grid.seeds = 2;
    let out = tempfile::tempdir().unwrap();
    let report = compare::run(&grid, mnist(), out.path(), &opts()).unwrap();
    let seeds: Vec<u64> = report.results.iter().map(|r| r.cell.seed).collect();
    assert_eq!(seeds, [42, 43]);
    let finals: Vec<f64> = report.results.iter().map(|r| r.final_acc()).collect();
    assert_ne!(finals[0], finals[1], "two seeds, two different runs");
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    let mean = 100.0 * (finals[0] + finals[1]) / 2.0;
    assert!(md.contains(&format!("**{mean:.2} ± ")), "{md}");
    assert!(md.contains("mean of 2 seeds (42..43), band ± 1 sd"), "{md}");
    // The band is a filled polygon under the line.
    let svg = std::fs::read_to_string(out.path().join("fc-optimizers.svg")).unwrap();
    assert!(svg.contains("<polygon"), "no band drawn");
}
