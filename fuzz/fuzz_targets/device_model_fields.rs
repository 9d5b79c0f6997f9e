//! Structured: the seed models (one with an overlapping arena) with hostile header and layer fields (records of field, layer,
//! value), re-sealed, loaded and run (`device_infer::fuzzing::device_model_fields`).
#![no_main]

const SEEDS: [&[u8]; 3] = [
    include_bytes!("../seeds/device_model/conv-max-dense.lnq8"),
    include_bytes!("../seeds/device_model/conv-avg-lut-dense.lnq8"),
    include_bytes!("../seeds/device_model/overlap-conv-conv-dense.lnq8"),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    device_infer::fuzzing::device_model_fields(SEEDS[pick as usize % SEEDS.len()], rest);
});
