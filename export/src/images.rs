//! Dataset images as each consumer reads them: host-train stores `u8` pixels in CHW order
//! (what the float ONNX takes, as `p / 255`), the device model reads HWC. Golden sets and the
//! firmware hold the device's HWC pixels.

use std::path::Path;

use anyhow::{Result, bail};
use host_train::data::{self, DatasetKind, Splits};

/// The dataset whose images a model of `[h, w, c]` input takes: 28x28x1 MNIST, 32x32x3
/// CIFAR-10, a square colour input the flowers at that size.
pub fn dataset_for([h, w, c]: [usize; 3]) -> Result<(DatasetKind, Option<usize>)> {
    Ok(match (h, w, c) {
        (28, 28, 1) => (DatasetKind::Mnist, None),
        (32, 32, 3) => (DatasetKind::Cifar10, None),
        (s, s2, 3) if s == s2 => (DatasetKind::Oxflower17, Some(s)),
        _ => bail!(
            "no dataset has {h}x{w}x{c} images (MNIST 28x28x1, CIFAR-10 32x32x3, the flowers NxNx3)"
        ),
    })
}

/// Loads a dataset (found as host-train finds it, downloaded when missing) at `size`.
pub fn load(kind: DatasetKind, size: Option<usize>, data_dir: Option<&Path>) -> Result<Splits> {
    let found = data::locate_or_download(kind, data_dir)?;
    let opts = data::LoadOptions {
        image_size: size,
        ..Default::default()
    };
    Ok(kind.load_with(&found.dir, &opts)?)
}

/// CHW pixels (`[c, h, w]`) in HWC order; one channel is the same order.
pub fn hwc(chw: &[u8], [c, h, w]: [usize; 3]) -> Vec<u8> {
    if c == 1 {
        return chw.to_vec();
    }
    let plane = h * w;
    (0..plane)
        .flat_map(|i| (0..c).map(move |ch| chw[ch * plane + i]))
        .collect()
}

/// HWC pixels (`[h, w, c]`) as the float model's CHW input, `p / 255`.
pub fn chw_unit(hwc: &[u8], [h, w, c]: [usize; 3]) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0f32; hwc.len()];
    for (i, &p) in hwc.iter().enumerate().take(plane * c) {
        out[(i % c) * plane + i / c] = p as f32 / 255.0;
    }
    out
}

/// The first `n` test images of `splits` in the device layout, with their labels.
pub fn test_digits(splits: &Splits, n: usize) -> Vec<crate::deploy::Digit> {
    let t = &splits.test;
    (0..n.min(t.len()))
        .map(|i| crate::deploy::Digit {
            label: t.labels[i],
            pixels: hwc(t.image(i), t.shape),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwc_and_back() {
        // 2 channels of 2x3: channel 0 holds 0..6, channel 1 100..106.
        let chw: Vec<u8> = (0..6).chain(100..106).collect();
        let h = hwc(&chw, [2, 2, 3]);
        assert_eq!(h, [0, 100, 1, 101, 2, 102, 3, 103, 4, 104, 5, 105]);
        let f = chw_unit(&h, [2, 3, 2]);
        let want: Vec<f32> = chw.iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(f, want);
        assert_eq!(hwc(&[1, 2, 3], [1, 1, 3]), [1, 2, 3]);
        assert_eq!(
            dataset_for([32, 32, 3]).unwrap(),
            (DatasetKind::Cifar10, None)
        );
        assert!(dataset_for([32, 32, 2]).is_err());
    }
}
