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

/// Embeds a device model file with the 4-byte alignment [`Model::from_bytes`] requires:
/// `static MODEL: &[u8] = device_infer::include_model!("lenet.lnq8");`
#[macro_export]
macro_rules! include_model {
    ($path:expr) => {{
        #[repr(C, align(4))]
        struct Aligned<T: ?Sized>(T);
        static ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!($path));
        &ALIGNED.0
    }};
}
