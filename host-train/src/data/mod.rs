//! Datasets: where the files are, how they are checked, and how they become tensors.
//!
//! Every dataset loads into the same in-memory form, an [`ImageSet`] of `u8` pixels in NCHW
//! order plus `u8` labels, so the training loop, the batcher and the exporter's calibration never
//! care which file format it came from: MNIST ([`mnist`], IDX), CIFAR-10 ([`cifar10`], the
//! official binary batches) and the Oxford-17 flowers ([`flowers`], JPEG class folders or the
//! official flat layout, decoded, resized and cached).
//!
//! **Preprocessing contract** (the device must do the same): pixels are scaled to `[0, 1]` by
//! `x / 255`, with no mean/std normalisation. A device model therefore quantises a raw `u8`
//! pixel `p` exactly: `q = p - 128` at scale `1/255`, zero point `-128`.

pub mod augment;
pub mod cifar10;
pub mod download;
pub mod flowers;
pub mod idx;
pub mod mnist;
pub mod npy;

use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::rng::SplitMix64;

/// An error reading a dataset: it always names the file (or folder) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but its content is wrong.
    #[error("{path}: {msg}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The dataset is not present and could not be downloaded.
    #[error("{0}")]
    Missing(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn bad(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Bad {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// The datasets host-train knows. Each has a folder name under a data root, a way to tell
/// whether a folder holds it, a checker, a downloader and a loader.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// MNIST handwritten digits: 60,000 train + 10,000 test, 28x28 grey, 10 classes.
    Mnist,
    /// CIFAR-10: 50,000 train + 10,000 test, 32x32 colour, 10 classes (binary batches).
    Cifar10,
    /// Oxford 17 flowers: 1,360 colour photos, 17 classes, resized to a square input
    /// (`--image-size`, default 224); the seed's split 1,000 train / 360 test.
    #[value(alias = "flowers")]
    Oxflower17,
}

/// How to load a dataset beyond where it is: what only some datasets take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Side of the square input for datasets decoded from photos (the flowers); `None`: the
    /// dataset's default. Fixed-size datasets refuse any other size.
    pub image_size: Option<usize>,
    /// Where decoded photos are cached (`None`: [`flowers::cache_dir`]).
    pub cache_dir: Option<PathBuf>,
}

impl DatasetKind {
    /// All known datasets, for `host-train datasets`.
    pub const ALL: &'static [DatasetKind] = &[
        DatasetKind::Mnist,
        DatasetKind::Cifar10,
        DatasetKind::Oxflower17,
    ];

    /// The folder name under a data root (`<root>/mnist`).
    pub fn dir_name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Oxflower17 => "oxflower17",
        }
    }

    /// Whether `dir` holds the dataset (enough of it to load).
    pub fn present_in(self, dir: &Path) -> bool {
        match self {
            DatasetKind::Mnist => mnist::FILES
                .iter()
                .all(|f| idx::find_file(dir, f.name).is_some()),
            DatasetKind::Cifar10 => cifar10::present(dir),
            DatasetKind::Oxflower17 => flowers::present(dir),
        }
    }

    /// What to put where when the dataset is missing, for error messages.
    pub fn expected_files(self) -> String {
        match self {
            DatasetKind::Mnist => mnist::FILES
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join("\n  "),
            DatasetKind::Cifar10 => format!(
                "data_batch_1.bin .. data_batch_5.bin, test_batch.bin (raw or .gz), batches.meta.txt\n  \
                 (the contents of {} from {})",
                cifar10::ARCHIVE,
                cifar10::MIRRORS[0]
            ),
            DatasetKind::Oxflower17 => format!(
                "class folders 00 .. 16 of jpgs, or jpg/image_0001.jpg .. image_1360.jpg\n  \
                 (the contents of {} from {})",
                flowers::ARCHIVE,
                flowers::MIRRORS[0]
            ),
        }
    }

    /// Base URLs the files can be fetched from, tried in order: `$HOST_TRAIN_MIRRORS`
    /// (comma-separated, for a local mirror) or the dataset's public mirrors.
    pub fn mirrors(self) -> Vec<String> {
        if let Ok(list) = std::env::var(MIRRORS_ENV)
            && !list.trim().is_empty()
        {
            return list.split(',').map(|m| m.trim().to_string()).collect();
        }
        let builtin = match self {
            DatasetKind::Mnist => mnist::MIRRORS,
            DatasetKind::Cifar10 => cifar10::MIRRORS,
            DatasetKind::Oxflower17 => flowers::MIRRORS,
        };
        builtin.iter().map(|m| m.to_string()).collect()
    }

    /// Input shape `[channels, height, width]` of one image at the default size.
    pub fn image_shape(self) -> [usize; 3] {
        self.image_shape_at(None)
    }

    /// Input shape `[channels, height, width]` at `size` (photo datasets; fixed-size datasets
    /// ignore it).
    pub fn image_shape_at(self, size: Option<usize>) -> [usize; 3] {
        match self {
            DatasetKind::Mnist => [1, 28, 28],
            DatasetKind::Cifar10 => [3, 32, 32],
            DatasetKind::Oxflower17 => {
                let s = size.unwrap_or(flowers::DEFAULT_SIZE);
                [3, s, s]
            }
        }
    }

    /// Number of classes.
    pub fn num_classes(self) -> usize {
        match self {
            DatasetKind::Mnist => 10,
            DatasetKind::Cifar10 => cifar10::CLASSES,
            DatasetKind::Oxflower17 => flowers::CLASSES,
        }
    }

    /// Loads both splits from a folder holding the dataset's files, with default options.
    pub fn load(self, dir: &Path) -> Result<Splits, DataError> {
        self.load_with(dir, &LoadOptions::default())
    }

    /// Loads both splits from a folder holding the dataset's files.
    pub fn load_with(self, dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
        if let Some(s) = opts.image_size
            && self != DatasetKind::Oxflower17
            && [s, s] != self.image_shape()[1..]
        {
            return Err(DataError::Missing(format!(
                "{self} images are {0}x{0}; --image-size {s} applies to photo datasets only",
                self.image_shape()[1]
            )));
        }
        match self {
            DatasetKind::Mnist => mnist::load(dir),
            DatasetKind::Cifar10 => cifar10::load(dir),
            DatasetKind::Oxflower17 => {
                let size = opts.image_size.unwrap_or(flowers::DEFAULT_SIZE);
                let all = flowers::decode_all(dir, size, opts.cache_dir.as_deref())?;
                let (train, _val, test) =
                    flowers::split(&all.set, flowers::DEFAULT_TEST, 0, flowers::SPLIT_SEED)?;
                Ok(Splits { train, test })
            }
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// One file of a dataset.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// Name as stored (and downloaded), e.g. `train-images-idx3-ubyte.gz`.
    pub name: &'static str,
    /// SHA-256 of the decompressed content (hex).
    pub sha256: &'static str,
}

/// Images and labels of one split, pixels as `u8` in NCHW order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// `len * channels * height * width` pixels.
    pub images: Vec<u8>,
    /// One label per image, `< num_classes`.
    pub labels: Vec<u8>,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        ImageSet {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            num_classes: self.num_classes,
        }
    }

    /// A batch of the images at `indices` as a `[B, C, H, W]` float tensor scaled to `[0, 1]`
    /// (see the module docs), and their labels as a `[B]` int tensor.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        self.batch_shifted(indices, None, device)
    }

    /// Like [`batch`](Self::batch), with each image augmented by `aug` (see [`augment`]) using
    /// draws from `rng`.
    pub fn batch_augmented(
        &self,
        indices: &[usize],
        aug: &augment::Augment,
        rng: &mut SplitMix64,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let [c, h, w] = self.shape;
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            aug.apply(self.image(i), self.shape, rng, &mut pixels);
        }
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        let x = Tensor::from_data(TensorData::new(pixels, [indices.len(), c, h, w]), device);
        let y = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
        (x, y)
    }

    /// Like [`batch`](Self::batch), with each image translated by a random whole-pixel offset
    /// of up to `max_shift` in x and y (zeros shifted in), drawn from `rng`. The augmentation
    /// of the seed's best MNIST results; the device never sees it.
    pub fn batch_shifted(
        &self,
        indices: &[usize],
        mut shift: Option<(usize, &mut SplitMix64)>,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let n = self.image_len();
        let [c, h, w] = self.shape;
        let mut pixels = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let img = self.image(i);
            match shift.as_mut() {
                None => pixels.extend(img.iter().map(|&p| p as f32 / 255.0)),
                Some((max, rng)) => {
                    let span = 2 * *max + 1;
                    let dy = rng.below(span) as isize - *max as isize;
                    let dx = rng.below(span) as isize - *max as isize;
                    for ch in 0..c {
                        for y in 0..h as isize {
                            for x in 0..w as isize {
                                let (sy, sx) = (y - dy, x - dx);
                                let inside =
                                    (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                                let p = if inside {
                                    img[ch * h * w + sy as usize * w + sx as usize]
                                } else {
                                    0
                                };
                                pixels.push(p as f32 / 255.0);
                            }
                        }
                    }
                }
            }
            labels.push(self.labels[i] as i64);
        }
        let [c, h, w] = self.shape;
        let x = Tensor::from_data(TensorData::new(pixels, [indices.len(), c, h, w]), device);
        let y = Tensor::from_data(TensorData::new(labels, [indices.len()]), device);
        (x, y)
    }
}

/// The train and test splits of a dataset.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training images.
    pub train: ImageSet,
    /// Test images.
    pub test: ImageSet,
}

/// The environment variable naming a data root (a folder holding `mnist/`, or the dataset's
/// files themselves).
pub const DATA_DIR_ENV: &str = "HOST_TRAIN_DATA_DIR";

/// The environment variable that replaces the built-in download mirrors (comma-separated base
/// URLs, each ending in `/`).
pub const MIRRORS_ENV: &str = "HOST_TRAIN_MIRRORS";

/// Where a dataset's files were found.
#[derive(Debug, Clone)]
pub struct Located {
    /// The folder holding the files.
    pub dir: PathBuf,
    /// How it was chosen (`--data-dir`, the environment variable, the default folder).
    pub how: &'static str,
}

/// A folder `dir` serves a dataset if it holds it, or if `dir/<name>` does.
fn dataset_dir_in(kind: DatasetKind, dir: &Path) -> Option<PathBuf> {
    let sub = dir.join(kind.dir_name());
    if kind.present_in(dir) {
        Some(dir.to_path_buf())
    } else if kind.present_in(&sub) {
        Some(sub)
    } else {
        None
    }
}

/// Candidate folders in priority order: `--data-dir`, `$HOST_TRAIN_DATA_DIR`, `./data`.
fn candidates(data_dir: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    let mut c = Vec::new();
    if let Some(d) = data_dir {
        c.push((d.to_path_buf(), "--data-dir"));
    }
    if let Some(d) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        c.push((PathBuf::from(d), DATA_DIR_ENV));
    }
    c.push((PathBuf::from("data"), "default ./data"));
    c
}

/// Finds a dataset without downloading anything.
pub fn locate(kind: DatasetKind, data_dir: Option<&Path>) -> Option<Located> {
    candidates(data_dir)
        .into_iter()
        .find_map(|(d, how)| dataset_dir_in(kind, &d).map(|dir| Located { dir, how }))
}

/// Finds a dataset, downloading it if it is nowhere (see [`download`]). The download goes to the
/// first explicitly named folder (`--data-dir`, then the environment variable) or to
/// `./data/<name>`.
pub fn locate_or_download(
    kind: DatasetKind,
    data_dir: Option<&Path>,
) -> Result<Located, DataError> {
    if let Some(found) = locate(kind, data_dir) {
        return Ok(found);
    }
    let (root, _) = candidates(data_dir).remove(0);
    // A folder named like the dataset is used as is; otherwise the dataset gets a subfolder.
    let target = if root.file_name().is_some_and(|n| n == kind.dir_name()) {
        root
    } else {
        root.join(kind.dir_name())
    };
    download::fetch_dataset(kind, &target).map_err(|e| {
        DataError::Missing(format!(
            "{kind} not found (looked in --data-dir, ${DATA_DIR_ENV}, ./data) and the download failed: {e}\n\
             Put these files into {}:\n  {}\n\
             or point --data-dir / ${DATA_DIR_ENV} at a folder that holds them.",
            target.display(),
            kind.expected_files()
        ))
    })?;
    Ok(Located {
        dir: target,
        how: "downloaded",
    })
}

/// Checks a dataset's files: MNIST against the SHA-256 of each decompressed file, CIFAR-10
/// structurally (whole records, labels in range) and against the known copies, the flowers
/// against the release's SHA-256 of every image. One line per file or group: `Ok(detail)` or
/// `Err(problem)`.
pub fn verify(kind: DatasetKind, dir: &Path) -> Vec<(String, Result<String, String>)> {
    match kind {
        DatasetKind::Mnist => mnist::FILES
            .iter()
            .map(|f| {
                let r = match idx::find_file(dir, f.name) {
                    None => Err("missing".to_string()),
                    Some(p) => match idx::read_maybe_gz(&p) {
                        Err(e) => Err(e.to_string()),
                        Ok(bytes) => {
                            let got = download::sha256_hex(&bytes);
                            if got == f.sha256 {
                                Ok("verified".to_string())
                            } else {
                                Err(format!("sha256 {got}, expected {}", f.sha256))
                            }
                        }
                    },
                };
                (f.name.to_string(), r)
            })
            .collect(),
        DatasetKind::Cifar10 => cifar10::verify(dir),
        DatasetKind::Oxflower17 => flowers::verify(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ImageSet {
        // Two 4x5 single-channel images with distinct pixel values.
        ImageSet {
            images: (1..=40).collect(),
            labels: vec![3, 7],
            shape: [1, 4, 5],
            num_classes: 10,
        }
    }

    fn pixels(x: Tensor<4>) -> Vec<u8> {
        x.into_data()
            .iter::<f32>()
            .map(|v| (v * 255.0).round() as u8)
            .collect()
    }

    #[test]
    fn batch_scales_to_unit_range_and_keeps_labels() {
        let d = Device::flex();
        let (x, y) = set().batch(&[1, 0], &d);
        assert_eq!(x.dims(), [2, 1, 4, 5]);
        let p = pixels(x);
        assert_eq!(&p[..20], &set().images[20..]);
        assert_eq!(y.into_data().iter::<i64>().collect::<Vec<_>>(), vec![7, 3]);
    }

    #[test]
    fn shifted_batch_is_a_translation_within_range() {
        let d = Device::flex();
        let s = set();
        let mut rng = SplitMix64::new(5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..40 {
            let (x, _) = s.batch_shifted(&[0], Some((1, &mut rng)), &d);
            let p = pixels(x);
            // Find the offset that explains the output.
            let found = (-1isize..=1)
                .flat_map(|dy| (-1isize..=1).map(move |dx| (dy, dx)))
                .find(|&(dy, dx)| {
                    (0..4isize).all(|y| {
                        (0..5isize).all(|x| {
                            let (sy, sx) = (y - dy, x - dx);
                            let want = if (0..4).contains(&sy) && (0..5).contains(&sx) {
                                s.images[(sy * 5 + sx) as usize]
                            } else {
                                0
                            };
                            p[(y * 5 + x) as usize] == want
                        })
                    })
                });
            seen.insert(found.expect("output is a shifted copy of the input"));
        }
        // All nine offsets occur.
        assert_eq!(seen.len(), 9);
    }
}
