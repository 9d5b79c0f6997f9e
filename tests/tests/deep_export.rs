//! The deep classics through the float path: a briefly trained AlexNet and VGG-16-BN (at reduced
//! size) export to complete ONNX (one `LRN` node per LRN; batch norm folded into the
//! convolutions), `export check` shapes every node, and tract computes burn's logits within
//! 1e-4 of the largest logit.

use export::{graph, ops, parity};
use host_train::data::{DatasetKind, ImageSet, Splits};
use host_train::models::ModelKind;
use host_train::rng::SplitMix64;
use host_train::train::{self, RunOptions, TrainConfig};

/// Noise images of `side` x `side` as both splits.
fn noise(n: usize, side: usize, classes: usize) -> Splits {
    let mut rng = SplitMix64::new(5);
    let set = ImageSet {
        images: (0..n * 3 * side * side)
            .map(|_| rng.below(256) as u8)
            .collect(),
        labels: (0..n).map(|i| (i % classes) as u8).collect(),
        shape: [3, side, side],
        num_classes: classes,
    };
    Splits {
        train: set.clone(),
        test: set,
    }
}

/// Trains `kind` for `steps` steps on noise, exports it with a 4-image parity sample, and
/// returns the ONNX path (inside `dir`).
fn trained_export(
    kind: ModelKind,
    dataset: DatasetKind,
    side: usize,
    steps: usize,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let data = noise(8, side, dataset.num_classes());
    let cfg = TrainConfig {
        iterations: Some(steps),
        batch_size: 4,
        image_size: (dataset == DatasetKind::Oxflower17).then_some(side),
        ..TrainConfig::new(kind, dataset)
    };
    let run = dir.join("run");
    train::train(&cfg, &data, &run, &RunOptions::default()).unwrap();
    let onnx = dir.join("model.onnx");
    host_train::onnx::export_run(&run, &onnx, &data, 4, false).unwrap();
    onnx
}

#[test]
fn alexnet_onnx_has_lrn_nodes_and_matches_burn_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = trained_export(
        ModelKind::Alexnet,
        DatasetKind::Oxflower17,
        67,
        1,
        dir.path(),
    );
    let g = graph::load(&onnx).unwrap();
    let ops_of = |op: &str| g.nodes.iter().filter(|n| n.op == op).count();
    assert_eq!(ops_of("LRN"), 2);
    assert_eq!(ops_of("Conv"), 5);
    // The primitive ops of the unfused pattern are gone.
    assert_eq!(ops_of("Log") + ops_of("Exp") + ops_of("AveragePool"), 0);
    let lrn = g.nodes.iter().find(|n| n.op == "LRN").unwrap();
    assert_eq!(lrn.int("size", 0).unwrap(), 5);
    assert!((lrn.float("alpha", 0.0).unwrap() - 1e-4).abs() < 1e-9);
    assert_eq!(lrn.float("beta", 0.0).unwrap(), 0.75);
    assert_eq!(lrn.float("bias", 0.0).unwrap(), 2.0);

    let a = ops::analyse(&g).unwrap();
    assert_eq!(a.output_shape, Some(vec![1, 17]));
    assert_eq!(a.off_device.len(), 2, "{:?}", a.off_device);
    let report = export::check::report(&g, &a, None);
    assert!(!report.ok, "LRN is not a device op");
    assert!(report.text.contains("op LRN (node"), "{}", report.text);

    let sample = host_train::onnx::read_sample(&onnx.with_extension("sample.pb")).unwrap();
    let p = parity::check(&onnx, &sample).unwrap();
    eprintln!("alexnet: {p:?}, relative {:.2e}", p.max_rel_diff());
    assert!(p.passes(1e-4), "{p:?}");
}

#[test]
fn vgg16_bn_exports_with_batch_norm_folded_and_matches_burn_in_tract() {
    let dir = tempfile::tempdir().unwrap();
    // Two steps move the running statistics away from their initial 0 / 1.
    let onnx = trained_export(ModelKind::Vgg16Bn, DatasetKind::Cifar10, 32, 2, dir.path());
    let g = graph::load(&onnx).unwrap();
    let ops_of = |op: &str| g.nodes.iter().filter(|n| n.op == op).count();
    assert_eq!(ops_of("Conv"), 13);
    assert_eq!(ops_of("BatchNormalization"), 0);
    let a = ops::analyse(&g).unwrap();
    assert!(a.unsupported.is_empty(), "{:?}", a.unsupported);
    // 13 convolutions and 3 dense layers, no batch norm parameters left.
    let params: usize = a.nodes.iter().map(|n| n.info.params).sum();
    let rows =
        host_train::summary::summarize([3, 32, 32], &ModelKind::Vgg16.layers([3, 32, 32], 10))
            .unwrap();
    assert_eq!(params, rows.iter().map(|r| r.params).sum::<usize>());

    let sample = host_train::onnx::read_sample(&onnx.with_extension("sample.pb")).unwrap();
    let p = parity::check(&onnx, &sample).unwrap();
    eprintln!("vgg16-bn: {p:?}, relative {:.2e}", p.max_rel_diff());
    assert!(p.passes(1e-4), "{p:?}");
}
