//! The device-model fuzz targets' seeds and every committed regression input (`fuzz/seeds`,
//! `fuzz/regressions`) through the targets' own bodies (`device_infer::fuzzing`): a crash the
//! fuzzer once found stays fixed under plain `cargo test`.

use std::path::PathBuf;

fn inputs(dirs: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut v = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(root.join(d)) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == ".keep") {
                continue;
            }
            if p.is_file() {
                v.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    v.sort();
    v
}

#[test]
fn seeds_and_regressions_replay() {
    let seeds = inputs(&["seeds/device_model"]);
    assert!(seeds.len() >= 2, "the seed corpus is there");
    for (path, data) in &seeds {
        // Seeds are valid models: the harness runs them all the way.
        let mem = device_infer::writer::AlignedBytes::new(data);
        assert!(
            device_infer::Model::from_bytes(mem.as_bytes()).is_ok(),
            "{}",
            path.display()
        );
        device_infer::fuzzing::device_model(data);
    }
    for (path, data) in inputs(&["regressions/device_model"]) {
        eprintln!("{}", path.display());
        device_infer::fuzzing::device_model(&data);
    }
    for (path, data) in inputs(&["regressions/device_model_sealed"]) {
        eprintln!("{}", path.display());
        device_infer::fuzzing::device_model(&device_infer::fuzzing::sealed(&data));
    }
    // The structured target: its first byte picks one of the two seed models.
    let models: Vec<Vec<u8>> = ["conv-max-dense.lnq8", "conv-avg-lut-dense.lnq8"]
        .iter()
        .map(|n| {
            std::fs::read(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../fuzz/seeds/device_model")
                    .join(n),
            )
            .unwrap()
        })
        .collect();
    let fields = inputs(&[
        "seeds/device_model_fields",
        "regressions/device_model_fields",
    ]);
    assert!(fields.len() >= 2);
    for (path, data) in fields {
        eprintln!("{}", path.display());
        if let Some((&pick, rest)) = data.split_first() {
            device_infer::fuzzing::device_model_fields(&models[pick as usize % 2], rest);
        }
    }
}

#[test]
fn sealing_reaches_the_validator() {
    // A sealed copy of a valid model with a weight-count field broken: past the CRC, the
    // validator itself refuses it (a correct CRC over malicious content).
    let seeds = inputs(&["seeds/device_model"]);
    let (_, data) = &seeds[0];
    let mut bad = data.clone();
    bad[48 + 4] ^= 0x7F; // inside the first layer entry
    let sealed = device_infer::fuzzing::sealed(&bad);
    let mem = device_infer::writer::AlignedBytes::new(&sealed);
    let e = device_infer::Model::from_bytes(mem.as_bytes()).unwrap_err();
    assert!(
        !matches!(
            e,
            device_infer::Error::Crc { .. } | device_infer::Error::Length { .. }
        ),
        "{e}"
    );
    device_infer::fuzzing::device_model(&sealed);
}
