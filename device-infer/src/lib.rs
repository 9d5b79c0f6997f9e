#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
// No unsafe code except the Armv7E-M `smlad` loops in `kernels::dot` and `kernels::conv2d_c1`
// (each `asm!` block carries its soundness argument) and the calls into the AVX2 kernels of
// `kernels::x86` once the CPU is known to have AVX2.
#![deny(unsafe_code)]
#![deny(missing_docs)]
// No panicking shortcuts in the device path (tests may use them).
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]

#[cfg(all(feature = "std", not(test)))]
extern crate std;

#[cfg(any(test, feature = "std"))]
pub mod engine;
#[cfg(feature = "std")]
pub mod fuzzing;
#[cfg(feature = "hal")]
pub mod hal;
pub mod kernels;
pub mod model;
pub mod quant;
#[cfg(test)]
mod testutil;
/// Host side: the device-format writer (`std` feature).
#[cfg(any(test, feature = "std"))]
pub mod writer;

pub use model::{Error, Model, argmax};
pub use quant::requantize;

/// Bytes (or anything) at a 4-byte aligned address: what [`Model::from_aligned`] reads, and
/// how [`include_model!`] embeds a file.
#[repr(C, align(4))]
pub struct Aligned<T: ?Sized>(pub T);

/// Embeds a device model file and validates it while the crate compiles: the result is a
/// [`Model`], and a bad file is a compile error naming what is wrong (the firmware then holds
/// no validation code). `static MODEL: Model<'static> = device_infer::include_model!("lenet.lnq8");`
/// The check costs compile time: 0.7 s for LeNet5-like's 64 KB, about 11 s for a 1 MB model.
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        const BYTES: &$crate::Aligned<[u8]> = &$crate::Aligned(*include_bytes!($path));
        // The compiler's evaluator reads every byte (CRC, weight range): about 10 s per MB,
        // which past a few hundred KB trips the lint against endless constant evaluation.
        #[allow(long_running_const_eval)]
        const MODEL: $crate::Model<'static> = match $crate::Model::from_aligned(BYTES) {
            Ok(model) => model,
            Err(e) => panic!("{}", e.summary()),
        };
        MODEL
    }};
}
