//! The colour models: every model against its summary at the input sizes it takes, the
//! published parameter counts, and a smoke test per deep model (a few tiny batches at reduced
//! size, through the ordinary training loop, where the loss falls).

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use host_train::data::{DatasetKind, ImageSet, Splits};
use host_train::models::{ModelKind, ModelOptions, PoolKind};
use host_train::rng::SplitMix64;
use host_train::summary;
use host_train::train::{self, RunOptions, TrainConfig};

/// The smallest square input each model takes in these tests, and its channels.
fn test_input(kind: ModelKind) -> [usize; 3] {
    match kind {
        ModelKind::Fc | ModelKind::Lenet5 | ModelKind::Lenet5Like => [3, 32, 32],
        ModelKind::Alexnet => [3, 67, 67],
        _ => [3, 32, 32],
    }
}

fn params(kind: ModelKind, input: [usize; 3], classes: usize) -> usize {
    summary::summarize(input, &kind.layers(input, classes))
        .unwrap()
        .iter()
        .map(|r| r.params)
        .sum()
}

#[test]
fn every_model_matches_its_summary_on_colour_input() {
    let device = Device::flex();
    for &kind in ModelKind::ALL {
        let input = test_input(kind);
        let net = kind.init(input, 7, &device);
        // burn counts batch norm's running mean and variance too; the summary counts what
        // trains (2 per channel, like Keras' "trainable params").
        let rows = summary::summarize(input, &kind.layers(input, 7)).unwrap();
        let running: usize = rows
            .iter()
            .filter(|r| r.name == "batchnorm")
            .map(|r| r.params)
            .sum();
        assert_eq!(
            net.num_params(),
            params(kind, input, 7) + running,
            "{kind}: parameter count"
        );
        let [c, h, w] = input;
        let y = net.forward(Tensor::zeros([2, c, h, w], &device));
        assert_eq!(y.dims(), [2, 7], "{kind}: output shape");
    }
    // The LeNets' options change the network the same way in both.
    let opts = ModelOptions {
        pool: Some(PoolKind::Avg),
        filters: Some([8, 12]),
    };
    for kind in [ModelKind::Lenet5, ModelKind::Lenet5Like] {
        let net = kind.init_with([3, 32, 32], 10, &opts, &device);
        let rows =
            summary::summarize([3, 32, 32], &kind.layers_with([3, 32, 32], 10, &opts)).unwrap();
        assert_eq!(
            net.num_params(),
            rows.iter().map(|r| r.params).sum::<usize>()
        );
        assert!(rows[2].name.starts_with("avgpool"), "{}", rows[2].name);
        assert_eq!(rows[3].output, vec![12, 10, 10]);
    }
}

#[test]
fn published_parameter_counts_at_224_with_1000_classes() {
    let i = [3, 224, 224];
    // Simonyan & Zisserman (2014) Table 2: 138M and 144M; torchvision's exact counts.
    assert_eq!(params(ModelKind::Vgg16, i, 1000), 138_357_544);
    assert_eq!(params(ModelKind::Vgg19, i, 1000), 143_667_240);
    // Batch norm adds a scale and a shift per channel: 2 x 4,224 (VGG-16), 2 x 5,504 (VGG-19).
    assert_eq!(params(ModelKind::Vgg16Bn, i, 1000), 138_365_992);
    assert_eq!(params(ModelKind::Vgg19Bn, i, 1000), 143_678_248);
    // Single-tower AlexNet: 62,378,344 (the paper's "60 million").
    assert_eq!(params(ModelKind::Alexnet, i, 1000), 62_378_344);
    let rows = summary::summarize(i, &ModelKind::Alexnet.layers(i, 1000)).unwrap();
    let shapes: Vec<_> = rows.iter().map(|r| r.output.clone()).collect();
    assert_eq!(shapes[0], vec![96, 55, 55]);
    assert_eq!(shapes[2], vec![96, 27, 27]);
    assert_eq!(shapes[6], vec![256, 13, 13]);
    assert_eq!(shapes[15], vec![9216]);
    let rows = summary::summarize(i, &ModelKind::Vgg16.layers(i, 1000)).unwrap();
    let flat = rows.iter().find(|r| r.name == "flatten").unwrap();
    assert_eq!(flat.output, vec![25_088]);
    assert_eq!(rows.iter().map(|r| r.macs).sum::<usize>(), 15_470_264_320);
    // The CMSIS-NN paper's CIFAR-10 net: "12.3M" MACs; 89,578 parameters.
    let c = [3, 32, 32];
    assert_eq!(params(ModelKind::CmsisCifar10, c, 10), 89_578);
    assert_eq!(params(ModelKind::CmsisCifar10Bn, c, 10), 89_578 + 2 * 128);
    let rows = summary::summarize(c, &ModelKind::CmsisCifar10.layers(c, 10)).unwrap();
    assert_eq!(rows.iter().map(|r| r.macs).sum::<usize>(), 12_298_240);
    let flat = rows.iter().find(|r| r.name == "flatten").unwrap();
    assert_eq!(flat.output, vec![1024]);
}

#[test]
fn batch_norm_folds_into_the_cmsis_net_convolutions() {
    let device = Device::flex();
    // A few training steps so the running statistics are not the initial ones.
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 8,
        ..TrainConfig::new(ModelKind::CmsisCifar10Bn, DatasetKind::Cifar10)
    };
    let splits = noise(32, 32, 10);
    let dir = tempfile::tempdir().unwrap();
    train::train(&cfg, &splits, dir.path(), &RunOptions::default()).unwrap();
    let (_, net) = train::load_run_model(dir.path(), &device).unwrap();
    let x = Tensor::<4>::random(
        [4, 3, 32, 32],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let before: Vec<f32> = net.forward(x.clone()).into_data().iter::<f32>().collect();
    let folded = net.clone().for_export();
    // No batch norm is left: the plain network's parameters only.
    assert_eq!(folded.num_params(), 89_578);
    assert!(net.num_params() > 89_578);
    let after: Vec<f32> = folded.forward(x).into_data().iter::<f32>().collect();
    let max = before
        .iter()
        .zip(&after)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-4, "folded differs by {max}");
}

#[test]
fn too_small_inputs_are_refused_with_the_layer() {
    let e = ModelKind::Vgg16
        .check_input([3, 16, 16], 10, &ModelOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("maxpool 2x2") && e.contains("does not fit"),
        "{e}"
    );
    let cfg = TrainConfig {
        image_size: Some(32),
        ..TrainConfig::new(ModelKind::Alexnet, DatasetKind::Oxflower17)
    };
    let e = train::train(
        &cfg,
        &noise(4, 32, 17),
        tempfile::tempdir().unwrap().path(),
        &RunOptions::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("alexnet cannot take oxflower17 images"), "{e}");
}

/// `n` noisy colour images of `side` x `side`, labels `i % classes`, as both splits: each
/// of 4 classes has its own mean colour, the noise is uniform +-40.
fn noise(n: usize, side: usize, classes: usize) -> Splits {
    let mut rng = SplitMix64::new(11);
    let plane = side * side;
    let set = ImageSet {
        images: (0..n * 3 * plane)
            .map(|i| {
                let (img, ch) = (i / (3 * plane), i / plane % 3);
                let mean = 48 + 160 * (((img % classes) >> (ch % 2)) & 1);
                (mean + rng.below(81) - 40) as u8
            })
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

/// Trains `kind` on 16 noisy images (2 batches of 8) and returns the mean training loss of the
/// first and the last `steps / 2` steps.
fn smoke(kind: ModelKind, dataset: DatasetKind, side: usize, steps: usize, lr: f64) -> (f64, f64) {
    let data = noise(16, side, 4);
    let cfg = TrainConfig {
        iterations: Some(steps),
        batch_size: 8,
        lr,
        eval_every: steps / 2,
        image_size: (dataset == DatasetKind::Oxflower17).then_some(side),
        ..TrainConfig::new(kind, dataset)
    };
    // The noise has 4 classes whatever the dataset says; only the shape must agree.
    let data = Splits {
        train: ImageSet {
            num_classes: dataset.num_classes(),
            ..data.train
        },
        test: ImageSet {
            num_classes: dataset.num_classes(),
            ..data.test
        },
    };
    let dir = tempfile::tempdir().unwrap();
    // One run at a time: dropout draws from burn's process-wide generator, which each run
    // seeds at its start, so runs in parallel threads would interleave their draws and make
    // each other's losses vary from run to run.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = train::train(&cfg, &data, dir.path(), &RunOptions::default()).unwrap();
    let first = out.metrics.first().unwrap().train_loss;
    let last = out.metrics.last().unwrap().train_loss;
    eprintln!("{kind} at {side}x{side}: loss {first:.3} -> {last:.3}");
    assert!(first.is_finite() && last.is_finite());
    (first, last)
}

#[test]
fn alexnet_smoke_loss_falls() {
    let (first, last) = smoke(ModelKind::Alexnet, DatasetKind::Oxflower17, 67, 20, 3e-4);
    assert!(last < 0.8 * first, "{first} -> {last}");
}

#[test]
fn vgg16_smoke_loss_falls() {
    let (first, last) = smoke(ModelKind::Vgg16, DatasetKind::Cifar10, 32, 20, 3e-4);
    assert!(last < 0.8 * first, "{first} -> {last}");
}

#[test]
fn vgg16_bn_smoke_loss_falls() {
    let (first, last) = smoke(ModelKind::Vgg16Bn, DatasetKind::Cifar10, 32, 20, 3e-4);
    assert!(last < 0.8 * first, "{first} -> {last}");
}

#[test]
fn vgg19_smoke_loss_falls() {
    let (first, last) = smoke(ModelKind::Vgg19, DatasetKind::Cifar10, 32, 20, 3e-4);
    assert!(last < 0.8 * first, "{first} -> {last}");
}
