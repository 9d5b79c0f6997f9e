//! A CIFAR-10 binary batch.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    host_train::fuzzing::cifar_batch(data);
});
