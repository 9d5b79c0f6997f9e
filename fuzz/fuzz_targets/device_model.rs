//! The device-model loader on raw bytes, then a run of what loads.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    device_infer::fuzzing::device_model(data);
});
