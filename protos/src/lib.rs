//! prost types for the formats that cross between the tools.
//!
//! - [`onnx`]: a subset of ONNX's `onnx.proto` with the official field numbers.
//! - [`lenet`]: the project's own messages (parity samples; golden sets and manifests later).
//!
//! The generated code is checked in (`src/gen/`), so a build needs no protoc. After editing
//! `proto/*.proto`, regenerate it with
//! `cargo run -p protos --features codegen --bin protos-codegen`.

pub use prost::Message;

/// ONNX (subset of `onnx.proto`, package `onnx`).
#[allow(clippy::all, missing_docs)]
pub mod onnx {
    include!("gen/onnx.rs");
}

/// The project's own messages (package `lenet`).
#[allow(clippy::all, missing_docs)]
pub mod lenet {
    include!("gen/lenet.rs");
}
