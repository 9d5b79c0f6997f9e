//! CIFAR-10 (Krizhevsky 2009) in its official binary layout: 60,000 colour images of 32x32 in
//! 10 classes.
//!
//! A folder holds `data_batch_1.bin` .. `data_batch_5.bin` (training) and `test_batch.bin`,
//! each raw or gzipped (`.bin.gz`), and `batches.meta.txt` (one class name a line). Each batch is
//! a sequence of 3,073-byte records: one label byte (0-9), then 1,024 red, 1,024 green and 1,024
//! blue bytes, each plane row-major 32x32. That is already the NCHW layout of an [`ImageSet`],
//! so a record's pixels are copied as they are.
//!
//! Every training batch present is loaded (a copy may hold fewer than five; `host-train
//! datasets` and the loader say how many). The download is the official
//! `cifar-10-binary.tar.gz`, checked against the MD5 its authors publish and unpacked in Rust.

use std::path::{Path, PathBuf};

use super::{DataError, ImageSet, Splits, download, idx};

/// Bytes of one record: a label and 3x32x32 pixels.
pub const RECORD: usize = 1 + 3 * 32 * 32;
/// Records in a batch file of the official release.
pub const BATCH_RECORDS: usize = 10_000;
/// Classes.
pub const CLASSES: usize = 10;
/// The training batch files, in the official order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file.
pub const TEST_FILE: &str = "test_batch.bin";
/// Class names, one a line.
pub const META_FILE: &str = "batches.meta.txt";
/// The official archive.
pub const ARCHIVE: &str = "cifar-10-binary.tar.gz";
/// MD5 of the official archive, as published on the dataset's page.
pub const ARCHIVE_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The folder the archive unpacks into.
pub const ARCHIVE_DIR: &str = "cifar-10-batches-bin";
/// Where the archive is published.
pub const MIRRORS: &[&str] = &["https://www.cs.toronto.edu/~kriz/"];
/// The class names of the official release (what `batches.meta.txt` holds).
pub const CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Copies of the batch files whose content is known, by the SHA-256 of the decompressed file:
/// `(file, sha256, what it is)`. The official release publishes only the archive's MD5, so a
/// batch is identified here when it is one of these, and checked structurally otherwise.
pub const KNOWN_COPIES: &[(&str, &str, &str)] = &[
    (
        "data_batch_1.bin",
        "8da035fc1631e8ce5f25904206b8993b0f3ad02a504c0584d662e806fd76c12b",
        JPEG_COPY,
    ),
    (
        "data_batch_2.bin",
        "106eeaad9f1fa7a999292fdafe68ee909080f58aee038a76994035aedf40ba26",
        JPEG_COPY,
    ),
    (
        "data_batch_3.bin",
        "99cb88ba00fca88bf28c517a74307b6b78a346c6ea747a561cb8e660c787d5cb",
        JPEG_COPY,
    ),
    (
        "data_batch_4.bin",
        "76b482bc3bb79c0370e48ea71bb6e4f567a3770d224dc09a9ddc8cfa2369f294",
        JPEG_COPY,
    ),
    (
        "test_batch.bin",
        "0ce179d0c0a5220739d6223197952896644ceabb648dacfdebd7f06789af543f",
        JPEG_COPY,
    ),
];

const JPEG_COPY: &str =
    "the JPEG-recovered copy (official labels and order, pixels within ~6 of the official)";

/// Whether `dir` holds a usable CIFAR-10: the test batch and at least one training batch.
pub fn present(dir: &Path) -> bool {
    idx::find_file(dir, TEST_FILE).is_some()
        && TRAIN_FILES.iter().any(|f| idx::find_file(dir, f).is_some())
}

/// Parses one batch file's bytes: whole records only, labels in range.
pub fn parse_batch(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    if bytes.is_empty() {
        return Err(DataError::bad(
            path,
            "empty file, expected 3,073-byte records",
        ));
    }
    if !bytes.len().is_multiple_of(RECORD) {
        return Err(DataError::bad(
            path,
            format!(
                "{} bytes is not a whole number of 3,073-byte records ({} records and {} bytes \
                 over): truncated, or not a CIFAR-10 binary batch (the CIFAR-100 and Python \
                 versions have other layouts)",
                bytes.len(),
                bytes.len() / RECORD,
                bytes.len() % RECORD
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (RECORD - 1));
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] as usize >= CLASSES {
            return Err(DataError::bad(
                path,
                format!(
                    "record {i} (byte offset {}): label {} is not a class 0-9",
                    i * RECORD,
                    rec[0]
                ),
            ));
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((pixels, labels))
}

/// Reads one batch file (raw or gzipped).
pub fn read_batch(path: &Path) -> Result<ImageSet, DataError> {
    let bytes = idx::read_maybe_gz(path)?;
    let (images, labels) = parse_batch(path, &bytes)?;
    Ok(ImageSet {
        images,
        labels,
        shape: [3, 32, 32],
        num_classes: CLASSES,
    })
}

/// Reads `batches.meta.txt`: exactly ten non-empty names (a trailing blank line is allowed).
pub fn read_class_names(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != CLASSES {
        return Err(DataError::bad(
            path,
            format!("{} class names, expected 10", names.len()),
        ));
    }
    Ok(names)
}

/// The class names of the copy in `dir`: its `batches.meta.txt`, or the official names when the
/// file is absent.
pub fn class_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let meta = dir.join(META_FILE);
    if meta.is_file() {
        read_class_names(&meta)
    } else {
        Ok(CLASS_NAMES.iter().map(|s| s.to_string()).collect())
    }
}

/// The training batches present in `dir`, in order.
pub fn train_batches(dir: &Path) -> Vec<PathBuf> {
    TRAIN_FILES
        .iter()
        .filter_map(|f| idx::find_file(dir, f))
        .collect()
}

/// Loads every training batch present and the test batch.
pub fn load(dir: &Path) -> Result<Splits, DataError> {
    let batches = train_batches(dir);
    if batches.is_empty() {
        return Err(DataError::Missing(format!(
            "{}: no CIFAR-10 training batch (data_batch_1..5.bin, raw or .gz)",
            dir.display()
        )));
    }
    let test_path = idx::find_file(dir, TEST_FILE).ok_or_else(|| {
        DataError::Missing(format!(
            "{}: missing (or {TEST_FILE}.gz)",
            dir.join(TEST_FILE).display()
        ))
    })?;
    // Class names are checked even though the loader does not need them: a wrong meta file
    // usually means a wrong dataset (CIFAR-100 has 100 names).
    class_names(dir)?;
    let parts = batches
        .iter()
        .map(|p| read_batch(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut train = ImageSet {
        images: Vec::with_capacity(parts.iter().map(|p| p.images.len()).sum()),
        labels: Vec::new(),
        shape: [3, 32, 32],
        num_classes: CLASSES,
    };
    for p in parts {
        train.images.extend_from_slice(&p.images);
        train.labels.extend_from_slice(&p.labels);
    }
    let test = read_batch(&test_path)?;
    Ok(Splits { train, test })
}

/// One line per file for `host-train datasets`: the batches present, their records, and
/// whether the content is a known copy.
pub fn verify(dir: &Path) -> Vec<(String, Result<String, String>)> {
    let mut out = Vec::new();
    for name in TRAIN_FILES.iter().chain(std::iter::once(&TEST_FILE)) {
        let Some(path) = idx::find_file(dir, name) else {
            let r = if *name == TEST_FILE {
                Err("missing".to_string())
            } else {
                Ok("absent (the loader uses the batches present)".to_string())
            };
            out.push((name.to_string(), r));
            continue;
        };
        let r = idx::read_maybe_gz(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let (_, labels) = parse_batch(&path, &bytes).map_err(|e| e.to_string())?;
                let sha = download::sha256_hex(&bytes);
                let known = KNOWN_COPIES
                    .iter()
                    .find(|(f, s, _)| f == name && *s == sha)
                    .map(|(_, _, what)| format!(", sha256 {}..: {what}", &sha[..12]))
                    .unwrap_or_else(|| {
                        format!(
                            ", sha256 {}.. (not a known copy; structure checked)",
                            &sha[..12]
                        )
                    });
                let full = if labels.len() == BATCH_RECORDS {
                    String::new()
                } else {
                    format!(" (an official batch has {BATCH_RECORDS})")
                };
                Ok(format!("{} records{full}{known}", labels.len()))
            });
        out.push((name.to_string(), r));
    }
    let meta = dir.join(META_FILE);
    out.push((
        META_FILE.to_string(),
        if meta.is_file() {
            read_class_names(&meta)
                .map(|n| n.join(" "))
                .map_err(|e| e.to_string())
        } else {
            Ok("absent (official class names used)".to_string())
        },
    ));
    out
}

/// Downloads the official archive into `dir`, checks its MD5 and unpacks the batch files and
/// `batches.meta.txt` (nothing else, and no path outside `dir`).
pub fn fetch(dir: &Path, mirrors: &[String]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut errors = Vec::new();
    for base in mirrors {
        let url = format!("{base}{ARCHIVE}");
        match download::get(&url, ARCHIVE, 256 << 20) {
            Err(e) => errors.push(format!("{url}: {e}")),
            Ok(body) => {
                let md5 = download::md5_hex(&body);
                if md5 != ARCHIVE_MD5 {
                    errors.push(format!(
                        "{url}: checksum mismatch: MD5 {md5}, expected {ARCHIVE_MD5}"
                    ));
                    continue;
                }
                return unpack(&body, dir);
            }
        }
    }
    Err(format!(
        "could not download {ARCHIVE}:\n  {}",
        errors.join("\n  ")
    ))
}

/// Extracts the batches and the meta file of a `cifar-10-binary.tar.gz` held in memory. Each
/// file is checked (whole records, labels in range) before it is moved into place.
pub fn unpack(archive: &[u8], dir: &Path) -> Result<(), String> {
    let wanted: Vec<&str> = TRAIN_FILES
        .iter()
        .copied()
        .chain([TEST_FILE, META_FILE])
        .collect();
    let mut found = Vec::new();
    download::tar_gz_entries(
        archive,
        ARCHIVE,
        // Only `cifar-10-batches-bin/<wanted file>`; any other entry is skipped.
        |path| match path.file_name().and_then(|n| n.to_str()) {
            Some(n)
                if wanted.contains(&n)
                    && path.parent().and_then(|p| p.file_name()) == Some(ARCHIVE_DIR.as_ref()) =>
            {
                Some(n.to_string())
            }
            _ => None,
        },
        |name, bytes| {
            if name != META_FILE {
                parse_batch(Path::new(&name), &bytes).map_err(|e| format!("{ARCHIVE}: {e}"))?;
            }
            crate::checkpoint::write_atomic(&dir.join(&name), &bytes).map_err(|e| e.to_string())?;
            found.push(name);
            Ok(())
        },
    )?;
    if !found.iter().any(|f| f == TEST_FILE)
        || !TRAIN_FILES.iter().any(|f| found.contains(&f.to_string()))
    {
        return Err(format!(
            "{ARCHIVE}: no {ARCHIVE_DIR}/{TEST_FILE} or no training batch in the archive"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `n` records whose label is `i % 10` and whose pixels encode (record, plane).
    fn records(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            out.push((i % 10) as u8);
            for plane in 0..3u8 {
                out.extend(std::iter::repeat_n(i as u8 * 3 + plane, 1024));
            }
        }
        out
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn records_become_nchw_images_and_labels() {
        let (px, lab) = parse_batch(Path::new("b.bin"), &records(3)).unwrap();
        assert_eq!(lab, vec![0, 1, 2]);
        assert_eq!(px.len(), 3 * 3072);
        // Image 1: R plane 3, G plane 4, B plane 5.
        assert_eq!(px[3072], 3);
        assert_eq!(px[3072 + 1024], 4);
        assert_eq!(px[3072 + 2048 + 1023], 5);
    }

    #[test]
    fn truncated_record_and_bad_label_name_the_file() {
        let mut b = records(2);
        b.pop();
        let e = parse_batch(Path::new("data_batch_9.bin"), &b)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data_batch_9.bin") && e.contains("1 records and 3072 bytes over"),
            "{e}"
        );
        let mut b = records(2);
        b[RECORD] = 10;
        let e = parse_batch(Path::new("x.bin"), &b).unwrap_err().to_string();
        assert!(e.contains("record 1 (byte offset 3073): label 10"), "{e}");
        let e = parse_batch(Path::new("x.bin"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty file"), "{e}");
    }

    #[test]
    fn loads_the_batches_present_raw_or_gzipped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("data_batch_1.bin"), records(4)).unwrap();
        std::fs::write(d.path().join("data_batch_3.bin.gz"), gz(&records(2))).unwrap();
        std::fs::write(d.path().join("test_batch.bin"), records(3)).unwrap();
        assert!(present(d.path()));
        let s = load(d.path()).unwrap();
        assert_eq!(s.train.len(), 6);
        assert_eq!(s.train.labels, vec![0, 1, 2, 3, 0, 1]);
        assert_eq!(s.test.len(), 3);
        assert_eq!(s.train.shape, [3, 32, 32]);
        let v = verify(d.path());
        assert!(
            v[0].1
                .as_ref()
                .unwrap()
                .starts_with("4 records (an official batch has 10000)")
        );
        assert!(v[1].1.as_ref().unwrap().starts_with("absent"));
    }

    #[test]
    fn missing_test_batch_and_bad_meta_are_errors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("data_batch_1.bin"), records(1)).unwrap();
        assert!(!present(d.path()));
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin") && e.contains("missing"), "{e}");
        std::fs::write(d.path().join("test_batch.bin"), records(1)).unwrap();
        std::fs::write(d.path().join(META_FILE), "apple\nbanana\n").unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("batches.meta.txt") && e.contains("2 class names"),
            "{e}"
        );
    }

    #[test]
    fn unpacks_only_the_batches_from_the_archive() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, data).unwrap();
        };
        add("cifar-10-batches-bin/data_batch_1.bin", &records(2));
        add("cifar-10-batches-bin/test_batch.bin", &records(1));
        add("cifar-10-batches-bin/readme.html", b"<html>");
        add("other/data_batch_2.bin", &records(1));
        add(
            "cifar-10-batches-bin/batches.meta.txt",
            CLASS_NAMES.join("\n").as_bytes(),
        );
        let archive = gz(&tar.into_inner().unwrap());
        let d = tempfile::tempdir().unwrap();
        unpack(&archive, d.path()).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["batches.meta.txt", "data_batch_1.bin", "test_batch.bin"]
        );
        assert_eq!(load(d.path()).unwrap().train.len(), 2);

        // A truncated batch in the archive is refused before it is written.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(100);
        h.set_cksum();
        tar.append_data(
            &mut h,
            "cifar-10-batches-bin/test_batch.bin",
            &[0u8; 100][..],
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let e = unpack(&gz(&tar.into_inner().unwrap()), d.path()).unwrap_err();
        assert!(
            e.contains("test_batch.bin") && e.contains("3,073-byte"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
