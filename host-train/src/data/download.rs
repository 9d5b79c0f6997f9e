//! Downloading a dataset from its mirrors, with a progress bar, verified by the SHA-256 of the
//! decompressed content before anything is written where a loader would find it.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::{DatasetKind, FileSpec, idx};

/// Largest file we accept from a mirror (MNIST's biggest is 9.9 MB gzipped).
const MAX_DOWNLOAD: u64 = 512 << 20;

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Downloads every missing or corrupt file of `kind` into `dir`, trying each mirror in turn.
pub fn fetch_dataset(kind: DatasetKind, dir: &Path) -> Result<(), String> {
    let mirrors = kind.mirrors();
    match kind {
        DatasetKind::Mnist => {
            let mirrors: Vec<&str> = mirrors.iter().map(String::as_str).collect();
            fetch_files(super::mnist::FILES, &mirrors, dir)
        }
        DatasetKind::Cifar10 => super::cifar10::fetch(dir, &mirrors),
        DatasetKind::Oxflower17 => super::flowers::fetch(dir, &mirrors),
    }
}

/// Downloads `files` from the first mirror that serves each with the right checksum.
pub fn fetch_files(files: &[FileSpec], mirrors: &[&str], dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for spec in files {
        if let Some(existing) = idx::find_file(dir, spec.name)
            && idx::read_maybe_gz(&existing).is_ok_and(|b| sha256_hex(&b) == spec.sha256)
        {
            continue;
        }
        let mut errors = Vec::new();
        let mut done = false;
        for base in mirrors {
            let url = format!("{base}{}", spec.name);
            match fetch_one(&url, spec, dir) {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        if !done {
            return Err(format!(
                "could not download {}:\n  {}",
                spec.name,
                errors.join("\n  ")
            ));
        }
    }
    Ok(())
}

/// Reads the entries of a `.tar.gz` archive (named `archive` in messages) in memory, no shell:
/// for each entry whose path `wanted` maps to a name, its bytes go to `each(name, bytes)`; the
/// others are skipped unread. Errors name the archive and the entry.
pub fn tar_gz_entries<T>(
    archive_bytes: &[u8],
    archive: &str,
    mut wanted: impl FnMut(&Path) -> Option<T>,
    mut each: impl FnMut(T, Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive_bytes));
    for entry in tar
        .entries()
        .map_err(|e| format!("{archive}: not a tar.gz: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("{archive}: corrupt archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("{archive}: bad entry name: {e}"))?
            .into_owned();
        let Some(name) = wanted(&path) else {
            continue;
        };
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{archive}: {}: {e}", path.display()))?;
        each(name, bytes)?;
    }
    Ok(())
}

/// MD5 of `bytes` (hex): only to check archives whose authors publish nothing stronger.
pub fn md5_hex(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// GETs `url` into memory with a progress bar labelled `label`, refusing more than `limit`
/// bytes.
pub fn get(url: &str, label: &str, limit: u64) -> Result<Vec<u8>, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(1800)))
            .build(),
    );
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    let len = resp.body().content_length();
    let bar = ProgressBar::new(len.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    let mut body = Vec::new();
    let mut reader = resp.body_mut().with_config().limit(limit).reader();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(body)
}

/// Fetches one file, checks it, and moves it into place atomically.
fn fetch_one(url: &str, spec: &FileSpec, dir: &Path) -> Result<(), String> {
    let body = get(url, spec.name, MAX_DOWNLOAD)?;

    // Verify the decompressed content before the file is visible under its real name.
    let tmp = dir.join(format!(".{}.part", spec.name));
    std::fs::write(&tmp, &body).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let check = idx::read_maybe_gz(&tmp)
        .map_err(|e| e.to_string())
        .and_then(|raw| {
            let got = sha256_hex(&raw);
            if got == spec.sha256 {
                Ok(())
            } else {
                Err(format!(
                    "checksum mismatch: sha256 of the decompressed content is {got}, expected {}",
                    spec.sha256
                ))
            }
        });
    if let Err(e) = check {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let dest = dir.join(spec.name);
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &dest))
        .map_err(|e| format!("cannot move the download to {}: {e}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Write};
    use std::net::TcpListener;

    /// Serves `body` for every GET on a loopback port, for `n` connections, then stops.
    fn serve(body: Vec<u8>, n: usize) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in l.incoming().take(n) {
                let mut s = stream.unwrap();
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|k| k > 2) {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(&body).unwrap();
            }
        });
        format!("http://{addr}/")
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn downloads_verifies_and_skips_present_files() {
        let content = idx::encode(&[4], &[1, 2, 3, 4]);
        let spec = FileSpec {
            name: "labels.gz",
            sha256: Box::leak(sha256_hex(&content).into_boxed_str()),
        };
        let dir = tempfile::tempdir().unwrap();
        let url = serve(gz(&content), 1);
        fetch_files(&[spec], &[&url], dir.path()).unwrap();
        assert_eq!(
            idx::read_maybe_gz(&dir.path().join("labels.gz")).unwrap(),
            content
        );
        // Present and valid: no request is made (the server is gone after one connection).
        fetch_files(&[spec], &["http://127.0.0.1:9/"], dir.path()).unwrap();
    }

    #[test]
    fn checksum_mismatch_keeps_nothing_and_falls_back_to_the_next_mirror() {
        let good = idx::encode(&[2], &[5, 6]);
        let spec = FileSpec {
            name: "x.gz",
            sha256: Box::leak(sha256_hex(&good).into_boxed_str()),
        };
        let dir = tempfile::tempdir().unwrap();
        let bad_mirror = serve(gz(&idx::encode(&[2], &[5, 7])), 1);
        let e = fetch_files(&[spec], &[&bad_mirror], dir.path()).unwrap_err();
        assert!(e.contains("checksum mismatch"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let bad_mirror = serve(gz(&idx::encode(&[2], &[5, 7])), 1);
        let good_mirror = serve(gz(&good), 1);
        fetch_files(&[spec], &[&bad_mirror, &good_mirror], dir.path()).unwrap();
        assert!(dir.path().join("x.gz").is_file());
    }

    #[test]
    fn offline_error_lists_every_mirror() {
        let spec = FileSpec {
            name: "y.gz",
            sha256: "00",
        };
        let dir = tempfile::tempdir().unwrap();
        let e = fetch_files(
            &[spec],
            &["http://127.0.0.1:9/", "http://127.0.0.1:10/"],
            dir.path(),
        )
        .unwrap_err();
        assert!(
            e.contains("127.0.0.1:9/y.gz") && e.contains("127.0.0.1:10/y.gz"),
            "{e}"
        );
    }
}
