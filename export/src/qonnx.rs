//! The quantized model as an int8 ONNX file with standard ops only, so an independent runtime
//! (tract, onnxruntime) can run the same integer model: `QuantizeLinear` on the float input,
//! `QLinearConv` for convolutions and for dense layers (as 1x1 convolutions over a
//! `[1, K, 1, 1]` reshape, which carries the int32 bias that `QLinearMatMul` cannot), int8
//! `MaxPool`, and an int8 output. A ReLU needs no node: its output zero point is -128, so the
//! saturation of `QLinearConv` is the ReLU. Sigmoid, tanh and average pooling have no standard
//! int8 op and are refused.

use anyhow::{Result, bail};
use protos::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension,
    tensor_shape_proto::dimension::Value as Dim, type_proto,
};

use crate::graph::{Constant, Graph};
use crate::ops::{pair, resolve_pads};
use crate::quantize::{ActQuant, INPUT, Quantized};
use device_infer::kernels::Pool2x2;
use device_infer::model::Kind;

pub(crate) fn value(name: &str, elem: DataType, dims: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Dim::DimValue(d as i64)),
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

fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        float_data: data.to_vec(),
        ..Default::default()
    }
}

fn i8_tensor(name: &str, dims: &[usize], data: &[i8]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int8 as i32,
        raw_data: data.iter().map(|&v| v as u8).collect(),
        ..Default::default()
    }
}

fn i32_tensor(name: &str, dims: &[usize], data: &[i32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int32 as i32,
        int32_data: data.to_vec(),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![data.len() as i64],
        data_type: DataType::Int64 as i32,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

pub(crate) fn node(
    op: &str,
    name: &str,
    inputs: &[String],
    output: &str,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.to_vec(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// Builds the int8 ONNX model of `q` (quantized from `g`).
pub fn int8_onnx(g: &Graph, q: &Quantized) -> Result<ModelProto> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let scalar = |inits: &mut Vec<TensorProto>, name: String, a: ActQuant| -> (String, String) {
        inits.push(f32_tensor(&format!("{name}_scale"), &[], &[a.scale]));
        inits.push(i8_tensor(&format!("{name}_zp"), &[], &[a.zero_point]));
        (format!("{name}_scale"), format!("{name}_zp"))
    };
    let (xs, xz) = scalar(&mut inits, "input".into(), INPUT);
    nodes.push(node(
        "QuantizeLinear",
        "quantize_input",
        &[g.input.clone(), xs, xz],
        "q0",
        vec![],
    ));
    let mut cur = "q0".to_string();
    let mut shape: Vec<usize> = g.input_shape.clone();
    for (i, (st, layer)) in q.steps.iter().zip(&q.spec.layers).enumerate() {
        if st.lut {
            bail!("layer {i}: sigmoid/tanh tables have no standard int8 ONNX op");
        }
        let name = format!("l{i}");
        match st.kind {
            Kind::Conv2d(_) | Kind::Dense if !matches!(pool_of(st.kind), Some(Pool2x2::Avg)) => {
                let (wd, w) = match g.constants.get(&st.node.inputs[1]) {
                    Some(Constant::F32 { dims, data }) => (dims.clone(), data.clone()),
                    _ => bail!("layer {i}: weight is not a float constant"),
                };
                // Weights in ONNX order (OIHW; dense as [N, K, 1, 1] in the graph's flatten order).
                let (w_dims, rows): (Vec<usize>, Vec<Vec<f32>>) = if st.node.op == "Conv" {
                    let m = wd[0];
                    let per = w.len() / m;
                    (
                        wd.clone(),
                        (0..m).map(|o| w[o * per..(o + 1) * per].to_vec()).collect(),
                    )
                } else {
                    let trans = st.node.op == "Gemm" && st.node.int("transB", 0)? != 0;
                    let (k, n) = if trans {
                        (wd[1], wd[0])
                    } else {
                        (wd[0], wd[1])
                    };
                    let at =
                        |kk: usize, o: usize| if trans { w[o * k + kk] } else { w[kk * n + o] };
                    (
                        vec![n, k, 1, 1],
                        (0..n)
                            .map(|o| (0..k).map(|kk| at(kk, o)).collect())
                            .collect(),
                    )
                };
                let wq: Vec<i8> = rows
                    .iter()
                    .zip(&st.weight_scales)
                    .flat_map(|(r, s)| {
                        r.iter()
                            .map(move |v| (v / s).round().clamp(-127.0, 127.0) as i8)
                    })
                    .collect();
                let oc = w_dims[0];
                inits.push(i8_tensor(&format!("{name}_w"), &w_dims, &wq));
                inits.push(f32_tensor(
                    &format!("{name}_w_scale"),
                    &[oc],
                    &st.weight_scales,
                ));
                inits.push(i8_tensor(&format!("{name}_w_zp"), &[oc], &vec![0; oc]));
                inits.push(i32_tensor(&format!("{name}_b"), &[oc], &st.bias));
                let (is, iz) = scalar(&mut inits, format!("{name}_in"), st.input);
                let (ys, yz) = scalar(&mut inits, format!("{name}_out"), st.target);
                let mut attrs = vec![];
                if st.node.op == "Conv" {
                    let k = [wd[2], wd[3]];
                    let s = pair(&st.node, "strides", [1, 1])?;
                    let p = resolve_pads(&st.node, [shape[2], shape[3]], k, s)?;
                    attrs = vec![
                        ints("kernel_shape", &k),
                        ints("strides", &s),
                        ints("pads", &p),
                    ];
                } else if shape.len() != 4 || shape[2] != 1 || shape[3] != 1 {
                    let k: usize = shape[1..].iter().product();
                    inits.push(i64_tensor(&format!("{name}_shape"), &[1, k as i64, 1, 1]));
                    nodes.push(node(
                        "Reshape",
                        &format!("{name}_flatten"),
                        &[cur.clone(), format!("{name}_shape")],
                        &format!("{name}_flat"),
                        vec![],
                    ));
                    cur = format!("{name}_flat");
                    attrs = vec![ints("kernel_shape", &[1, 1])];
                } else {
                    attrs.push(ints("kernel_shape", &[1, 1]));
                }
                let conv_out = format!("{name}_conv");
                let inputs = [
                    cur.clone(),
                    is,
                    iz,
                    format!("{name}_w"),
                    format!("{name}_w_scale"),
                    format!("{name}_w_zp"),
                    ys,
                    yz,
                    format!("{name}_b"),
                ];
                nodes.push(node("QLinearConv", &name, &inputs, &conv_out, attrs));
                cur = conv_out;
                if let Some(Pool2x2::Max) = pool_of(st.kind) {
                    let out = format!("{name}_pool");
                    nodes.push(node(
                        "MaxPool",
                        &format!("{name}_maxpool"),
                        &[cur.clone()],
                        &out,
                        vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
                    ));
                    cur = out;
                }
            }
            Kind::MaxPool => {
                let out = format!("{name}_pool");
                nodes.push(node(
                    "MaxPool",
                    &name,
                    &[cur.clone()],
                    &out,
                    vec![
                        ints("kernel_shape", &layer.kernel),
                        ints("strides", &layer.stride),
                        ints(
                            "pads",
                            &[
                                layer.padding[0],
                                layer.padding[1],
                                layer.padding[0],
                                layer.padding[1],
                            ],
                        ),
                    ],
                ));
                cur = out;
            }
            _ => bail!("layer {i}: {:?} has no standard int8 ONNX op", st.kind),
        }
        let o = layer.output;
        shape = if st.kind == Kind::Dense {
            vec![1, o.c, 1, 1]
        } else {
            vec![1, o.c, o.h, o.w]
        };
    }
    let classes: usize = shape.iter().product();
    inits.push(i64_tensor("out_shape", &[1, classes as i64]));
    nodes.push(node(
        "Reshape",
        "logits",
        &[cur, "out_shape".into()],
        "logits_int8",
        vec![],
    ));
    Ok(ModelProto {
        ir_version: 8,
        producer_name: "lenet-edge export".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "int8".into(),
            node: nodes,
            initializer: inits,
            input: vec![value(&g.input, DataType::Float, &g.input_shape)],
            output: vec![value("logits_int8", DataType::Int8, &[1, classes])],
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn pool_of(kind: Kind) -> Option<Pool2x2> {
    match kind {
        Kind::Conv2d(p) => p,
        _ => None,
    }
}
