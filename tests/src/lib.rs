//! Shared fixtures of the cross-tool tests.
//!
//! - `golden/lenet5-like/`: a LeNet5-like trained by host-train (its run folder), its ONNX
//!   export and parity sample; `bash tests/golden/regenerate.sh` rebuilds it.
//! - [`imported`]: that ONNX file turned back into Burn code by burn-onnx's importer (build.rs).

use std::path::PathBuf;

/// The code burn-onnx generated from `golden/lenet5-like/model.onnx`.
#[allow(clippy::all, missing_docs, unused)]
pub mod imported {
    include!(concat!(env!("OUT_DIR"), "/imported/model.rs"));
}

/// `tests/golden/lenet5-like`.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/lenet5-like")
}

/// The shared MNIST copy (`../shared/data`), or `$HOST_TRAIN_DATA_DIR`.
pub fn data_root() -> PathBuf {
    std::env::var_os(host_train::data::DATA_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}
