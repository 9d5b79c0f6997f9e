//! The committed drawn digits (`classify/testdata/drawn/`, made by `examples/draw_digits.rs`:
//! pen paths written by hand, rendered as scans, phone photos, pencil and ruled paper), through
//! the MNIST-style preprocessing and the committed LeNet5-like, on every engine. The accuracy
//! printed in the README is the one measured here: the test fails when they differ.

use std::path::{Path, PathBuf};

use device_infer::engine::{Classify, Int8, ModelFile, Tract};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (file, label from the name's first character), sorted.
fn drawn() -> Vec<(PathBuf, usize)> {
    let dir = root().join("classify/testdata/drawn");
    let mut v: Vec<(PathBuf, usize)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let label = name[..1].parse().unwrap();
            (p, label)
        })
        .collect();
    v.sort();
    v
}

fn right(engine: &mut dyn Classify, images: &[(PathBuf, usize)]) -> (usize, Vec<String>) {
    let mut wrong = Vec::new();
    for (path, label) in images {
        let img = lenet_classify::decode(&std::fs::read(path).unwrap()).unwrap();
        let p = lenet_classify::mnist_style(&img).unwrap();
        assert!(p.inverted, "{}: dark ink on light paper", path.display());
        let class = engine.classify(&p.pixels).unwrap().class;
        if class != *label {
            wrong.push(format!("{} -> {class}", name(path)));
        }
    }
    (images.len() - wrong.len(), wrong)
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn drawn_digits_accuracy_is_the_readmes() {
    let images = drawn();
    for d in 0..10 {
        let n = images.iter().filter(|(_, l)| *l == d).count();
        assert!(n >= 3, "class {d}: {n} images");
    }
    let golden = root().join("tests/golden/lenet5-like");
    let file = ModelFile::read(&golden.join("model.lnq8")).unwrap();
    let (int8, wrong8) = right(&mut Int8::new(&file).unwrap(), &images);
    let (float, wrongf) = right(
        &mut Tract::load(&golden.join("model.onnx")).unwrap(),
        &images,
    );
    let n = images.len();
    eprintln!(
        "drawn digits: int8 {int8}/{n} (wrong: {wrong8:?}), float {float}/{n} (wrong: {wrongf:?})"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let claim = format!(
        "drawn digits: {int8}/{n} right with the int8 engine, {float}/{n} with tract on the float ONNX"
    );
    assert!(
        readme.contains(&claim),
        "README.md must say \"{claim}\" (measured now; wrong: int8 {wrong8:?}, float {wrongf:?})"
    );
}
