//! The bodies of the dataset and checkpoint fuzz targets (`fuzz/`), here so that plain
//! `cargo test` replays their committed regression inputs. Each reads bytes as the loaders do
//! from a file; errors are fine, panics are bugs.

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::data::{cifar10, flowers, idx};

/// An IDX file (MNIST): images (rank 3) and labels (rank 1); what parses holds exactly the
/// values its header describes.
pub fn idx_file(data: &[u8]) {
    let path = Path::new("fuzz.idx");
    // Gunzipped first when it is gzipped, as the loader does (16 MiB at most here).
    let Ok(bytes) = idx::maybe_gunzip(path, data.to_vec(), 16 << 20) else {
        return;
    };
    for rank in [1, 3] {
        if let Ok(a) = idx::parse(path, &bytes, rank) {
            assert_eq!(a.dims.len(), rank);
            assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
        }
    }
}

/// A CIFAR-10 binary batch: what parses is one label per 3,072 pixels.
pub fn cifar_batch(data: &[u8]) {
    if let Ok((images, labels)) = cifar10::parse_batch(Path::new("fuzz.bin"), data) {
        assert_eq!(images.len(), labels.len() * 3072);
        assert!(labels.iter().all(|&l| l < 10));
    }
}

/// One flower JPEG, decoded and resized to 32x32, with the loader's code under smaller
/// decode limits (1,024 pixels a side, 16 MiB) than its own (16,384, 512 MiB; those are
/// checked by the 65,535 x 65,535 hostile case): a mutated header that declares a huge
/// picture is then rejected or decoded in milliseconds, not seconds.
pub fn flower_jpeg(data: &[u8]) {
    if let Ok(chw) = flowers::decode_resize_within(Path::new("fuzz.jpg"), data, 32, 1024, 16 << 20)
    {
        assert_eq!(chw.len(), 3 * 32 * 32);
    }
}

/// A checkpoint file: what decodes re-encodes to the same bytes.
pub fn checkpoint(data: &[u8]) {
    if let Ok(c) = Checkpoint::decode(Path::new("fuzz.ckpt"), data) {
        assert_eq!(c.encode(), data);
    }
}
