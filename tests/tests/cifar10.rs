//! The CIFAR-10 golden models on the whole CIFAR-10 test set (10,000 images of our copy: 4 of 5
//! training batches, pixels recovered from JPEG, see `../shared/data/README-sources.md`):
//! float accuracy (burn on the committed run) at the goals, the int8 device model
//! (device-infer on the host) within 0.3 points of it, tract on the int8 ONNX within 2 LSB and
//! agreeing on the class, tract on the integer verification graph bit for bit, and the
//! README's table saying the same numbers.

use host_train::data::{self, DatasetKind};
use lenet_tests::{data_root, fixture_dir};

struct Measured {
    float: f64,
    int8: f64,
    tract_max_lsb: i32,
    tract_agree: usize,
    exact: usize,
}

fn measure(case: &str) -> Measured {
    let dir = fixture_dir().join("..").join(case);
    let found = data::locate(DatasetKind::Cifar10, Some(&data_root())).unwrap();
    let test = DatasetKind::Cifar10.load(&found.dir).unwrap().test;
    let n = test.len();
    assert_eq!(n, 10_000);
    let device = burn::tensor::Device::flex();
    let (_, model) = host_train::train::load_run_model(&dir.join("run"), &device).unwrap();
    let float = host_train::train::accuracy(&model, &test, None, &device);

    let bytes = std::fs::read(dir.join("model.lnq8")).unwrap();
    let aligned = device_infer::writer::AlignedBytes::new(&bytes);
    let m = device_infer::Model::from_bytes(aligned.as_bytes()).unwrap();
    let hwc: Vec<Vec<u8>> = (0..n)
        .map(|i| export::images::hwc(test.image(i), test.shape))
        .collect();
    let pixels: Vec<&[u8]> = hwc.iter().map(Vec::as_slice).collect();
    let ours = export::deploy::host_outputs(&m, &pixels).unwrap();
    let int8_ok = ours
        .iter()
        .zip(&test.labels)
        .filter(|(o, l)| device_infer::argmax(o) == **l as usize)
        .count();

    let inputs: Vec<Vec<f32>> = (0..n)
        .map(|i| export::parity::unit_pixels(test.image(i)))
        .collect();
    let theirs =
        export::parity::tract_int8_outputs(&dir.join("model.int8.onnx"), &[1, 3, 32, 32], &inputs)
            .unwrap();
    let (tract_max_lsb, tract_agree) = export::parity::int8_agreement(&ours, &theirs);
    let exact = export::parity::tract_integer_outputs(&m, &pixels).unwrap();
    let exact = ours.iter().zip(&exact).filter(|(a, b)| a == b).count();
    let r = Measured {
        float,
        int8: int8_ok as f64 / n as f64,
        tract_max_lsb,
        tract_agree,
        exact,
    };
    eprintln!(
        "{case}: float {:.2}%, int8 {:.2}%, tract int8 max {} LSB, argmax {}/{n}, tract on the integer graph bit-exact {}/{n}",
        100.0 * r.float,
        100.0 * r.int8,
        r.tract_max_lsb,
        r.tract_agree,
        r.exact
    );
    r
}

fn check(case: &str, float_goal: f64) {
    let r = measure(case);
    assert!(r.float >= float_goal, "{case}: float {}", r.float);
    assert!(
        (r.float - r.int8).abs() <= 0.003,
        "{case}: int8 {} vs float {}",
        r.int8,
        r.float
    );
    assert!(r.tract_max_lsb <= 2, "{case}: {} LSB", r.tract_max_lsb);
    assert!(r.tract_agree >= 9_950, "{case}: {}", r.tract_agree);
    assert_eq!(r.exact, 10_000, "{case}: tract on the integer graph");
    // The README reports these numbers.
    let readme = std::fs::read_to_string(fixture_dir().join("../../../README.md")).unwrap();
    let line = format!(
        "| `{case}` | {:.2}% | {:.2}% |",
        100.0 * r.float,
        100.0 * r.int8
    );
    assert!(
        readme.contains(&line),
        "README.md lacks the measured row {line:?}"
    );
}

#[test]
fn lenet5_like_on_cifar10_float_and_int8() {
    check("lenet5-like-cifar10", 0.70);
}

#[test]
fn cmsis_net_on_cifar10_float_and_int8() {
    // The goal: 80% float (a warm restart of the 90-epoch run, see the README).
    check("cmsis-cifar10", 0.80);
}
