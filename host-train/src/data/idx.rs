//! The IDX file format of MNIST (LeCun et al.), gzipped or raw.
//!
//! Layout (big-endian): two zero bytes, a type byte (0x08 = unsigned byte), the number of
//! dimensions, then one u32 per dimension, then the data in row-major order. MNIST's image files
//! are `0x00000803` (3 dims: count, rows, cols) and its label files `0x00000801` (1 dim: count).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;

/// A parsed IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first (`[count, rows, cols]` for images).
    pub dims: Vec<usize>,
    /// Row-major data, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// The most bytes a gzipped dataset file may expand to (MNIST's largest is 47 MB, a CIFAR-10
/// batch 31 MB): a small file that would expand past it (a gzip bomb) is an error, not an
/// allocation of everything it claims.
pub const MAX_GUNZIPPED: u64 = 1 << 30;

/// Reads a file whole, transparently gunzipping it when it starts with the gzip magic (every
/// member of a multi-member file; each member's CRC is checked).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    read_maybe_gz_limited(path, MAX_GUNZIPPED)
}

/// [`read_maybe_gz`] with another limit on the gunzipped size.
pub fn read_maybe_gz_limited(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    maybe_gunzip(path, raw, limit)
}

/// `raw` (the bytes of `path`, named in errors) gunzipped when it starts with the gzip magic,
/// to at most `limit` bytes; as it is otherwise.
pub fn maybe_gunzip(path: &Path, raw: Vec<u8>, limit: u64) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity((raw.len() as u64 * 4).min(limit) as usize);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::bad(path, format!("corrupt or truncated gzip stream: {e}")))?;
    if out.len() as u64 > limit {
        return Err(DataError::bad(
            path,
            format!("gunzips to more than {limit} bytes: not a dataset file (a gzip bomb?)"),
        ));
    }
    if out.starts_with(&[0x1f, 0x8b]) {
        return Err(DataError::bad(
            path,
            "still gzipped after gunzipping: the file was gzipped twice (gunzip it once)",
        ));
    }
    Ok(out)
}

/// Parses an IDX byte buffer, checking the magic, the element type, the rank and that the data
/// length matches the header exactly (a truncated or padded file is an error).
pub fn parse(path: &Path, bytes: &[u8], expect_rank: usize) -> Result<IdxArray, DataError> {
    let bad = |msg: String| DataError::bad(path, msg);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "file is {} bytes, too short for an IDX header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "wrong magic {:02x}{:02x}{:02x}{:02x}: not an IDX file (expected 0000080{expect_rank})",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "IDX element type 0x{:02x} is not unsigned byte (0x08)",
            bytes[2]
        )));
    }
    let rank = bytes[3] as usize;
    if rank != expect_rank {
        return Err(bad(format!(
            "IDX file has {rank} dimensions, expected {expect_rank} (magic 0000080{rank}, expected 0000080{expect_rank})"
        )));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(format!(
            "truncated header: {} bytes, need {header}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let got = bytes.len() - header;
    if got < expected {
        return Err(bad(format!(
            "truncated: header says {dims:?} = {expected} bytes of data, file has {got}"
        )));
    }
    if got > expected {
        return Err(bad(format!(
            "{} trailing bytes after the {expected} bytes of data the header {dims:?} describes",
            got - expected
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads and parses an IDX file (gzipped or raw).
pub fn read(path: &Path, expect_rank: usize) -> Result<IdxArray, DataError> {
    let bytes = read_maybe_gz(path)?;
    parse(path, &bytes, expect_rank)
}

/// Serialises an IDX array (the inverse of [`parse`]); used by tests and tools that write
/// fixtures.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Finds `name` in `dir`, or its other form: without the `.gz` suffix when `name` has one
/// (users often keep MNIST unpacked), with it otherwise (a gzipped CIFAR-10 batch).
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let first = dir.join(name);
    if first.is_file() {
        return Some(first);
    }
    let other = match name.strip_suffix(".gz") {
        Some(raw) => dir.join(raw),
        None => dir.join(format!("{name}.gz")),
    };
    other.is_file().then_some(other)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "t.idx";

    fn err(bytes: &[u8], rank: usize) -> String {
        parse(Path::new(P), bytes, rank).unwrap_err().to_string()
    }

    #[test]
    fn roundtrip() {
        let data: Vec<u8> = (0..24).collect();
        let enc = encode(&[2, 3, 4], &data);
        let a = parse(Path::new(P), &enc, 3).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
    }

    #[test]
    fn wrong_magic_names_file_and_problem() {
        let mut enc = encode(&[1], &[7]);
        enc[0] = 0x50;
        let e = err(&enc, 1);
        assert!(e.contains("t.idx") && e.contains("wrong magic"), "{e}");
    }

    #[test]
    fn wrong_rank() {
        let e = err(&encode(&[1], &[7]), 3);
        assert!(e.contains("1 dimensions, expected 3"), "{e}");
    }

    #[test]
    fn wrong_type() {
        let mut enc = encode(&[1], &[7]);
        enc[2] = 0x0d;
        assert!(err(&enc, 1).contains("not unsigned byte"));
    }

    #[test]
    fn truncated_data_and_header() {
        let enc = encode(&[2, 2, 2], &[1; 8]);
        let e = err(&enc[..enc.len() - 1], 3);
        assert!(e.contains("truncated") && e.contains("file has 7"), "{e}");
        assert!(err(&enc[..9], 3).contains("truncated header"));
        assert!(err(&enc[..2], 3).contains("too short"));
    }

    #[test]
    fn trailing_bytes() {
        let mut enc = encode(&[1], &[7]);
        enc.push(0);
        assert!(err(&enc, 1).contains("1 trailing bytes"));
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_header_claiming_u32_max_images_is_refused_before_copying() {
        // 4,294,967,295 images of 28x28 and one byte of data: the check compares lengths; the
        // data is only copied once they agree (burn's loader allocated 784 x count).
        let mut enc = encode(&[u32::MAX as usize, 28, 28], &[0]);
        let e = err(&enc, 3);
        assert!(
            e.contains("truncated: header says [4294967295, 28, 28] = 3367254359280 bytes"),
            "{e}"
        );
        // Dimensions whose product overflows 64 bits cannot be written in u32s (at most 2^96
        // for rank 3); rank 4 of u32::MAX each is 2^128: refused as an overflow.
        enc = encode(&[u32::MAX as usize; 4], &[]);
        assert!(err(&enc, 4).contains("overflow"));
    }

    #[test]
    fn double_gzip_multi_member_bad_crc_and_bombs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        let data = encode(&[100], &[3; 100]);
        // Gzipped twice: named as such.
        std::fs::write(&path, gz(&gz(&data))).unwrap();
        let e = read(&path, 1).unwrap_err().to_string();
        assert!(e.contains("x.gz") && e.contains("gzipped twice"), "{e}");
        // Two members, as `cat a.gz b.gz` makes: read as one stream.
        std::fs::write(&path, [gz(&data[..50]), gz(&data[50..])].concat()).unwrap();
        assert_eq!(read(&path, 1).unwrap().data, vec![3; 100]);
        // A wrong CRC in the trailer.
        let mut bad = gz(&data);
        let n = bad.len();
        bad[n - 8] ^= 0xFF;
        std::fs::write(&path, &bad).unwrap();
        let e = read(&path, 1).unwrap_err().to_string();
        assert!(e.contains("corrupt or truncated gzip stream"), "{e}");
        // 64 KiB of zeros past a 4 KiB limit: refused without reading it all.
        std::fs::write(&path, gz(&vec![0; 64 << 10])).unwrap();
        let e = read_maybe_gz_limited(&path, 4096).unwrap_err().to_string();
        assert!(e.contains("gunzips to more than 4096 bytes"), "{e}");
        assert_eq!(
            read_maybe_gz_limited(&path, 64 << 10).unwrap().len(),
            64 << 10
        );
    }

    #[test]
    fn gzip_truncated_is_an_error_not_a_panic() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&encode(&[100], &[3; 100])).unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = read(&path, 1).unwrap_err().to_string();
        assert!(e.contains("x.gz") && e.contains("gzip"), "{e}");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path, 1).unwrap().data, vec![3; 100]);
    }
}
