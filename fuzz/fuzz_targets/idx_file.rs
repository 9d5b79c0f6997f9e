//! An MNIST IDX file (gzipped or not) as images and as labels.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    host_train::fuzzing::idx_file(data);
});
