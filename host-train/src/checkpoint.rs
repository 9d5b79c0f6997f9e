//! Checkpoints: the model, the optimizer state and the loop's own state in one file, written
//! atomically (a temporary file, fsync, rename, fsync of the folder), so a crash or a full disk
//! leaves the previous checkpoint intact.
//!
//! Layout (little-endian): `HTCKPT01`, then three sections each prefixed by its u64 length
//! (loop state as JSON, model as burnpack, optimizer as burnpack), then the SHA-256 of all
//! preceding bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"HTCKPT01";

/// The file name of a run's checkpoint.
pub const FILE: &str = "checkpoint.bin";

/// The three parts of a checkpoint.
pub struct Checkpoint {
    /// The training loop's state, as JSON.
    pub state: Vec<u8>,
    /// The model's parameters (burnpack).
    pub model: Vec<u8>,
    /// The optimizer's state (burnpack).
    pub optimizer: Vec<u8>,
}

impl Checkpoint {
    /// Serialises the checkpoint.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 + self.state.len() + self.model.len() + self.optimizer.len());
        out.extend_from_slice(MAGIC);
        for part in [&self.state, &self.model, &self.optimizer] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Parses a checkpoint, checking magic, lengths and checksum.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let p = path.display();
        if bytes.len() < MAGIC.len() + 24 + 32 || &bytes[..8] != MAGIC {
            bail!("{p}: not a host-train checkpoint (bad magic or too short)");
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            bail!("{p}: checksum mismatch, the checkpoint is corrupt or truncated");
        }
        let mut at = MAGIC.len();
        let mut parts = Vec::with_capacity(3);
        for name in ["state", "model", "optimizer"] {
            let len = body
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
                .with_context(|| format!("{p}: truncated before the {name} section"))?;
            at += 8;
            let part = body
                .get(at..at.saturating_add(len))
                .with_context(|| format!("{p}: the {name} section is truncated"))?;
            parts.push(part.to_vec());
            at += len;
        }
        if at != body.len() {
            bail!(
                "{p}: {} unexpected bytes after the sections",
                body.len() - at
            );
        }
        let optimizer = parts.pop().expect("3 parts");
        let model = parts.pop().expect("3 parts");
        let state = parts.pop().expect("3 parts");
        Ok(Checkpoint {
            state,
            model,
            optimizer,
        })
    }

    /// Reads and checks a checkpoint file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::decode(path, &bytes)
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.encode())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so readers
/// see either the old or the new content, never a part. On error the old file is untouched and
/// the temporary file removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("path has no file name")?;
    let tmp: PathBuf = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            state: b"{\"iteration\":3}".to_vec(),
            model: vec![1, 2, 3, 4, 5],
            optimizer: vec![],
        }
    }

    #[test]
    fn roundtrip_and_atomic_write() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(FILE);
        sample().write(&path).unwrap();
        let c = Checkpoint::read(&path).unwrap();
        assert_eq!(c.state, sample().state);
        assert_eq!(c.model, sample().model);
        assert!(c.optimizer.is_empty());
        // Only the checkpoint is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn corruption_and_truncation_are_detected() {
        let p = Path::new("ck.bin");
        let good = sample().encode();
        let mut flipped = good.clone();
        flipped[12] ^= 1;
        let e = Checkpoint::decode(p, &flipped).err().unwrap().to_string();
        assert!(
            e.contains("ck.bin") && e.contains("checksum mismatch"),
            "{e}"
        );
        let e = Checkpoint::decode(p, &good[..good.len() - 3])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        let e = Checkpoint::decode(p, b"nonsense")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a host-train checkpoint"), "{e}");
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(FILE);
        sample().write(&path).unwrap();
        // A folder where the temporary file should go makes the write fail.
        std::fs::create_dir(d.path().join(format!(".{FILE}.tmp"))).unwrap();
        assert!(
            Checkpoint {
                state: vec![9],
                model: vec![],
                optimizer: vec![]
            }
            .write(&path)
            .is_err()
        );
        assert_eq!(Checkpoint::read(&path).unwrap().state, sample().state);
    }
}
