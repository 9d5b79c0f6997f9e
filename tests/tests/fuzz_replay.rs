//! The host tools' fuzz targets (`fuzz/`): their seeds and every committed regression input
//! through the targets' own bodies, so that a crash the fuzzer once found stays fixed under
//! plain `cargo test`. The device-model and image targets replay in their crates.

use std::path::PathBuf;

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 6] = [
    ("onnx_check", export::fuzzing::onnx_check),
    ("idx_file", host_train::fuzzing::idx_file),
    ("cifar_batch", host_train::fuzzing::cifar_batch),
    ("flower_jpeg", host_train::fuzzing::flower_jpeg),
    ("checkpoint", host_train::fuzzing::checkpoint),
    ("protos", protos::fuzzing::messages),
];

fn files(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(dir);
    let mut v: Vec<_> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".keep"))
                .map(|p| {
                    let b = std::fs::read(&p).unwrap();
                    (p, b)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn seeds_and_regressions_replay() {
    for (target, body) in TARGETS {
        let seeds = files(&format!("seeds/{target}"));
        assert!(!seeds.is_empty(), "{target}: no seeds");
        for (path, data) in seeds.iter().chain(&files(&format!("regressions/{target}"))) {
            eprintln!("{target}: {}", path.display());
            body(data);
        }
    }
}

#[test]
fn the_seeds_are_valid_inputs() {
    use std::path::Path;
    // Each seed parses, so that the fuzzer starts from inputs that reach deep.
    for (p, d) in files("seeds/onnx_check") {
        export::graph::parse(&d).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
    }
    for (p, d) in files("seeds/idx_file") {
        let raw = host_train::data::idx::maybe_gunzip(&p, d, 1 << 20).unwrap();
        let rank = raw[3] as usize;
        host_train::data::idx::parse(&p, &raw, rank).unwrap();
    }
    for (p, d) in files("seeds/cifar_batch") {
        host_train::data::cifar10::parse_batch(&p, &d).unwrap();
    }
    for (p, d) in files("seeds/flower_jpeg") {
        host_train::data::flowers::decode_resize(&p, &d, 32).unwrap();
    }
    for (p, d) in files("seeds/checkpoint") {
        host_train::checkpoint::Checkpoint::decode(Path::new(&p), &d).unwrap();
    }
}
