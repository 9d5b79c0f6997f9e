//! MNIST: four IDX files, 60,000 training and 10,000 test digits of 28x28 grey pixels.

use std::path::Path;

use super::{DataError, FileSpec, ImageSet, Splits, idx};

/// The four files, with the SHA-256 of their decompressed (official) content.
pub const FILES: &[FileSpec] = &[
    FileSpec {
        name: "train-images-idx3-ubyte.gz",
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    FileSpec {
        name: "train-labels-idx1-ubyte.gz",
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    FileSpec {
        name: "t10k-images-idx3-ubyte.gz",
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    FileSpec {
        name: "t10k-labels-idx1-ubyte.gz",
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

/// Mirrors of the original `*.gz` files, tried in order.
pub const MIRRORS: &[&str] = &[
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

const SIDE: usize = 28;
const CLASSES: usize = 10;

/// Loads one split from an images file and a labels file, checking that they agree.
pub fn load_split(images: &Path, labels: &Path) -> Result<ImageSet, DataError> {
    let img = idx::read(images, 3)?;
    let lab = idx::read(labels, 1)?;
    let (n, h, w) = (img.dims[0], img.dims[1], img.dims[2]);
    if (h, w) != (SIDE, SIDE) {
        return Err(DataError::bad(
            images,
            format!("images are {h}x{w}, MNIST images are {SIDE}x{SIDE}"),
        ));
    }
    if lab.dims[0] != n {
        return Err(DataError::bad(
            labels,
            format!(
                "{} labels but {} holds {n} images",
                lab.dims[0],
                images.display()
            ),
        ));
    }
    if let Some((i, &l)) = lab
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= CLASSES)
    {
        return Err(DataError::bad(
            labels,
            format!("label {l} at index {i} is not a digit 0-9"),
        ));
    }
    Ok(ImageSet {
        images: img.data,
        labels: lab.data,
        shape: [1, SIDE, SIDE],
        num_classes: CLASSES,
    })
}

/// Loads both splits from a folder holding the four files (gzipped or not).
pub fn load(dir: &Path) -> Result<Splits, DataError> {
    let file = |spec: &FileSpec| {
        idx::find_file(dir, spec.name).ok_or_else(|| {
            DataError::Missing(format!(
                "{}: missing (or its unzipped form {})",
                dir.join(spec.name).display(),
                spec.name.trim_end_matches(".gz")
            ))
        })
    };
    let train = load_split(&file(&FILES[0])?, &file(&FILES[1])?)?;
    let test = load_split(&file(&FILES[2])?, &file(&FILES[3])?)?;
    Ok(Splits { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::encode;

    /// Writes a tiny MNIST-shaped split and returns its two paths.
    fn write(
        dir: &Path,
        n_img: usize,
        side: usize,
        labels: &[u8],
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let ip = dir.join("img.idx");
        let lp = dir.join("lab.idx");
        std::fs::write(
            &ip,
            encode(&[n_img, side, side], &vec![9; n_img * side * side]),
        )
        .unwrap();
        std::fs::write(&lp, encode(&[labels.len()], labels)).unwrap();
        (ip, lp)
    }

    #[test]
    fn loads_a_consistent_split() {
        let d = tempfile::tempdir().unwrap();
        let (i, l) = write(d.path(), 3, 28, &[1, 2, 3]);
        let s = load_split(&i, &l).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.image(2).len(), 784);
        assert_eq!(s.labels, vec![1, 2, 3]);
    }

    #[test]
    fn count_mismatch_names_the_label_file() {
        let d = tempfile::tempdir().unwrap();
        let (i, l) = write(d.path(), 3, 28, &[1, 2]);
        let e = load_split(&i, &l).unwrap_err().to_string();
        assert!(
            e.contains("lab.idx") && e.contains("2 labels but") && e.contains("3 images"),
            "{e}"
        );
    }

    #[test]
    fn wrong_image_size() {
        let d = tempfile::tempdir().unwrap();
        let (i, l) = write(d.path(), 2, 32, &[1, 2]);
        let e = load_split(&i, &l).unwrap_err().to_string();
        assert!(e.contains("img.idx") && e.contains("32x32"), "{e}");
    }

    #[test]
    fn label_out_of_range() {
        let d = tempfile::tempdir().unwrap();
        let (i, l) = write(d.path(), 2, 28, &[1, 12]);
        let e = load_split(&i, &l).unwrap_err().to_string();
        assert!(e.contains("label 12 at index 1"), "{e}");
    }

    #[test]
    fn swapped_files_are_caught_by_the_rank() {
        let d = tempfile::tempdir().unwrap();
        let (i, l) = write(d.path(), 2, 28, &[1, 2]);
        let e = load_split(&l, &i).unwrap_err().to_string();
        assert!(
            e.contains("lab.idx") && e.contains("1 dimensions, expected 3"),
            "{e}"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("train-images-idx3-ubyte.gz") && e.contains("missing"),
            "{e}"
        );
    }
}
