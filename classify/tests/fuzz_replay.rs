//! The `image_decode` fuzz target's seeds and committed regression inputs through its body
//! (`lenet_classify::fuzzing::image`).

use std::path::PathBuf;

#[test]
fn seeds_and_regressions_replay() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut seen = 0;
    for d in ["seeds/image_decode", "regressions/image_decode"] {
        let Ok(rd) = std::fs::read_dir(root.join(d)) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == ".keep") {
                continue;
            }
            let data = std::fs::read(&p).unwrap();
            if d.starts_with("seeds") {
                // Seeds decode and hold a digit.
                let img = lenet_classify::decode(&data)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                lenet_classify::mnist_style(&img).unwrap();
            }
            lenet_classify::fuzzing::image(&data);
            seen += 1;
        }
    }
    assert!(seen >= 4, "{seen} inputs");
}
