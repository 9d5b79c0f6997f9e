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

#[test]
fn integer_onnx_writes_the_graph_and_checks_tract_on_test_digits() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture().with_file_name("model.lnq8");
    let out_path = dir.path().join("lenet.integer.onnx");
    let data = std::env::var_os(host_train::data::DATA_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let run = |model: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_export"))
            .arg("integer-onnx")
            .arg(model)
            .arg("-o")
            .arg(&out_path)
            .args(["--check", "25", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = run(&model);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("tract on it vs device-infer: 25/25 test images bit-exact"),
        "{text}"
    );
    let g = <protos::onnx::ModelProto as protos::Message>::decode(
        &std::fs::read(&out_path).unwrap()[..],
    )
    .unwrap();
    let ops: std::collections::BTreeSet<String> = g
        .graph
        .unwrap()
        .node
        .into_iter()
        .map(|n| n.op_type)
        .collect();
    assert!(
        ops.contains("ConvInteger")
            && ops.contains("MatMulInteger")
            && !ops.contains("QLinearConv"),
        "{ops:?}"
    );
    // A corrupted device model: an error naming the file, nothing written.
    std::fs::remove_file(&out_path).unwrap();
    let bad = dir.path().join("bad.lnq8");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&bad, bytes).unwrap();
    let out = run(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.lnq8"), "{err}");
    assert!(!out_path.exists());
}
