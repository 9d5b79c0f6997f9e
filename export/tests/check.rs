//! `export check` on models built here: malformed files give errors that name the node or
//! field, never a panic; shapes, parameters, MACs and the footprint are right.

use export::{check, graph, ops};
use protos::Message;
use protos::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_shape_proto::Dimension, tensor_shape_proto::dimension::Value as Dim, type_proto,
};

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Dim::DimValue(d)),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        float_data: data,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn node(
    name: &str,
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// x [1,1,8,8] -> Conv 2@3x3 SAME_UPPER -> Relu -> MaxPool 2x2 -> Flatten -> MatMul [32,3] -> Add b.
fn model() -> ModelProto {
    let mut auto_pad = AttributeProto {
        name: "auto_pad".into(),
        r#type: AttributeType::String as i32,
        s: b"SAME_UPPER".to_vec(),
        ..Default::default()
    };
    auto_pad.s = b"SAME_UPPER".to_vec();
    ModelProto {
        ir_version: 8,
        producer_name: "test".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 18,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            input: vec![value("x", &[1, 1, 8, 8])],
            output: vec![value("y", &[1, 3])],
            initializer: vec![
                tensor("w", &[2, 1, 3, 3], vec![0.1; 18]),
                tensor("b", &[2], vec![0.0; 2]),
                tensor("fw", &[32, 3], vec![0.01; 96]),
                tensor("fb", &[3], vec![0.5; 3]),
            ],
            node: vec![
                node(
                    "conv",
                    "Conv",
                    &["x", "w", "b"],
                    &["c"],
                    vec![auto_pad, ints("kernel_shape", &[3, 3])],
                ),
                node("relu", "Relu", &["c"], &["r"], vec![]),
                node(
                    "pool",
                    "MaxPool",
                    &["r"],
                    &["p"],
                    vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
                ),
                node("flat", "Flatten", &["p"], &["f"], vec![]),
                node("fc", "MatMul", &["f", "fw"], &["m"], vec![]),
                node("bias", "Add", &["m", "fb"], &["y"], vec![]),
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn err(m: &ModelProto) -> String {
    match graph::parse(&m.encode_to_vec()).and_then(|g| ops::analyse(&g).map(|_| ())) {
        Ok(()) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn nodes(m: &mut ModelProto) -> &mut Vec<NodeProto> {
    &mut m.graph.as_mut().unwrap().node
}

#[test]
fn a_valid_model_is_shaped_counted_and_fits() {
    let g = graph::parse(&model().encode_to_vec()).unwrap();
    let a = ops::analyse(&g).unwrap();
    let shapes: Vec<_> = a.nodes.iter().map(|n| n.info.output.clone()).collect();
    assert_eq!(
        shapes,
        vec![
            vec![1, 2, 8, 8],
            vec![1, 2, 8, 8],
            vec![1, 2, 4, 4],
            vec![1, 32],
            vec![1, 3],
            vec![1, 3]
        ]
    );
    assert_eq!(a.nodes[0].info.params, 20);
    assert_eq!(a.nodes[0].info.macs, 2 * 8 * 8 * 9);
    assert_eq!(a.nodes[4].info.macs, 96);
    assert!(a.unsupported.is_empty());
    let f = check::footprint(&g, &a);
    assert_eq!(
        (f.weights, f.biases, f.quant),
        (18 + 96, 4 * 2 + 4 * 3, 5 * (2 + 3))
    );
    // Fused: conv+relu+pool holds 64 in + 32 out; dense 32 in + 3 out. Unfused, the largest
    // pair is relu's 128 in + 128 out.
    assert_eq!((f.arena, f.arena_unfused), (96, 256));
    let r = check::report(&g, &a, export::targets::find("cortex-m0plus-32k"));
    assert!(r.ok, "{}", r.text);
    assert!(r.text.contains("ops: all supported"), "{}", r.text);
}

#[test]
fn truncated_and_random_bytes_are_errors() {
    let bytes = model().encode_to_vec();
    for cut in [1, 7, bytes.len() / 2, bytes.len() - 1] {
        assert!(graph::parse(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let e = format!(
        "{:#}",
        graph::parse(b"\xff\xff\xff\xff garbage").unwrap_err()
    );
    assert!(e.contains("not an ONNX model"), "{e}");
}

#[test]
fn mutated_files_never_panic() {
    let bytes = model().encode_to_vec();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % b.len() as u64) as usize;
            b[i] = (state >> 32) as u8;
        }
        if let Ok(g) = graph::parse(&b)
            && let Ok(a) = ops::analyse(&g)
        {
            let _ = check::report(&g, &a, None);
        }
    }
}

#[test]
fn wrong_opset() {
    let mut m = model();
    m.opset_import[0].version = 3;
    assert!(err(&m).contains("opset_import: opset 3 is not supported"));
}

#[test]
fn missing_initializer_is_a_dangling_edge_naming_the_node() {
    let mut m = model();
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .retain(|t| t.name != "w");
    let e = err(&m);
    assert!(
        e.contains("node conv: input w is produced by no node"),
        "{e}"
    );
}

#[test]
fn unknown_op_is_reported_with_the_supported_list() {
    let mut m = model();
    nodes(&mut m)[1].op_type = "Einsum".into();
    let g = graph::parse(&m.encode_to_vec()).unwrap();
    let a = ops::analyse(&g).unwrap();
    assert_eq!(
        a.unsupported,
        vec![("relu".to_string(), "Einsum".to_string())]
    );
    // Shapes stop at an op this tool does not know.
    assert!(a.output_shape.is_none());
    let r = check::report(&g, &a, None);
    assert!(!r.ok);
    assert!(
        r.text.contains("unsupported op Einsum (node relu)")
            && r.text.contains("supports: Conv, MaxPool"),
        "{}",
        r.text
    );
}

#[test]
fn lrn_is_known_but_not_a_device_op() {
    let mut m = model();
    let n = &mut nodes(&mut m)[1];
    n.op_type = "LRN".into();
    n.attribute.push(AttributeProto {
        name: "size".into(),
        r#type: AttributeType::Int as i32,
        i: 3,
        ..Default::default()
    });
    let g = graph::parse(&m.encode_to_vec()).unwrap();
    let a = ops::analyse(&g).unwrap();
    // Analysis goes past it: the whole graph is shaped.
    assert_eq!(a.output_shape, Some(vec![1, 3]));
    assert_eq!(a.off_device, vec![("relu".to_string(), "LRN".to_string())]);
    let r = check::report(&g, &a, None);
    assert!(!r.ok);
    assert!(r.text.contains("op LRN (node relu): known"), "{}", r.text);
    // An even window is not an LRN.
    nodes(&mut m)[1].attribute.last_mut().unwrap().i = 4;
    assert!(err(&m).contains("LRN size 4 must be odd"));
}

#[test]
fn batch_norm_after_a_conv_is_folded_into_it() {
    let mut m = model();
    let g = m.graph.as_mut().unwrap();
    // conv -> bn -> relu, with per-channel scale 2 / 0.5, mean 1 / 0, var 3 / 1, beta 0.25 / 0.
    g.node[0].output = vec!["c0".into()];
    g.node.insert(
        1,
        node(
            "bn",
            "BatchNormalization",
            &["c0", "s", "be", "mu", "var"],
            &["c"],
            vec![],
        ),
    );
    g.initializer.extend([
        tensor("s", &[2], vec![2.0, 0.5]),
        tensor("be", &[2], vec![0.25, 0.0]),
        tensor("mu", &[2], vec![1.0, 0.0]),
        tensor("var", &[2], vec![3.0, 1.0]),
    ]);
    let graph = graph::parse(&m.encode_to_vec()).unwrap();
    assert_eq!(graph.folded_batch_norms, vec!["bn".to_string()]);
    assert!(graph.nodes.iter().all(|n| n.op != "BatchNormalization"));
    let conv = &graph.nodes[0];
    assert_eq!(conv.outputs, vec!["c".to_string()]);
    let get = |name: &str| match &graph.constants[name] {
        graph::Constant::F32 { data, .. } => data.clone(),
        c => panic!("{c:?}"),
    };
    let (w, b) = (get(&conv.inputs[1]), get(&conv.inputs[2]));
    let eps = 1e-5f32;
    let s0 = 2.0 / (3.0 + eps).sqrt();
    let s1 = 0.5 / (1.0 + eps).sqrt();
    assert!((w[0] - 0.1 * s0).abs() < 1e-7 && (w[17] - 0.1 * s1).abs() < 1e-7);
    assert!((b[0] - ((0.0 - 1.0) * s0 + 0.25)).abs() < 1e-6 && (b[1] - 0.0).abs() < 1e-7);
    let a = ops::analyse(&graph).unwrap();
    assert!(a.unsupported.is_empty());
    let r = check::report(&graph, &a, None);
    assert!(
        r.text.contains("1 BatchNormalization nodes folded"),
        "{}",
        r.text
    );
}

#[test]
fn a_cycle_is_found() {
    let mut m = model();
    // relu now also reads the output of fc, which depends on relu.
    nodes(&mut m)[1].input.push("m".into());
    let e = err(&m);
    assert!(
        e.contains("cycle through nodes") && e.contains("relu") && e.contains("fc"),
        "{e}"
    );
}

#[test]
fn symbolic_and_non_float_inputs() {
    let mut m = model();
    let g = m.graph.as_mut().unwrap();
    if let Some(type_proto::Value::TensorType(t)) =
        g.input[0].r#type.as_mut().unwrap().value.as_mut()
    {
        t.shape.as_mut().unwrap().dim[0].value = Some(Dim::DimParam("batch".into()));
    }
    assert!(err(&m).contains("dimension 0 is symbolic"));
    let mut m = model();
    if let Some(type_proto::Value::TensorType(t)) = m.graph.as_mut().unwrap().input[0]
        .r#type
        .as_mut()
        .unwrap()
        .value
        .as_mut()
    {
        t.elem_type = 11;
    }
    assert!(err(&m).contains("element type Double, only FLOAT"));
}

#[test]
fn two_inputs_duplicate_outputs_and_bad_weights() {
    let mut m = model();
    m.graph
        .as_mut()
        .unwrap()
        .input
        .push(value("x2", &[1, 1, 8, 8]));
    assert!(err(&m).contains("2 inputs (x, x2)"));

    let mut m = model();
    nodes(&mut m)[1].output[0] = "c".into();
    assert!(err(&m).contains("node relu: output c is already produced elsewhere"));

    let mut m = model();
    m.graph.as_mut().unwrap().initializer[0].float_data.pop();
    assert!(err(&m).contains("initializer w: 17 float values"));

    let mut m = model();
    m.graph.as_mut().unwrap().initializer[2].dims = vec![31, 3];
    let e = err(&m);
    assert!(e.contains("initializer fw") || e.contains("node fc"), "{e}");
}

#[test]
fn shape_errors_name_the_node() {
    let mut m = model();
    m.graph.as_mut().unwrap().initializer[2] = tensor("fw", &[30, 3], vec![0.0; 90]);
    let e = err(&m);
    assert!(
        e.contains("node fc") && e.contains("inner dimensions differ"),
        "{e}"
    );

    let mut m = model();
    nodes(&mut m)[0].attribute.push(AttributeProto {
        name: "group".into(),
        r#type: AttributeType::Int as i32,
        i: 2,
        ..Default::default()
    });
    assert!(err(&m).contains("node conv: group 2 is not supported"));
}

// Hostile ONNX files (docs/reliability.md): each refused with the error of its guard.

#[test]
fn hostile_shape_products_that_would_overflow() {
    // An initializer of [2^62, 4] values and no data: the product wraps to 0 unchecked.
    let mut m = model();
    m.graph.as_mut().unwrap().initializer[0] = tensor("w", &[1 << 62, 4], vec![]);
    let e = err(&m);
    assert!(
        e.contains("initializer w") && e.contains("too many values"),
        "{e}"
    );
    // 0x40000001 floats in 4 bytes of raw_data (0x40000001 x 4 wraps to 4 in 32 bits).
    let mut m = model();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    *w = tensor("w", &[0x4000_0001], vec![]);
    w.raw_data = vec![0; 4];
    let e = err(&m);
    assert!(e.contains("raw_data holds 4 bytes"), "{e}");
    // A graph input of 2^80 values.
    let mut m = model();
    m.graph.as_mut().unwrap().input[0] = value("x", &[1, 1, 1 << 40, 1 << 40]);
    let e = err(&m);
    assert!(e.contains("has more than 2147483648 values"), "{e}");
}

#[test]
fn hostile_windows_strides_and_pads() {
    let set = |name: &str, v: &[i64]| {
        let mut m = model();
        let conv = &mut nodes(&mut m)[0];
        conv.attribute
            .retain(|a| a.name != "auto_pad" && a.name != name);
        conv.attribute.push(ints(name, v));
        err(&m)
    };
    let e = set("strides", &[0, 1]);
    assert!(
        e.contains("strides [0, 1] must be two positive values"),
        "{e}"
    );
    let e = set("pads", &[i64::MAX, 0, i64::MAX, 0]);
    assert!(e.contains("node conv"), "{e}");
    let e = set("kernel_shape", &[i64::MAX, 3]);
    assert!(e.contains("node conv"), "{e}");
    let e = set("dilations", &[0, 0]);
    assert!(
        e.contains("dilations [0, 0] must be two positive values"),
        "{e}"
    );
}

#[test]
fn hostile_protobuf_nested_a_thousand_deep() {
    // A graph attribute holding a graph holding ... 1,000 levels: prost's recursion limit
    // refuses it while decoding, before anything is built.
    let mut g = GraphProto::default();
    for _ in 0..1000 {
        g = GraphProto {
            node: vec![NodeProto {
                attribute: vec![AttributeProto {
                    name: "body".into(),
                    r#type: AttributeType::Graph as i32,
                    g: Some(g),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
    }
    let m = ModelProto {
        graph: Some(g),
        ..model()
    };
    let e = format!("{:#}", graph::parse(&m.encode_to_vec()).unwrap_err());
    assert!(
        e.contains("not an ONNX model") && e.contains("recursion"),
        "{e}"
    );
}

/// Reads, analyses and reports a chain of `n` Relus after the sample model's last node;
/// returns the time taken.
fn check_a_chain_of_relus(n: usize) -> std::time::Duration {
    let mut m = model();
    let g = m.graph.as_mut().unwrap();
    g.node[5].output[0] = "r0".into();
    for i in 0..n {
        let out = if i + 1 == n {
            "y".to_string()
        } else {
            format!("r{}", i + 1)
        };
        g.node.push(NodeProto {
            name: format!("relu{i}"),
            op_type: "Relu".into(),
            input: vec![format!("r{i}")],
            output: vec![out],
            ..Default::default()
        });
    }
    let bytes = m.encode_to_vec();
    let t = std::time::Instant::now();
    let g = graph::parse(&bytes).unwrap();
    let a = ops::analyse(&g).unwrap();
    let r = check::report(&g, &a, None);
    let took = t.elapsed();
    assert!(
        r.text.contains("Relu"),
        "{}",
        &r.text[..200.min(r.text.len())]
    );
    took
}

#[test]
fn hostile_a_graph_of_a_million_nodes() {
    // 1,000,000 chained Relus: read and checked without a panic, in linear time (the device
    // format then refuses what it cannot hold). Linear, not a wall-clock bound (machines and
    // their load differ): ten times the nodes may take at most 30 times as long, where
    // anything quadratic takes 100 times.
    let small = check_a_chain_of_relus(100_000);
    let big = check_a_chain_of_relus(1_000_000);
    assert!(
        big.as_secs_f64() < 30.0 * small.as_secs_f64() + 1.0,
        "10^5 nodes: {small:?}, 10^6 nodes: {big:?}"
    );
}

#[test]
fn hostile_missing_parts_and_external_data() {
    let m = ModelProto {
        graph: None,
        ..model()
    };
    assert!(err(&m).contains("model.graph is missing"));
    // A Constant whose `value` attribute carries no tensor.
    let mut m = model();
    nodes(&mut m).insert(
        0,
        node(
            "k",
            "Constant",
            &[],
            &["kk"],
            vec![AttributeProto {
                name: "value".into(),
                r#type: AttributeType::Tensor as i32,
                ..Default::default()
            }],
        ),
    );
    assert!(err(&m).contains("node k: Constant without a tensor 'value'"));
    // Weights "in" a file outside the model's folder: refused without reading anything.
    let mut m = model();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.float_data.clear();
    w.data_location = protos::onnx::tensor_proto::DataLocation::External as i32;
    w.external_data = vec![protos::onnx::StringStringEntryProto {
        key: "location".into(),
        value: "../../../../etc/passwd".into(),
    }];
    let e = err(&m);
    assert!(
        e.contains("initializer w: its data is in an external file (../../../../etc/passwd)"),
        "{e}"
    );
}
