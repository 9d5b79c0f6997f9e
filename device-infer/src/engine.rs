//! Two engines behind one call, for the edge box (`std`; tract behind the `tract` feature):
//! raw `u8` pixels in (HWC, the training preprocessing is `p / 255`), the class and the scores
//! out. An application switches engines by the line that builds one:
//!
//! ```no_run
//! # #[cfg(feature = "tract")] fn main() -> Result<(), device_infer::engine::EngineError> {
//! use device_infer::engine::{Classify, Int8, ModelFile, Tract};
//! let file = ModelFile::read("lenet.lnq8".as_ref())?;
//! let mut engine: Box<dyn Classify> = if std::env::args().any(|a| a == "--tract") {
//!     Box::new(Tract::load("lenet.onnx".as_ref())?)      // float ONNX, or int8 ONNX
//! } else {
//!     Box::new(Int8::new(&file)?)                         // the device model
//! };
//! let pixels = vec![0u8; engine.input_len()];
//! let out = engine.classify(&pixels)?;
//! println!("class {} scores {:?}", out.class, out.scores);
//! # Ok(()) }
//! # #[cfg(not(feature = "tract"))] fn main() {}
//! ```
//!
//! [`Int8`] runs this crate's kernels on a device model ([`Model`]), bit-exact with the
//! microcontroller; [`Tract`] runs an ONNX file through tract: a float model gives float
//! logits, an int8 ONNX written by `export quantize --onnx-out` gives its int8 outputs.

use std::fmt;
use std::path::Path;
#[cfg(feature = "tract")]
use std::string::String;
use std::vec::Vec;

use crate::Model;
use crate::model::{Error, argmax};
use crate::writer::AlignedBytes;

/// What a classification returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The class with the highest score (the first of equal ones).
    pub class: usize,
    /// One score per class.
    pub scores: Scores,
}

/// The scores of a classification, as the engine computed them.
#[derive(Debug, Clone, PartialEq)]
pub enum Scores {
    /// Float logits (a float ONNX model).
    Float(Vec<f32>),
    /// Int8 outputs and their zero point: the logit is `scale * (code - zero_point)` with the
    /// model's output scale, so `code - zero_point` orders the classes like the logits.
    Int8 {
        /// The output codes.
        codes: Vec<i8>,
        /// Their zero point.
        zero_point: i8,
    },
}

impl Scores {
    /// Scores as numbers: the logits, or `code - zero_point` for int8.
    pub fn values(&self) -> Vec<f32> {
        match self {
            Scores::Float(v) => v.clone(),
            Scores::Int8 { codes, zero_point } => codes
                .iter()
                .map(|&c| (c as i32 - *zero_point as i32) as f32)
                .collect(),
        }
    }
}

/// Why an engine could not load a model or classify an image.
#[derive(Debug)]
pub enum EngineError {
    /// The file could not be read.
    Io(std::path::PathBuf, std::io::Error),
    /// The device model is invalid, or the input has the wrong length for it.
    Model(Error),
    /// tract could not load, prepare or run the ONNX file.
    #[cfg(feature = "tract")]
    Tract(String),
    /// The pixels given are not one image of the model's input.
    InputLength {
        /// Pixels expected (H x W x C).
        expected: usize,
        /// Pixels given.
        got: usize,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Io(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            EngineError::Model(e) => write!(f, "{e}"),
            #[cfg(feature = "tract")]
            EngineError::Tract(e) => write!(f, "tract: {e}"),
            EngineError::InputLength { expected, got } => write!(
                f,
                "the model takes {expected} pixels (H x W x C), got {got}"
            ),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<Error> for EngineError {
    fn from(e: Error) -> Self {
        EngineError::Model(e)
    }
}

/// A classifier: one image of `u8` pixels in, the class and scores out.
pub trait Classify {
    /// Input as `[channels, height, width]`.
    fn input_shape(&self) -> [usize; 3];

    /// Pixels per image (`C * H * W`).
    fn input_len(&self) -> usize {
        self.input_shape().iter().product()
    }

    /// Classifies one image: `pixels` in HWC order (for one channel, row-major), `p / 255` being
    /// what the network was trained on.
    fn classify(&mut self, pixels: &[u8]) -> Result<Classification, EngineError>;
}

/// A device model file read into 4-byte aligned memory ([`AlignedBytes`]), which [`Int8`]
/// borrows.
pub struct ModelFile(AlignedBytes);

impl ModelFile {
    /// Reads a device model (`.lnq8`) file; it is validated by [`Int8::new`].
    pub fn read(path: &Path) -> Result<Self, EngineError> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::Io(path.to_path_buf(), e))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Copies `bytes` into aligned memory.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        ModelFile(AlignedBytes::new(bytes))
    }

    /// The file's bytes (4-byte aligned).
    pub fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The int8 engine: this crate's fixed-point kernels on a device model, with its own arena.
pub struct Int8<'a> {
    model: Model<'a>,
    arena: Vec<i8>,
    /// [`Model::quantize_pixel`] of every u8 value: the input quantized by table lookups (a
    /// 64-bit multiply per pixel took a twentieth of LeNet5-like's batch-1 time).
    pixels: [i8; 256],
    /// The host kernels' scratch for this model only (its packed filters found by address).
    #[cfg(target_arch = "x86_64")]
    scratch: crate::kernels::x86::ModelScratch,
}

impl<'a> Int8<'a> {
    /// Validates the model and allocates its arena.
    pub fn new(file: &'a ModelFile) -> Result<Self, EngineError> {
        let model = Model::from_bytes(file.bytes())?;
        Ok(Int8 {
            arena: std::vec![0; model.arena_len()],
            pixels: core::array::from_fn(|p| model.quantize_pixel(p as u8)),
            #[cfg(target_arch = "x86_64")]
            scratch: Default::default(),
            model,
        })
    }

    /// The validated model.
    pub fn model(&self) -> &Model<'a> {
        &self.model
    }
}

impl Classify for Int8<'_> {
    fn input_shape(&self) -> [usize; 3] {
        let d = self.model.input_dims();
        [d.c, d.h, d.w]
    }

    fn classify(&mut self, pixels: &[u8]) -> Result<Classification, EngineError> {
        let expected = self.input_len();
        if pixels.len() != expected {
            return Err(EngineError::InputLength {
                expected,
                got: pixels.len(),
            });
        }
        let slot = self.model.input_slot(&mut self.arena)?;
        // `quantize_input`, by table (same length: checked above).
        #[cfg(target_arch = "x86_64")]
        crate::kernels::x86::lookup_u8(&self.pixels, pixels, slot);
        #[cfg(not(target_arch = "x86_64"))]
        for (q, &p) in slot.iter_mut().zip(pixels) {
            *q = self.pixels[p as usize];
        }
        let (model, arena) = (&self.model, &mut self.arena);
        // SAFETY of the address-keyed scratch: `model` borrows its file for as long as `self`
        // lives, so the weights at an address never change while `scratch` sees them.
        #[cfg(target_arch = "x86_64")]
        let out = self.scratch.with(|| model.run_in_place(arena, |_, _| {}))?;
        #[cfg(not(target_arch = "x86_64"))]
        let out = model.run_in_place(arena, |_, _| {})?;
        Ok(Classification {
            class: argmax(out),
            scores: Scores::Int8 {
                codes: out.to_vec(),
                zero_point: self.model.output_zero_point(),
            },
        })
    }
}

#[cfg(feature = "tract")]
pub use self::tract_engine::Tract;

#[cfg(feature = "tract")]
mod tract_engine {
    use std::path::Path;
    use std::sync::Arc;
    use std::vec;
    use std::vec::Vec;

    use tract_onnx::prelude::*;
    use tract_onnx::tract_hir::infer::Factoid as _;

    use super::{Classification, Classify, EngineError, Scores};

    type Plan = Arc<TypedRunnableModel>;

    /// The tract engine: an ONNX file (float, or int8 from `export quantize --onnx-out`)
    /// optimised by tract for a batch of one.
    pub struct Tract {
        plan: Plan,
        shape: [usize; 3],
        /// An int8 ONNX's output zero point (its graph's, see [`output_zero_point`]).
        output_zero_point: Option<i8>,
        input: Vec<f32>,
    }

    fn err(what: &str, path: &Path, e: impl std::fmt::Debug) -> EngineError {
        EngineError::Tract(std::format!("{what} {}: {e:?}", path.display()))
    }

    impl Tract {
        /// Loads and optimises `path`. Its input must be `[1 or N, C, H, W]` float32 with a
        /// static `C, H, W`.
        pub fn load(path: &Path) -> Result<Self, EngineError> {
            let onnx = tract_onnx::onnx();
            let proto = onnx
                .proto_model_for_path(path)
                .map_err(|e| err("cannot load", path, e))?;
            // tract would read weights "in" external files at paths the model names (anywhere
            // on the disk): a self-contained model only.
            if let Some(name) = external_tensor(&proto) {
                return Err(EngineError::Tract(std::format!(
                    "{}: tensor {name:?} keeps its data in an external file; only self-contained ONNX models are loaded",
                    path.display()
                )));
            }
            let output_zero_point = output_zero_point(&proto);
            let model = onnx
                .model_for_proto_model(&proto)
                .map_err(|e| err("cannot load", path, e))?;
            let fact = model
                .input_fact(0)
                .map_err(|e| err("no input in", path, e))?
                .clone();
            let dims: Vec<Option<usize>> = fact
                .shape
                .dims()
                .map(|d| {
                    d.concretize()
                        .and_then(|t| t.as_i64())
                        .and_then(|v| usize::try_from(v).ok())
                })
                .collect();
            let shape = match dims.as_slice() {
                [_, Some(c), Some(h), Some(w)] => [*c, *h, *w],
                _ => {
                    return Err(EngineError::Tract(std::format!(
                        "{}: the input is {:?}, not [N, C, H, W] with static C, H, W",
                        path.display(),
                        fact.shape
                    )));
                }
            };
            let plan = model
                .with_input_fact(0, f32::fact([1, shape[0], shape[1], shape[2]]).into())
                .and_then(|m| m.into_optimized())
                .and_then(|m| m.into_runnable())
                .map_err(|e| err("cannot prepare", path, e))?;
            Ok(Tract {
                plan,
                shape,
                output_zero_point,
                input: std::vec![0.0; shape.iter().product()],
            })
        }
    }

    /// The first tensor of the graph (an initializer or a node attribute's) whose data lives
    /// in an external file.
    fn external_tensor(proto: &tract_onnx::pb::ModelProto) -> Option<std::string::String> {
        let g = proto.graph.as_ref()?;
        let external = |t: &tract_onnx::pb::TensorProto| {
            t.data_location == Some(1) || !t.external_data.is_empty()
        };
        g.initializer
            .iter()
            .chain(
                g.node
                    .iter()
                    .flat_map(|n| n.attribute.iter().filter_map(|a| a.t.as_ref())),
            )
            .find(|t| external(t))
            .map(|t| t.name.clone())
    }

    /// The zero point of an int8 ONNX's output: the `y_zero_point` of the node that quantized
    /// it, found by walking back from the graph's output through ops that keep codes as they are
    /// (Reshape, Flatten, Squeeze, Unsqueeze, Identity, MaxPool). `None` for a float output or
    /// one this walk cannot follow.
    fn output_zero_point(proto: &tract_onnx::pb::ModelProto) -> Option<i8> {
        let g = proto.graph.as_ref()?;
        let mut name = g.output.first()?.name.clone();
        for _ in 0..g.node.len() {
            let node = g.node.iter().find(|n| n.output.contains(&name))?;
            let zp_input = match node.op_type.as_str() {
                "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" | "MaxPool" => {
                    name = node.input.first()?.clone();
                    continue;
                }
                "QLinearConv" | "QLinearMatMul" => 7,
                "QuantizeLinear" => 2,
                _ => return None,
            };
            let zp = node.input.get(zp_input)?;
            let t = g.initializer.iter().find(|t| t.name == *zp)?;
            return t
                .raw_data
                .first()
                .map(|&b| b as i8)
                .or_else(|| t.int32_data.first().map(|&v| v as i8));
        }
        None
    }

    impl Classify for Tract {
        fn input_shape(&self) -> [usize; 3] {
            self.shape
        }

        fn classify(&mut self, pixels: &[u8]) -> Result<Classification, EngineError> {
            let [c, h, w] = self.shape;
            if pixels.len() != c * h * w {
                return Err(EngineError::InputLength {
                    expected: c * h * w,
                    got: pixels.len(),
                });
            }
            // HWC u8 -> CHW f32 / 255, written as loops the compiler vectorises (an indexed
            // loop cost 4% of LeNet's whole run through tract).
            if c == 1 {
                for (d, &p) in self.input.iter_mut().zip(pixels) {
                    *d = p as f32 / 255.0;
                }
            } else {
                for (ch, plane) in self.input.chunks_exact_mut(h * w).enumerate() {
                    for (d, px) in plane.iter_mut().zip(pixels.chunks_exact(c)) {
                        *d = px[ch] as f32 / 255.0;
                    }
                }
            }
            let x = Tensor::from_shape(&[1, c, h, w], &self.input)
                .map_err(|e| EngineError::Tract(std::format!("input tensor: {e:?}")))?;
            let out = self
                .plan
                .run(tvec!(x.into()))
                .map_err(|e| EngineError::Tract(std::format!("run failed: {e:?}")))?;
            let t = &out[0];
            let scores = if let Ok(v) = t.to_plain_array_view::<f32>() {
                Scores::Float(v.iter().copied().collect())
            } else if let Ok(v) = t.to_plain_array_view::<i8>() {
                // The zero point: the tensor's own if tract kept it quantized, else the
                // graph's (tract hands a plain i8 out of a Reshape after QLinearConv).
                let zero_point = match t.datum_type() {
                    DatumType::QI8(q) => q.zp_scale().0 as i8,
                    _ => self.output_zero_point.unwrap_or(0),
                };
                Scores::Int8 {
                    codes: v.iter().copied().collect(),
                    zero_point,
                }
            } else {
                return Err(EngineError::Tract(std::format!(
                    "output of type {:?}, expected f32 or i8",
                    t.datum_type()
                )));
            };
            let class = match &scores {
                Scores::Float(v) => {
                    v.iter()
                        .enumerate()
                        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
                            if x > bv { (i, x) } else { (bi, bv) }
                        })
                        .0
                }
                Scores::Int8 { codes, .. } => crate::argmax(codes),
            };
            Ok(Classification { class, scores })
        }
    }
}
