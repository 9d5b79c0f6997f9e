//! The device-model loader past its accident checks: the length field and the CRC are fixed up
//! before loading, so the fuzzer explores the validator itself (a correct CRC over malicious
//! content must still be rejected), then a run of what loads.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    device_infer::fuzzing::device_model(&device_infer::fuzzing::sealed(data));
});
