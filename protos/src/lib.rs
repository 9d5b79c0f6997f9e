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

/// The body of the `protos` fuzz target (`fuzz/`), here so that plain `cargo test` replays its
/// committed regression inputs. Panics only on a bug.
#[doc(hidden)]
pub mod fuzzing {
    use super::Message;

    /// Decodes `data` as each message the tools read; what decodes must survive a round trip
    /// through its encoding unchanged (compared as bytes: a NaN float is not equal to itself,
    /// which the first version of this check took for a bug; `fuzz/regressions/protos`).
    pub fn messages(data: &[u8]) {
        fn roundtrip<M: Message + Default>(data: &[u8]) {
            if let Ok(m) = M::decode(data) {
                let bytes = m.encode_to_vec();
                let again = M::decode(&bytes[..]).expect("re-decodes");
                assert_eq!(again.encode_to_vec(), bytes);
            }
        }
        roundtrip::<super::onnx::ModelProto>(data);
        roundtrip::<super::lenet::GoldenSet>(data);
        roundtrip::<super::lenet::ParitySample>(data);
    }
}
