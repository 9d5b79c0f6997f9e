//! lenet-classify's image input: PNG / JPEG (the `image` crate, with decode limits) and our own
//! PGM parser, then the MNIST-style preprocessing of what decodes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    lenet_classify::fuzzing::image(data);
});
