//! ONNX bytes through `export check` (read, shapes, report), then the float interpreter and
//! calibration + int8 quantization on what checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    export::fuzzing::onnx_check(data);
});
