//! NumPy `.npy` files (format version 1.0) of `u8` arrays: how a split leaves host-train for
//! other tools (`host-train dump`). `scripts/gpu-check.sh` trains PyTorch on the pixels
//! host-train decoded, so both frameworks see the same images in the same split.
//!
//! The format: the magic `\x93NUMPY`, version bytes `1 0`, a little-endian `u16` header length,
//! then a Python dict literal (`descr`, `fortran_order`, `shape`) padded with spaces and ended
//! by `\n` so that the data starts at a multiple of 64 bytes, then the data in C order.

use std::path::Path;

use anyhow::{Result, bail};

use super::ImageSet;

/// The magic string every `.npy` file starts with.
const MAGIC: &[u8] = b"\x93NUMPY";
/// Where the data may start: numpy aligns it to 64 bytes.
const ALIGN: usize = 64;

/// A `.npy` file holding `data` as a `u8` array of `shape` (C order).
pub fn encode_u8(shape: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n == data.len());
    if count.is_none() {
        bail!(
            "{} bytes do not make an array of shape {shape:?}",
            data.len()
        );
    }
    // Python's repr of a tuple: a 1-tuple keeps its trailing comma.
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.extend(std::iter::repeat_n(
        ' ',
        unpadded.next_multiple_of(ALIGN) - unpadded,
    ));
    header.push('\n');
    let Ok(header_len) = u16::try_from(header.len()) else {
        bail!("shape {shape:?} makes a header too long for .npy version 1.0");
    };
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// Writes a split as `<prefix>-images.npy` (`u8`, N x C x H x W) and `<prefix>-labels.npy`
/// (`u8`, N) in `dir`, each atomically.
pub fn write_split(dir: &Path, prefix: &str, set: &ImageSet) -> Result<()> {
    let [c, h, w] = set.shape;
    let images = encode_u8(&[set.len(), c, h, w], &set.images)?;
    crate::checkpoint::write_atomic(&dir.join(format!("{prefix}-images.npy")), &images)?;
    let labels = encode_u8(&[set.len()], &set.labels)?;
    crate::checkpoint::write_atomic(&dir.join(format!("{prefix}-labels.npy")), &labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header text and where the data starts.
    fn split(file: &[u8]) -> (&str, &[u8]) {
        assert_eq!(&file[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([file[8], file[9]]) as usize;
        let header = std::str::from_utf8(&file[10..10 + len]).unwrap();
        (header, &file[10 + len..])
    }

    #[test]
    fn header_is_numpys_dict_and_data_is_aligned() {
        let file = encode_u8(&[2, 3], &[0, 1, 2, 3, 4, 5]).unwrap();
        let (header, data) = split(&file);
        assert_eq!(
            header.trim_end(),
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }"
        );
        assert!(header.ends_with('\n'));
        assert_eq!((file.len() - data.len()) % 64, 0);
        assert_eq!(data, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn one_dimension_keeps_the_tuple_comma_and_empty_arrays_work() {
        let file = encode_u8(&[4], &[9; 4]).unwrap();
        let (header, _) = split(&file);
        assert!(header.contains("'shape': (4,), }"), "{header}");
        let file = encode_u8(&[0, 3, 32, 32], &[]).unwrap();
        let (header, data) = split(&file);
        assert!(header.contains("'shape': (0, 3, 32, 32), }"), "{header}");
        assert!(data.is_empty());
    }

    #[test]
    fn data_that_does_not_fill_the_shape_is_refused() {
        let e = encode_u8(&[2, 3], &[0; 5]).unwrap_err().to_string();
        assert_eq!(e, "5 bytes do not make an array of shape [2, 3]");
        assert!(encode_u8(&[usize::MAX, 2], &[]).is_err());
    }
}
