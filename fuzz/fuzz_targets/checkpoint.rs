//! A host-train checkpoint file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    host_train::fuzzing::checkpoint(data);
});
