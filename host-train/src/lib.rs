//! host-train: train LeNet-style classifiers and the deep classics with burn, from real datasets
//! to checkpoints, metrics, figures and ONNX.
//!
//! - [`data`]: dataset files (MNIST IDX, CIFAR-10 binary batches, Oxford-17 JPEG folders),
//!   checksums, download, batching, augmentation.
//! - [`models`]: the built-in networks, one file each.
//! - [`summary`]: shapes, parameters and MACs per layer, and the output-size rule.
//! - [`train`]: the loop, metrics, checkpoints and resume; [`optim`]: optimizers and schedules.
//! - [`kernels`]: fused CPU training kernels plugged into burn.
//! - [`compare`]: optimizer and learning-rate grids with their summary; [`figures`]: the
//!   accuracy figures (PNG and SVG) of runs and grids.

pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod data;
pub mod figures;
#[doc(hidden)]
pub mod fuzzing;
pub mod kernels;
pub mod models;
pub mod onnx;
pub mod optim;
pub mod rng;
pub mod summary;
pub mod train;

/// Keeps freed memory in the process heap instead of returning it to the OS (glibc only).
///
/// A training step allocates and frees tensors of tens of MB (activations, gradients, im2col
/// buffers); by default glibc serves large blocks with mmap and trims the heap after frees, so
/// every step faults in and zeroes fresh pages: on AlexNet at 224 that was about a fifth of
/// the step (`perf`: `clear_page_erms`, page faults). Called once at the start of `main`.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
