//! The `host-train` binary end to end, on the real MNIST.

use std::path::PathBuf;
use std::process::Command;

/// The binary, with downloads pointed at a dead local port: tests never touch the network.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_host-train"));
    c.env("HOST_TRAIN_MIRRORS", "http://127.0.0.1:9/");
    c
}

fn data_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("host-train runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn summary_prints_the_table() {
    let (ok, out, _) = run(bin().args(["summary", "--model", "lenet5", "--input", "28x28x1"]));
    assert!(ok);
    assert!(
        out.contains("conv 6@5x5 s1 same") && out.contains("6x28x28"),
        "{out}"
    );
    assert!(
        out.contains("avgpool 2x2 s2") && out.contains("sigmoid"),
        "{out}"
    );
    assert!(
        out.contains("total: 61706 parameters, 416520 MACs per image"),
        "{out}"
    );
    let (ok, _, err) = run(bin().args(["summary", "--input", "28by28"]));
    assert!(!ok && err.contains("expected WxHxC"), "{err}");
    let (ok, _, err) = run(bin().args(["summary", "--input", "4x4x1"]));
    assert!(!ok && err.contains("does not fit 4x4"), "{err}");
}

#[test]
fn datasets_verifies_the_shared_copy() {
    let (ok, out, _) = run(bin().arg("datasets").arg("--data-dir").arg(data_root()));
    assert!(ok, "{out}");
    assert_eq!(out.matches("verified").count(), 4, "{out}");
}

#[test]
fn train_then_eval_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    let runf = dir.path().join("run");
    let (ok, out, err) = run(bin()
        .args([
            "train",
            "--model",
            "fc",
            "--optimizer",
            "sgd",
            "--train-limit",
            "2000",
            "--quiet",
            "--threads",
            "1",
        ])
        .arg("--data-dir")
        .arg(data_root())
        .arg("--out")
        .arg(&runf));
    assert!(ok, "{err}");
    let acc: f64 = out
        .trim()
        .strip_prefix("test accuracy: ")
        .and_then(|s| s.strip_suffix('%'))
        .unwrap_or_else(|| panic!("last line is not `test accuracy: NN.NN%`: {out}"))
        .parse()
        .unwrap();
    assert!(acc > 70.0, "fc after 32 steps of SGD: {acc}%");

    let (ok, out, err) = run(bin()
        .args(["eval", "--run"])
        .arg(&runf)
        .arg("--data-dir")
        .arg(data_root()));
    assert!(ok, "{err}");
    assert!(
        out.contains("confusion matrix") && out.contains(&format!("test accuracy: {acc:.2}%")),
        "{out}"
    );

    // Extending the finished run by one epoch continues from its checkpoint.
    let (ok, out, err) = run(bin()
        .args(["train", "--quiet", "--epochs", "2", "--resume"])
        .arg(&runf)
        .arg("--data-dir")
        .arg(data_root()));
    assert!(ok, "{err}");
    assert!(out.starts_with("test accuracy: "), "{out}");
    let csv = std::fs::read_to_string(runf.join("metrics.csv")).unwrap();
    let iters: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(iters, ["32", "64"], "{csv}");

    // The run's own plot, and a comparison plot of two runs.
    let svg = std::fs::read_to_string(runf.join("accuracy.svg")).unwrap();
    assert!(
        svg.contains("fc: test ") && svg.contains("fc: train"),
        "test and train curves"
    );
    let cmp = dir.path().join("cmp.png");
    let (ok, _, err) = run(bin()
        .args(["plot", "--run"])
        .arg(&runf)
        .arg("--run")
        .arg(&runf)
        .arg("--out")
        .arg(&cmp));
    assert!(ok, "{err}");
    let png = image::open(&cmp).unwrap();
    assert_eq!((png.width(), png.height()), (760, 504));
    let (ok, _, err) = run(bin()
        .args(["plot", "--run"])
        .arg(&runf)
        .arg("--out")
        .arg(dir.path().join("cmp.jpg")));
    assert!(!ok && err.contains("name a .png or .svg file"), "{err}");
    let (ok, _, err) = run(bin()
        .args(["plot", "--run"])
        .arg(dir.path().join("nope"))
        .arg("--out")
        .arg(&cmp));
    assert!(!ok && err.contains("metrics.csv"), "{err}");
}

#[test]
fn missing_data_offline_says_which_files_to_put_where() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nowhere");
    std::fs::create_dir(&empty).unwrap();
    let (ok, _, err) = run(bin()
        .args(["train", "--quiet", "--out"])
        .arg(dir.path().join("run"))
        .arg("--data-dir")
        .arg(&empty)
        .current_dir(dir.path()));
    assert!(!ok);
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        assert!(err.contains(f), "{err}");
    }
    assert!(
        err.contains("download failed") && err.contains(&empty.join("mnist").display().to_string()),
        "{err}"
    );
}

#[test]
fn compare_reads_a_grid_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid.toml");
    std::fs::write(
        &grid,
        "dataset = \"mnist\"\nmodels = [\"fc\"]\noptimizers = [\"sgd\", \"momentum\"]\n\
         lrs = [0.5]\niterations = 8\neval_every = 4\ntrain_limit = 1000\ntest_limit = 200\n",
    )
    .unwrap();
    let out = dir.path().join("g");
    let (ok, stdout, err) = run(bin()
        .args(["compare", "--grid"])
        .arg(&grid)
        .args(["--lrs", "0.01,0.1", "--quiet", "--out"])
        .arg(&out)
        .arg("--data-dir")
        .arg(data_root()));
    assert!(ok, "{err}");
    assert!(err.contains("= 4 cells"), "{err}");
    assert!(
        err.contains("[4/4] fc momentum lr 0.1 seed 42: test "),
        "{err}"
    );
    assert!(
        stdout.contains("summary.csv") && stdout.contains("best.png"),
        "{stdout}"
    );
    assert!(out.join("fc/sgd-lr0.01-seed42/model.bpk").is_file());
    // The grid as run is written back, with the flag's rates.
    let written = std::fs::read_to_string(out.join("grid.toml")).unwrap();
    assert!(written.contains("lrs = [0.01, 0.1]"), "{written}");
    let (ok, _, err) = run(bin()
        .args(["compare", "--grid"])
        .arg(out.join("grid.toml"))
        .args(["--quiet", "--out"])
        .arg(&out)
        .arg("--data-dir")
        .arg(data_root()));
    assert!(ok && err.contains("4 of 4 cells already finished"), "{err}");

    // An empty grid, a bad file: errors that say why.
    let (ok, _, err) = run(bin().args(["compare", "--models", "fc", "--out"]).arg(&out));
    assert!(!ok && err.contains("--optimizers has no entries"), "{err}");
    std::fs::write(&grid, "dataset = \"mnist\"\nmodel = [\"fc\"]\n").unwrap();
    let (ok, _, err) = run(bin()
        .args(["compare", "--grid"])
        .arg(&grid)
        .arg("--out")
        .arg(&out));
    assert!(
        !ok && err.contains("not a valid grid") && err.contains("model"),
        "{err}"
    );
}

/// The header of a `.npy` file and its data.
fn npy(path: &std::path::Path) -> (String, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8(bytes[10..10 + len].to_vec()).unwrap();
    (header, bytes[10 + len..].to_vec())
}

#[test]
fn dump_writes_the_splits_host_train_trains_on() {
    use host_train::data::{DatasetKind, LoadOptions};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mnist");
    let (ok, said, err) = run(bin()
        .args(["dump", "--dataset", "mnist", "--data-dir"])
        .arg(data_root())
        .arg("--out")
        .arg(&out));
    assert!(ok, "{err}");
    assert!(said.contains("60000 train images of 1x28x28"), "{said}");
    let splits = DatasetKind::Mnist.load(&data_root().join("mnist")).unwrap();
    let (header, images) = npy(&out.join("train-images.npy"));
    assert!(header.contains("'descr': '|u1'") && header.contains("(60000, 1, 28, 28)"));
    assert!(
        images == splits.train.images,
        "train images differ from the loader's"
    );
    let (header, labels) = npy(&out.join("test-labels.npy"));
    assert!(header.contains("'shape': (10000,)"), "{header}");
    assert_eq!(labels, splits.test.labels);

    // The flowers as a small JPEG copy: the same split, the pixels within JPEG's loss.
    let copy = dir.path().join("flowers");
    let cache = dir.path().join("cache");
    let (ok, said, err) = run(bin()
        .env("HOST_TRAIN_CACHE_DIR", &cache)
        .args([
            "dump",
            "--dataset",
            "oxflower17",
            "--format",
            "jpeg",
            "--image-size",
            "32",
        ])
        .args(["--quality", "95", "--data-dir"])
        .arg(data_root())
        .arg("--out")
        .arg(&copy));
    assert!(ok, "{err}");
    assert!(
        said.contains("1360 images at 32x32, JPEG quality 95"),
        "{said}"
    );
    let opts = LoadOptions {
        image_size: Some(32),
        cache_dir: Some(cache),
    };
    let original = DatasetKind::Oxflower17
        .load_with(&data_root().join("oxflower17"), &opts)
        .unwrap();
    let small = DatasetKind::Oxflower17.load_with(&copy, &opts).unwrap();
    assert_eq!(small.train.labels, original.train.labels);
    assert_eq!(small.test.labels, original.test.labels);
    let diff: u64 = small
        .test
        .images
        .iter()
        .zip(&original.test.images)
        .map(|(&a, &b)| a.abs_diff(b) as u64)
        .sum();
    let mean = diff as f64 / original.test.images.len() as f64;
    assert!(mean < 3.0, "mean absolute pixel difference {mean:.2}");
    assert!(
        std::fs::read_to_string(copy.join("classes.txt"))
            .unwrap()
            .starts_with("00 "),
    );

    let (ok, _, err) = run(bin()
        .args([
            "dump",
            "--dataset",
            "cifar10",
            "--format",
            "jpeg",
            "--data-dir",
        ])
        .arg(data_root())
        .arg("--out")
        .arg(dir.path().join("c")));
    assert!(
        !ok && err.contains("--format jpeg writes the flowers only"),
        "{err}"
    );
}
