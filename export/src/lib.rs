//! export: reads ONNX, checks it against what the int8 device runtime can run and what a part
//! can hold, and (coming) quantizes it.
//!
//! - [`graph`]: ONNX bytes -> a checked, ordered [`graph::Graph`] (errors name the node/field).
//! - [`ops`]: the op registry; shape inference, parameters and MACs per node.
//! - [`check`]: the report and the int8 flash / RAM estimate; [`targets`]: the parts table.
//! - [`parity`]: tract on a parity sample, against burn's logits.
//! - [`float`]: a reference float interpreter; [`quantize`]: calibration and int8 quantization
//!   into the device format (`device_infer::writer`).
//! - [`golden`]: golden sets: generate the expected outputs, verify any target against them.
//! - [`deploy`]: the firmware under QEMU: bit-exactness, instruction counts, flash and RAM.
//! - [`images`]: dataset images in the float model's CHW and the device's HWC order.
//! - [`edge`]: the classifier built for a Linux ARM board, run under QEMU user mode: the same.

pub mod check;
pub mod deploy;
pub mod edge;
pub mod float;
#[doc(hidden)]
pub mod fuzzing;
pub mod golden;
pub mod graph;
pub mod images;
pub mod integer_onnx;
pub mod ops;
pub mod parity;
pub mod qonnx;
pub mod quantize;
pub mod targets;
