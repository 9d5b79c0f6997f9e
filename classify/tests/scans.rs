//! MNIST-style preprocessing on digits made to look like scans (dark ink on light paper, 6x
//! larger, anywhere in a bigger frame), classified by the committed int8 LeNet5-like; and the
//! `lenet-classify` binary on PNG, PGM, raw stdin frames, JSON and `--bench`.

use std::path::PathBuf;
use std::process::Command;

use device_infer::engine::{Classify, Int8, ModelFile};
use host_train::data::{self, DatasetKind};
use image::{GrayImage, Luma};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model() -> PathBuf {
    root().join("tests/golden/lenet5-like/model.lnq8")
}

/// A test digit as a scan: 6x larger (bilinear), ink 40 on paper 225, at (dx, dy) in a
/// 260x220 frame.
fn scan(pixels: &[u8], dx: u32, dy: u32) -> GrayImage {
    let digit = GrayImage::from_raw(28, 28, pixels.to_vec()).unwrap();
    let big = image::imageops::resize(&digit, 168, 168, image::imageops::FilterType::Triangle);
    GrayImage::from_fn(260, 220, |x, y| {
        let v = if (dx..dx + 168).contains(&x) && (dy..dy + 168).contains(&y) {
            big.get_pixel(x - dx, y - dy)[0] as f32 / 255.0
        } else {
            0.0
        };
        Luma([(225.0 - v * 185.0).round() as u8])
    })
}

#[test]
fn scanned_test_digits_are_classified_as_well_as_the_originals() {
    let dir = data::locate(DatasetKind::Mnist, Some(&root().join("../shared/data")))
        .expect("the real MNIST in ../shared/data");
    let test = DatasetKind::Mnist.load(&dir.dir).unwrap().test;
    let file = ModelFile::read(&model()).unwrap();
    let mut engine = Int8::new(&file).unwrap();
    let n = 500;
    let (mut plain, mut scanned, mut agree) = (0, 0, 0);
    for i in 0..n {
        let label = test.labels[i] as usize;
        let a = engine.classify(test.image(i)).unwrap().class;
        let img = scan(test.image(i), (i as u32 * 7) % 90, (i as u32 * 13) % 50);
        let p = lenet_classify::mnist_style(&img).unwrap();
        assert!(p.inverted);
        let b = engine.classify(&p.pixels).unwrap().class;
        plain += usize::from(a == label);
        scanned += usize::from(b == label);
        agree += usize::from(a == b);
    }
    eprintln!("{n} test digits: originals {plain}, as scans {scanned}, same class {agree}");
    // The preprocessing re-makes an MNIST digit from its scan: nearly the same accuracy.
    assert!(plain >= 490, "originals: {plain}/{n}");
    assert!(
        scanned + 5 >= plain,
        "as scans: {scanned}/{n} against {plain}/{n}"
    );
    // Without it, the raw frame (squashed to 28x28, dark on light) is not a digit to the net.
    let wrong = (0..50)
        .filter(|&i| {
            let img = image::imageops::resize(
                &scan(test.image(i), 40, 20),
                28,
                28,
                image::imageops::FilterType::Triangle,
            );
            engine.classify(img.as_raw()).unwrap().class != test.labels[i] as usize
        })
        .count();
    assert!(wrong > 25, "only {wrong}/50 wrong without preprocessing");
}

#[test]
fn the_binary_reads_png_pgm_and_stdin_frames() {
    let dir = data::locate(DatasetKind::Mnist, Some(&root().join("../shared/data"))).unwrap();
    let test = DatasetKind::Mnist.load(&dir.dir).unwrap().test;
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("seven.png");
    scan(test.image(0), 30, 20).save(&png).unwrap(); // test digit 0 is a 7
    let pgm = tmp.path().join("two.pgm");
    let s = scan(test.image(1), 50, 10); // a 2
    let mut bytes = format!("P5\n{} {}\n255\n", s.width(), s.height()).into_bytes();
    bytes.extend_from_slice(s.as_raw());
    std::fs::write(&pgm, bytes).unwrap();
    let bin = env!("CARGO_BIN_EXE_lenet-classify");
    let out = Command::new(bin)
        .arg("--model")
        .arg(model())
        .args([&png, &pgm])
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["class"], 7, "{stdout}");
    assert_eq!(lines[1]["class"], 2, "{stdout}");
    assert_eq!(lines[0]["scores"].as_array().unwrap().len(), 10);
    // The int8 engine also prints its raw codes: score = code - zero point.
    let (codes, zp) = (
        lines[0]["codes"].as_array().unwrap(),
        lines[0]["zero_point"].as_i64().unwrap(),
    );
    assert_eq!(codes.len(), 10);
    for (c, v) in codes.iter().zip(lines[0]["scores"].as_array().unwrap()) {
        assert_eq!((c.as_i64().unwrap() - zp) as f64, v.as_f64().unwrap());
    }

    // Raw frames on stdin, through tract on the float ONNX, with a benchmark.
    let mut child = Command::new(bin)
        .arg("--model")
        .arg(root().join("tests/golden/lenet5-like/model.onnx"))
        .args(["--engine", "tract", "-", "--bench", "50"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let frames = [test.image(0), test.image(1), test.image(2)].concat();
    child.stdin.take().unwrap().write_all(&frames).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("stdin frame 0: 7  scores [") && stdout.contains("stdin frame 2: 1 "),
        "{stdout}"
    );
    assert!(
        stderr.contains("p50") && stderr.contains("p99") && stderr.contains("images/s"),
        "{stderr}"
    );

    // Errors: a partial frame, a file that is no image.
    let mut child = Command::new(bin)
        .arg("--model")
        .arg(model())
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&[0u8; 1000]).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a whole number of 784-byte frames"),
        "{err}"
    );
    let out = Command::new(bin)
        .args(["--engine", "tract", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("need --model FILE.onnx"),
        "{err}"
    );
    let junk = tmp.path().join("junk.png");
    std::fs::write(&junk, b"hello").unwrap();
    let out = Command::new(bin)
        .arg("--model")
        .arg(model())
        .arg(&junk)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("junk.png") && err.contains("not a PNG, JPEG or PGM"),
        "{err}"
    );
}
