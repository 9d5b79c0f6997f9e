//! One trained LeNet5-like, three runtimes: burn (host-train), burn-import (the ONNX file
//! turned back into Burn code) and tract (an independent ONNX runtime) compute the same logits.

use burn::tensor::{Device, Tensor};
use host_train::data::{self, DatasetKind, Splits};
use host_train::models::Network;
use lenet_tests::{data_root, fixture_dir, imported};

fn mnist() -> Splits {
    let found =
        data::locate(DatasetKind::Mnist, Some(&data_root())).expect("MNIST in ../shared/data");
    DatasetKind::Mnist.load(&found.dir).unwrap()
}

fn original() -> Network {
    host_train::train::load_run_model(&fixture_dir().join("run"), &Device::flex())
        .unwrap()
        .1
}

fn logits(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [n, k] = t.dims();
    let v: Vec<f32> = t.into_data().iter::<f32>().collect();
    (0..n).map(|i| v[i * k..(i + 1) * k].to_vec()).collect()
}

/// Largest |a - b| and how many rows have the same argmax.
fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    let mut max = 0f32;
    let mut agree = 0;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        max = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(max, f32::max);
        agree += usize::from(export::parity::argmax(x) == export::parity::argmax(y));
    }
    (max, agree)
}

#[test]
fn burn_import_of_the_exported_onnx_matches_the_original_model() {
    let device = Device::flex();
    let data = mnist();
    let model = original();
    // Loads the weights the build script wrote beside the generated code.
    let imported = imported::Model::default();
    let idx: Vec<usize> = (0..200).collect();
    let mut max = 0f32;
    let mut agree = 0;
    for chunk in idx.chunks(1) {
        // The ONNX file has a static batch of 1.
        let (x, _) = data.test.batch(chunk, &device);
        let (m, a) = compare(
            &logits(model.forward(x.clone())),
            &logits(imported.forward(x)),
        );
        max = max.max(m);
        agree += a;
    }
    eprintln!(
        "burn vs burn-import on 200 test images: max |diff| {max:.3e}, argmax agrees {agree}/200"
    );
    assert!(max <= 1e-5, "max |diff| {max}");
    assert_eq!(agree, 200);
}

#[test]
fn burn_and_tract_agree_on_1000_test_images() {
    let device = Device::flex();
    let data = mnist();
    let model = original();
    let n = 1000;
    let idx: Vec<usize> = (0..n).collect();
    let (x, _) = data.test.batch(&idx, &device);
    let ours = logits(model.forward(x.clone()));
    let pixels: Vec<f32> = x.into_data().iter::<f32>().collect();
    let tract =
        export::parity::tract_logits(&fixture_dir().join("model.onnx"), &pixels, &[n, 1, 28, 28])
            .unwrap();
    let (max, agree) = compare(&ours, &tract);
    let correct = tract
        .iter()
        .zip(&data.test.labels)
        .filter(|(t, l)| export::parity::argmax(t) == **l as usize)
        .count();
    eprintln!(
        "burn vs tract on {n} test images: max |diff| {max:.3e}, argmax agrees {agree}/{n}, tract accuracy {correct}/{n}"
    );
    assert!(max <= 1e-5, "max |diff| {max}");
    assert_eq!(agree, n);
    assert!(correct >= 970, "the fixture model classifies {correct}/{n}");
}

#[test]
fn the_committed_sample_matches_the_onnx_file_and_burn() {
    let sample = host_train::onnx::read_sample(&fixture_dir().join("model.sample.pb")).unwrap();
    let bytes = std::fs::read(fixture_dir().join("model.onnx")).unwrap();
    assert_eq!(
        sample.onnx_sha256,
        host_train::data::download::sha256_hex(&bytes),
        "sample and ONNX file are from different exports"
    );
    let p = export::parity::check(&fixture_dir().join("model.onnx"), &sample).unwrap();
    assert_eq!((p.cases, p.argmax_agree), (32, 32));
    assert!(p.max_abs_diff <= 1e-5, "{p:?}");
}
