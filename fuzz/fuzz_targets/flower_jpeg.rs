//! One Oxford-17 flower JPEG, in memory: decoded (limits set) and resized.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    host_train::fuzzing::flower_jpeg(data);
});
