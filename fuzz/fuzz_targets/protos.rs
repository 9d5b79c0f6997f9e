//! The prost messages the tools read: ONNX ModelProto, GoldenSet, ParitySample.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protos::fuzzing::messages(data);
});
