//! The `export` binary on the committed LeNet5-like fixture.

use std::path::PathBuf;
use std::process::Command;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/lenet5-like/model.onnx")
}

fn check(args: &[&str], model: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_export"))
        .arg("check")
        .arg(model)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lenet5_like_fits_a_microbit_and_matches_burn_in_tract() {
    let (code, out, err) = check(&["--target", "microbit"], &fixture());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("total: 15 nodes (3 folded at export), 61706 parameters, 416520 MACs"),
        "{out}"
    );
    assert!(
        out.contains("ops: all supported by the device runtime"),
        "{out}"
    );
    // The device model's plan: 1,576 bytes with overlapping buffers, 784 + 1,176 without.
    assert!(
        out.contains("arena 1576 bytes (the device model's plan: fused layers, overlapping buffers; 1960 separate"),
        "{out}"
    );
    assert!(
        out.contains("argmax agrees 32/32") && out.contains("check passed"),
        "{out}"
    );
}

#[test]
fn too_small_a_part_fails_with_status_1() {
    let (code, out, _) = check(&["--target", "cortex-m0plus-32k"], &fixture());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("flash 74890 / 32768 bytes (229%) DOES NOT FIT"),
        "{out}"
    );
    let (code, _, err) = check(&["--target", "pentium"], &fixture());
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown --target \"pentium\"") && err.contains("microbit"),
        "{err}"
    );
}

#[test]
fn a_malformed_file_is_an_error_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.onnx");
    let bytes = std::fs::read(fixture()).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let (code, _, err) = check(&[], &bad);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.onnx") && err.contains("error:"), "{err}");
}
