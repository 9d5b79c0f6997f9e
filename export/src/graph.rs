//! Reading an ONNX file into a checked, topologically ordered graph.
//!
//! Everything that can be wrong with a file is found here, once, with an error naming the node
//! or field: undecodable bytes, a missing graph, an unsupported opset, more than one input, a
//! symbolic or non-float input, a missing initializer, an edge from nowhere, two producers of
//! one value, a cycle, a non-float32 weight. Later stages (shape inference, quantization) work
//! on a [`Graph`] and never see the protobuf.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use protos::Message;
use protos::onnx::{
    AttributeProto, ModelProto, TensorProto, attribute_proto::AttributeType, tensor_proto::DataType,
};

/// Opsets whose semantics for the supported ops this tool implements.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=22;

/// A constant tensor: a weight, a bias, or a shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    /// float32 data.
    F32 {
        /// Dimensions.
        dims: Vec<usize>,
        /// Row-major values.
        data: Vec<f32>,
    },
    /// int64 data (shapes, axes).
    I64 {
        /// Dimensions.
        dims: Vec<usize>,
        /// Row-major values.
        data: Vec<i64>,
    },
}

impl Constant {
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        match self {
            Constant::F32 { dims, .. } | Constant::I64 { dims, .. } => dims,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// Whether the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One node of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's name (or `#index` when the file gives none).
    pub name: String,
    /// ONNX op type, e.g. `Conv`.
    pub op: String,
    /// Input value names (`""` for an omitted optional input).
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: BTreeMap<String, AttributeProto>,
}

impl Node {
    /// An integer-list attribute, or `default`.
    pub fn ints(&self, name: &str, default: &[i64]) -> Result<Vec<i64>> {
        match self.attrs.get(name) {
            None => Ok(default.to_vec()),
            Some(a) if a.r#type() == AttributeType::Ints || !a.ints.is_empty() => {
                Ok(a.ints.clone())
            }
            Some(a) => bail!(
                "node {}: attribute {name} has type {:?}, expected INTS",
                self.name,
                a.r#type()
            ),
        }
    }

    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(a) if matches!(a.r#type(), AttributeType::Int | AttributeType::Undefined) => {
                Ok(a.i)
            }
            Some(a) => bail!(
                "node {}: attribute {name} has type {:?}, expected INT",
                self.name,
                a.r#type()
            ),
        }
    }

    /// A float attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(a) if matches!(a.r#type(), AttributeType::Float | AttributeType::Undefined) => {
                Ok(a.f)
            }
            Some(a) => bail!(
                "node {}: attribute {name} has type {:?}, expected FLOAT",
                self.name,
                a.r#type()
            ),
        }
    }

    /// A string attribute, or `default`.
    pub fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.attrs.get(name) {
            None => Ok(default.to_string()),
            Some(a) => String::from_utf8(a.s.clone())
                .with_context(|| format!("node {}: attribute {name} is not UTF-8", self.name)),
        }
    }
}

/// A checked graph with one static float input and one output, nodes in execution order.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Default-domain opset.
    pub opset: i64,
    /// Producer recorded in the file.
    pub producer: String,
    /// The input's name.
    pub input: String,
    /// The input's static shape.
    pub input_shape: Vec<usize>,
    /// The output's name.
    pub output: String,
    /// Nodes in a topological order (Constant nodes folded into `constants`).
    pub nodes: Vec<Node>,
    /// Initializers and folded Constant nodes.
    pub constants: HashMap<String, Constant>,
    /// `BatchNormalization` nodes folded into the convolution before them (see
    /// [`fold_batch_norms`]).
    pub folded_batch_norms: Vec<String>,
}

fn dtype_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| format!("{d:?}"))
        .unwrap_or_else(|_| format!("unknown ({t})"))
}

/// The most values one tensor (a constant or the graph's input) may have: 2^31, far past any
/// model a microcontroller or this tool handles, and small enough that byte counts of every
/// element type fit in any `usize` arithmetic that follows.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// The number of values of `dims`, if it is at most [`MAX_ELEMENTS`] (checked products: no
/// wrap-around).
pub fn elements(dims: &[usize]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
}

/// Decodes a TensorProto holding float32 or int64 data.
pub fn constant_of(t: &TensorProto, what: &str) -> Result<Constant> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).with_context(|| format!("{what}: negative dimension {d}")))
        .collect::<Result<_>>()?;
    // Weights in another file are not read: a path in the model could point anywhere.
    if t.data_location == protos::onnx::tensor_proto::DataLocation::External as i32
        || !t.external_data.is_empty()
    {
        bail!(
            "{what}: its data is in an external file ({}); only self-contained models are read (save the ONNX without external data)",
            t.external_data
                .iter()
                .find(|e| e.key == "location")
                .map_or("no location given", |e| e.value.as_str())
        );
    }
    // Checked: dims such as [2^62, 4] would wrap to 0 values and pass for an empty tensor.
    let n = elements(&dims).with_context(|| format!("{what}: dims {dims:?}: too many values"))?;
    let raw = |width: usize| -> Result<Option<&[u8]>> {
        if t.raw_data.is_empty() {
            return Ok(None);
        }
        if Some(t.raw_data.len()) != n.checked_mul(width) {
            bail!(
                "{what}: raw_data holds {} bytes, dims {dims:?} need {}",
                t.raw_data.len(),
                n * width
            );
        }
        Ok(Some(&t.raw_data))
    };
    match DataType::try_from(t.data_type) {
        Ok(DataType::Float) => {
            let data: Vec<f32> = match raw(4)? {
                Some(b) => b
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
                None => t.float_data.clone(),
            };
            if data.len() != n {
                bail!(
                    "{what}: {} float values, dims {dims:?} need {n}",
                    data.len()
                );
            }
            Ok(Constant::F32 { dims, data })
        }
        Ok(DataType::Int64) => {
            let data: Vec<i64> = match raw(8)? {
                Some(b) => b
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
                None => t.int64_data.clone(),
            };
            if data.len() != n {
                bail!(
                    "{what}: {} int64 values, dims {dims:?} need {n}",
                    data.len()
                );
            }
            Ok(Constant::I64 { dims, data })
        }
        _ => bail!(
            "{what}: data type {}, only FLOAT (and INT64 shape constants) are supported",
            dtype_name(t.data_type)
        ),
    }
}

/// Reads and checks an ONNX file.
pub fn load(path: &Path) -> Result<Graph> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{}", path.display()))
}

/// Decodes and checks ONNX bytes.
pub fn parse(bytes: &[u8]) -> Result<Graph> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| anyhow::anyhow!("not an ONNX model (protobuf decode failed: {e})"))?;
    from_model(&model)
}

/// Checks a decoded model.
pub fn from_model(model: &ModelProto) -> Result<Graph> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .context("opset_import: no entry for the default ONNX domain")?;
    if !OPSETS.contains(&opset) {
        bail!(
            "opset_import: opset {opset} is not supported (supported: {} to {})",
            OPSETS.start(),
            OPSETS.end()
        );
    }
    let graph = model.graph.as_ref().context("model.graph is missing")?;

    let mut constants = HashMap::new();
    for (i, t) in graph.initializer.iter().enumerate() {
        if t.name.is_empty() {
            bail!("graph.initializer[{i}] has no name");
        }
        constants.insert(
            t.name.clone(),
            constant_of(t, &format!("initializer {}", t.name))?,
        );
    }
    // Older exporters also list initializers as graph inputs.
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|v| !constants.contains_key(&v.name))
        .collect();
    let input = match inputs.as_slice() {
        [one] => *one,
        [] => bail!("graph.input: the graph has no input"),
        many => bail!(
            "graph.input: {} inputs ({}); the device runtime takes exactly one",
            many.len(),
            many.iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let input_shape = static_shape(input, "graph.input")?;
    let output = match graph.output.as_slice() {
        [one] => one,
        [] => bail!("graph.output: the graph has no output"),
        many => bail!(
            "graph.output: {} outputs; exactly one is supported",
            many.len()
        ),
    };
    check_float(output, "graph.output")?;

    // Nodes: names, attributes, Constant folding.
    let mut nodes = Vec::with_capacity(graph.node.len());
    for (i, n) in graph.node.iter().enumerate() {
        let name = if n.name.is_empty() {
            format!("#{i}")
        } else {
            n.name.clone()
        };
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            bail!(
                "node {name}: op {}::{} is outside the default ONNX domain",
                n.domain,
                n.op_type
            );
        }
        if n.op_type.is_empty() {
            bail!("node {name}: op_type is empty");
        }
        let attrs = n
            .attribute
            .iter()
            .map(|a| (a.name.clone(), a.clone()))
            .collect();
        let node = Node {
            name,
            op: n.op_type.clone(),
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            attrs,
        };
        if node.op == "Constant" {
            let t = node
                .attrs
                .get("value")
                .and_then(|a| a.t.as_ref())
                .with_context(|| {
                    format!("node {}: Constant without a tensor 'value'", node.name)
                })?;
            let out = node
                .outputs
                .first()
                .with_context(|| format!("node {}: Constant without output", node.name))?;
            constants.insert(out.clone(), constant_of(t, &format!("node {}", node.name))?);
            continue;
        }
        nodes.push(node);
    }

    // Every value has one producer.
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            if o == &input.name || constants.contains_key(o) || producer.insert(o, i).is_some() {
                bail!("node {}: output {o} is already produced elsewhere", n.name);
            }
        }
    }
    // Edges: every input exists.
    for n in &nodes {
        for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
            if inp != &input.name
                && !constants.contains_key(inp)
                && !producer.contains_key(inp.as_str())
            {
                bail!(
                    "node {}: input {inp} is produced by no node, initializer or graph input (dangling edge)",
                    n.name
                );
            }
        }
    }
    if !producer.contains_key(output.name.as_str()) && output.name != input.name {
        bail!("graph.output: {} is produced by no node", output.name);
    }

    // Kahn's algorithm: execution order, or the nodes on a cycle.
    let mut indegree: Vec<usize> = nodes
        .iter()
        .map(|n| {
            n.inputs
                .iter()
                .filter(|i| producer.contains_key(i.as_str()))
                .count()
        })
        .collect();
    let mut consumers: HashMap<usize, Vec<usize>> = HashMap::new();
    for (j, n) in nodes.iter().enumerate() {
        for i in n.inputs.iter().filter_map(|i| producer.get(i.as_str())) {
            consumers.entry(*i).or_default().push(j);
        }
    }
    let mut ready: Vec<usize> = (0..nodes.len())
        .filter(|&i| indegree[i] == 0)
        .rev()
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &j in consumers.get(&i).into_iter().flatten() {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(j);
            }
        }
    }
    if order.len() != nodes.len() {
        let done: HashSet<usize> = order.iter().copied().collect();
        let stuck: Vec<&str> = (0..nodes.len())
            .filter(|i| !done.contains(i))
            .map(|i| nodes[i].name.as_str())
            .collect();
        bail!("the graph has a cycle through nodes {}", stuck.join(", "));
    }
    let nodes = order.into_iter().map(|i| nodes[i].clone()).collect();

    let mut graph = Graph {
        opset,
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        input: input.name.clone(),
        input_shape,
        output: output.name.clone(),
        nodes,
        constants,
        folded_batch_norms: Vec::new(),
    };
    fold_batch_norms(&mut graph)?;
    Ok(graph)
}

/// Folds each inference-mode `BatchNormalization` that reads a `Conv` output (and is its only
/// reader) into that convolution: with `s = scale / sqrt(var + epsilon)` per output channel,
/// `W' = W * s` and `B' = (B - mean) * s + bias`. The batch norm node disappears and the
/// convolution writes its output. Other batch norms are left for the op check to report.
pub fn fold_batch_norms(g: &mut Graph) -> Result<()> {
    let mut i = 0;
    while i < g.nodes.len() {
        let bn = &g.nodes[i];
        if bn.op != "BatchNormalization" || bn.outputs.len() != 1 || bn.inputs.len() != 5 {
            i += 1;
            continue;
        }
        let src = bn.inputs[0].clone();
        let readers = g.nodes.iter().filter(|n| n.inputs.contains(&src)).count();
        let Some(ci) = g
            .nodes
            .iter()
            .position(|n| n.op == "Conv" && n.outputs.first() == Some(&src))
        else {
            i += 1;
            continue;
        };
        let get = |name: &str| match g.constants.get(name) {
            Some(Constant::F32 { dims, data }) => Some((dims.clone(), data.clone())),
            _ => None,
        };
        let conv = &g.nodes[ci];
        let (Some((wd, mut w)), Some((_, scale)), Some((_, beta)), Some((_, mean)), Some((_, var))) = (
            conv.inputs.get(1).and_then(|n| get(n)),
            get(&bn.inputs[1]),
            get(&bn.inputs[2]),
            get(&bn.inputs[3]),
            get(&bn.inputs[4]),
        ) else {
            i += 1;
            continue;
        };
        let co = wd.first().copied().unwrap_or(0);
        if readers != 1
            || g.output == src
            || [&scale, &beta, &mean, &var].iter().any(|v| v.len() != co)
            || co == 0
        {
            i += 1;
            continue;
        }
        let eps = bn.float("epsilon", 1e-5)?;
        let bias = match conv.inputs.get(2).filter(|n| !n.is_empty()) {
            Some(b) => match get(b) {
                Some((_, b)) if b.len() == co => b,
                _ => bail!(
                    "node {}: bias must be a float32 initializer of {co} values",
                    conv.name
                ),
            },
            None => vec![0.0; co],
        };
        let per = w.len() / co;
        let mut new_bias = vec![0.0f32; co];
        for c in 0..co {
            let s = scale[c] / (var[c] + eps).sqrt();
            if !s.is_finite() {
                bail!(
                    "node {}: batch norm channel {c} has a non-finite scale",
                    bn.name
                );
            }
            for v in &mut w[c * per..(c + 1) * per] {
                *v *= s;
            }
            new_bias[c] = (bias[c] - mean[c]) * s + beta[c];
        }
        let (wname, bname) = (
            format!("{}.folded_weight", conv.name),
            format!("{}.folded_bias", conv.name),
        );
        g.constants
            .insert(wname.clone(), Constant::F32 { dims: wd, data: w });
        g.constants.insert(
            bname.clone(),
            Constant::F32 {
                dims: vec![co],
                data: new_bias,
            },
        );
        let out = bn.outputs[0].clone();
        let bn_name = bn.name.clone();
        let conv = &mut g.nodes[ci];
        conv.inputs.truncate(1);
        conv.inputs.extend([wname, bname]);
        conv.outputs[0] = out;
        g.nodes.remove(i);
        g.folded_batch_norms.push(bn_name);
    }
    Ok(())
}

fn tensor_type<'a>(
    v: &'a protos::onnx::ValueInfoProto,
    what: &str,
) -> Result<&'a protos::onnx::type_proto::Tensor> {
    let t = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(protos::onnx::type_proto::Value::TensorType(t)) => t,
        None => bail!("{what} {}: no tensor type", v.name),
    };
    if t.elem_type != DataType::Float as i32 {
        bail!(
            "{what} {}: element type {}, only FLOAT (float32) is supported",
            v.name,
            dtype_name(t.elem_type)
        );
    }
    Ok(t)
}

fn check_float(v: &protos::onnx::ValueInfoProto, what: &str) -> Result<()> {
    tensor_type(v, what).map(|_| ())
}

fn static_shape(v: &protos::onnx::ValueInfoProto, what: &str) -> Result<Vec<usize>> {
    let t = tensor_type(v, what)?;
    let shape = t
        .shape
        .as_ref()
        .with_context(|| format!("{what} {}: no shape", v.name))?;
    let dims = shape
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| {
            use protos::onnx::tensor_shape_proto::dimension::Value;
            match &d.value {
                Some(Value::DimValue(n)) if *n > 0 => usize::try_from(*n)
                    .with_context(|| format!("{what} {}: dimension {i} is too large", v.name)),
                Some(Value::DimParam(p)) => bail!(
                    "{what} {}: dimension {i} is symbolic ({p:?}); export with static shapes (host-train export-onnx without --dynamic-batch)",
                    v.name
                ),
                _ => bail!("{what} {}: dimension {i} has no static size", v.name),
            }
        })
        .collect::<Result<Vec<usize>>>()?;
    if elements(&dims).is_none() {
        bail!(
            "{what} {}: shape {dims:?} has more than {MAX_ELEMENTS} values",
            v.name
        );
    }
    Ok(dims)
}
