//! host-train: train LeNet-style classifiers with burn, from real datasets to checkpoints,
//! metrics and (later) ONNX.
//!
//! - [`data`]: dataset files (MNIST IDX; CIFAR-10 and Oxford-17 to come), checksums, download,
//!   batching.
//! - [`models`]: the built-in networks, one file each.
//! - [`summary`]: shapes, parameters and MACs per layer, and the output-size rule.
//! - [`train`]: the loop, metrics, checkpoints and resume; [`optim`]: optimizers and schedules.
//! - [`kernels`]: fused CPU training kernels plugged into burn; [`plot`]: SVG accuracy plots.

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod kernels;
pub mod models;
pub mod onnx;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod summary;
pub mod train;
