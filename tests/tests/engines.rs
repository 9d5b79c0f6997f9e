//! device-infer's two engines behind one call (`engine::Classify`) on the committed golden set
//! `tests/golden/lenet5-like`: tract on the float ONNX within 1e-5 of burn's logits, the int8
//! engine bit-exact with the expected int8 outputs, tract on the int8 ONNX within 1 LSB of them;
//! and the errors an application sees.

use device_infer::engine::{Classify, EngineError, Int8, ModelFile, Scores, Tract};
use lenet_tests::fixture_dir;
use protos::Message;

fn golden() -> protos::lenet::GoldenSet {
    let bytes = std::fs::read(fixture_dir().join("golden.pb")).unwrap();
    protos::lenet::GoldenSet::decode(&bytes[..]).unwrap()
}

/// Runs `engine` on every golden case; returns (class, scores) per case.
fn run_all(engine: &mut dyn Classify) -> Vec<(usize, Scores)> {
    assert_eq!(engine.input_shape(), [1, 28, 28]);
    golden()
        .cases
        .iter()
        .map(|c| {
            let out = engine.classify(&c.pixels).unwrap();
            (out.class, out.scores)
        })
        .collect()
}

#[test]
fn tract_on_the_float_onnx_matches_burn() {
    let mut engine = Tract::load(&fixture_dir().join("model.onnx")).unwrap();
    let set = golden();
    let mut max = 0f32;
    for (case, (class, scores)) in set.cases.iter().zip(run_all(&mut engine)) {
        let Scores::Float(logits) = scores else {
            panic!("a float model gives float scores")
        };
        assert_eq!(logits.len(), case.float_logits.len());
        for (a, b) in logits.iter().zip(&case.float_logits) {
            max = max.max((a - b).abs());
        }
        assert_eq!(class as u32, case.expected_class, "case {}", case.index);
    }
    assert!(max <= 1e-5, "tract vs burn: max |diff| {max}");
}

#[test]
fn the_int8_engine_is_bit_exact() {
    let file = ModelFile::read(&fixture_dir().join("model.lnq8")).unwrap();
    let mut engine = Int8::new(&file).unwrap();
    let set = golden();
    let zp = engine.model().output_zero_point();
    for (case, (class, scores)) in set.cases.iter().zip(run_all(&mut engine)) {
        let expected: Vec<i8> = case.int8_outputs.iter().map(|&b| b as i8).collect();
        assert_eq!(
            scores,
            Scores::Int8 {
                codes: expected.clone(),
                zero_point: zp
            },
            "case {}",
            case.index
        );
        assert_eq!(class, device_infer::argmax(&expected));
    }
}

#[test]
fn tract_on_the_int8_onnx_is_within_one_lsb() {
    let mut engine = Tract::load(&fixture_dir().join("model.int8.onnx")).unwrap();
    let file = ModelFile::read(&fixture_dir().join("model.lnq8")).unwrap();
    let zp = Int8::new(&file).unwrap().model().output_zero_point();
    let set = golden();
    let mut max = 0;
    let mut agree = 0;
    for (case, (class, scores)) in set.cases.iter().zip(run_all(&mut engine)) {
        let Scores::Int8 { codes, zero_point } = scores else {
            panic!("an int8 ONNX gives int8 scores")
        };
        // The zero point is read from the graph: the same as the device model's.
        assert_eq!(zero_point, zp, "case {}", case.index);
        let expected: Vec<i8> = case.int8_outputs.iter().map(|&b| b as i8).collect();
        for (a, b) in codes.iter().zip(&expected) {
            max = max.max((*a as i32 - *b as i32).abs());
        }
        agree += usize::from(class == device_infer::argmax(&expected));
    }
    assert!(max <= 1, "tract int8 vs device-infer: {max} LSB");
    assert!(agree >= 99, "argmax agrees on {agree}/100");
}

#[test]
fn bad_inputs_are_errors_that_say_why() {
    let file = ModelFile::read(&fixture_dir().join("model.lnq8")).unwrap();
    let mut int8 = Int8::new(&file).unwrap();
    let e = int8.classify(&[0u8; 100]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the model takes 784 pixels (H x W x C), got 100"
    );
    let mut tract = Tract::load(&fixture_dir().join("model.onnx")).unwrap();
    assert!(matches!(
        tract.classify(&[0u8; 785]),
        Err(EngineError::InputLength {
            expected: 784,
            got: 785
        })
    ));

    let mut bytes = std::fs::read(fixture_dir().join("model.lnq8")).unwrap();
    bytes[200] ^= 0x40;
    let bad = ModelFile::from_bytes(&bytes);
    let e = Int8::new(&bad).err().unwrap().to_string();
    assert!(e.contains("CRC"), "{e}");
    let e = ModelFile::read("no/such.lnq8".as_ref())
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("cannot read no/such.lnq8"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a protobuf").unwrap();
    let e = Tract::load(&junk).err().unwrap().to_string();
    assert!(
        e.starts_with("tract: cannot load") && e.contains("junk.onnx"),
        "{e}"
    );

    // A model whose weights "live" in a file outside its folder: refused before tract could
    // open that path.
    use protos::Message as _;
    let bytes = std::fs::read(fixture_dir().join("model.onnx")).unwrap();
    let mut m = protos::onnx::ModelProto::decode(&bytes[..]).unwrap();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    let name = w.name.clone();
    w.raw_data.clear();
    w.float_data.clear();
    w.data_location = protos::onnx::tensor_proto::DataLocation::External as i32;
    w.external_data = vec![protos::onnx::StringStringEntryProto {
        key: "location".into(),
        value: "../../../../etc/passwd".into(),
    }];
    let evil = dir.path().join("evil.onnx");
    std::fs::write(&evil, m.encode_to_vec()).unwrap();
    let e = Tract::load(&evil).err().unwrap().to_string();
    assert!(
        e.contains(&format!(
            "tensor {name:?} keeps its data in an external file"
        )),
        "{e}"
    );
}
