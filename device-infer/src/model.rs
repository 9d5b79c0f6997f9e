//! The device model: parsed and validated once from bytes (see `docs/device-model-format.md`),
//! then run any number of times in a caller-provided arena.

use core::fmt;

use crate::kernels::{
    self, Clamp, ConvParams, Dims, PerChannelQuant, Pool2x2, PoolParams, window_out,
};
use crate::quant::requantize;

/// The 4 magic bytes.
pub const MAGIC: [u8; 4] = *b"LNQ8";
/// The format version this runtime reads.
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 64;

/// Why a model was rejected or a run could not start. Small and `Copy`; `Display` says what
/// to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Not a device model (bad magic or shorter than a header).
    NotAModel,
    /// Written for another format version.
    Version {
        /// The file's version.
        found: u16,
    },
    /// The file length field disagrees with the bytes given.
    Length {
        /// Length recorded in the header.
        header: u32,
        /// Bytes given.
        actual: usize,
    },
    /// CRC mismatch: the file is corrupt.
    Crc {
        /// CRC recorded in the header.
        header: u32,
        /// CRC of the bytes.
        actual: u32,
    },
    /// The bytes are not 4-byte aligned in memory (see `include_model!`).
    Misaligned,
    /// A field of the header is invalid.
    Header(&'static str),
    /// A field of layer `layer` is invalid.
    Layer {
        /// Layer index.
        layer: u16,
        /// What is wrong.
        what: &'static str,
    },
    /// The arena given to `run` is too small.
    ArenaTooSmall {
        /// Bytes needed.
        needed: u32,
    },
    /// The input given to `run` has the wrong length.
    InputLength {
        /// Values expected.
        expected: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NotAModel => f.write_str("not a device model (bad magic or too short)"),
            Error::Version { found } => write!(
                f,
                "device model format version {found}, this runtime reads version {VERSION}: regenerate it with `export quantize`"
            ),
            Error::Length { header, actual } => write!(
                f,
                "truncated or padded model: header says {header} bytes, got {actual}"
            ),
            Error::Crc { header, actual } => write!(
                f,
                "corrupt model: CRC-32 {actual:08x}, header says {header:08x}"
            ),
            Error::Misaligned => f.write_str(
                "model bytes are not 4-byte aligned (embed them with device_infer::include_model!)",
            ),
            Error::Header(what) => write!(f, "invalid model header: {what}"),
            Error::Layer { layer, what } => write!(f, "invalid layer {layer}: {what}"),
            Error::ArenaTooSmall { needed } => {
                write!(f, "arena too small: the model needs {needed} bytes")
            }
            Error::InputLength { expected } => write!(f, "input must hold {expected} values"),
        }
    }
}

impl core::error::Error for Error {}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib's `crc32`.
pub fn crc32(bytes: &[u8]) -> u32 {
    // Four bits at a time: a 64-byte table (a byte-wide one costs 1 KB of flash; the check
    // runs once, at load).
    const TABLE: [u32; 16] = {
        let mut t = [0u32; 16];
        let mut i = 0;
        while i < 16 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 4 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !bytes.iter().fold(!0u32, |c, &b| {
        let c = c ^ b as u32;
        let c = TABLE[(c & 0xF) as usize] ^ (c >> 4);
        TABLE[(c & 0xF) as usize] ^ (c >> 4)
    })
}

/// Little-endian fields of a fixed-size record (the header or a layer entry): one bounds
/// check for the record, none per field.
struct Fields<'b, const N: usize>(&'b [u8; N]);

impl<const N: usize> Fields<'_, N> {
    fn u8(&self, o: usize) -> u8 {
        self.0[o]
    }
    fn u16(&self, o: usize) -> usize {
        u16::from_le_bytes([self.0[o], self.0[o + 1]]) as usize
    }
    fn u32(&self, o: usize) -> u32 {
        u32::from_le_bytes([self.0[o], self.0[o + 1], self.0[o + 2], self.0[o + 3]])
    }
}

/// The `N`-byte record at `at`, if the bytes hold it.
fn record<const N: usize>(b: &[u8], at: usize) -> Option<Fields<'_, N>> {
    b.get(at..at.checked_add(N)?)?.try_into().ok().map(Fields)
}

/// [`window_out`] in one place in flash (validation calls it six times).
#[inline(never)]
fn out_size(input: usize, k: usize, stride: usize, pads: usize) -> Option<usize> {
    window_out(input, k, stride, pads)
}

/// What a layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Convolution, optionally with a fused 2x2 pooling.
    Conv2d(Option<Pool2x2>),
    /// Fully connected.
    Dense,
    /// Max pooling.
    MaxPool,
    /// Average pooling.
    AvgPool,
}

/// One validated layer, borrowing its constants from the model bytes.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// What it computes.
    pub kind: Kind,
    /// Input activation.
    pub input: Dims,
    /// Output activation.
    pub output: Dims,
    /// Kernel, stride and padding (`[h, w]`).
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Top and left padding.
    pub padding: [usize; 2],
    /// `-zp_in`.
    pub input_offset: i32,
    /// `zp_out`.
    pub output_offset: i32,
    /// Fused activation range.
    pub act: Clamp,
    /// Weights (OHWI or `[out][in]`), empty for pools.
    pub weights: &'a [i8],
    /// int32 biases, one per output channel.
    pub bias: &'a [i32],
    /// Requantization multipliers.
    pub multiplier: &'a [i32],
    /// Requantization shifts.
    pub shift: &'a [i8],
    /// Optional lookup table after the requantization.
    pub lut: Option<&'a [i8; 256]>,
    /// Arena buffer read (0 or 1).
    pub read: u8,
    /// Arena buffer written (0 or 1).
    pub write: u8,
}

impl Layer<'_> {
    /// The kernels' convolution parameters.
    #[inline(always)]
    fn conv_params(&self) -> ConvParams {
        ConvParams {
            input_offset: self.input_offset,
            output_offset: self.output_offset,
            stride: self.stride,
            padding: self.padding,
            act: self.act,
        }
    }

    /// The filter's spatial size and input channels.
    #[inline(always)]
    fn filter_dims(&self) -> Dims {
        Dims {
            h: self.kernel[0],
            w: self.kernel[1],
            c: self.input.c,
        }
    }
}

/// The optional kernels (device-infer features) one layer needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerNeeds {
    /// `conv`: a convolution without fused pooling.
    pub conv: bool,
    /// `pool`: a standalone pooling layer.
    pub pool: bool,
    /// `large-filters`: a fused conv+pool the patch (and, on Armv7E-M, one-channel) kernels
    /// do not take.
    pub large_filters: bool,
}

impl LayerNeeds {
    fn of(kind: Kind, filter_volume: usize, input_offset: i32, c1_fits: bool) -> Self {
        let patch_fits =
            filter_volume <= kernels::conv2d_block::PATCH && (-128..=127).contains(&-input_offset);
        LayerNeeds {
            conv: kind == Kind::Conv2d(None),
            pool: matches!(kind, Kind::MaxPool | Kind::AvgPool),
            // The dispatcher's order: one-channel (Armv7E-M), patch, per-channel.
            large_filters: matches!(kind, Kind::Conv2d(Some(_)))
                && !patch_fits
                && !(cfg!(arm_dsp) && c1_fits),
        }
    }

    /// What a layer needs (the dispatcher's choice for its shape and quantization).
    pub fn of_layer(l: &Layer) -> Self {
        let (p, filter) = (l.conv_params(), l.filter_dims());
        let pool = match l.kind {
            Kind::Conv2d(Some(pool)) => pool,
            _ => Pool2x2::Max,
        };
        let c1 = kernels::conv2d_c1::c1_fits(&p, l.input, filter, l.output, pool, l.lut);
        Self::of(l.kind, filter.len(), l.input_offset, c1)
    }

    /// The optional kernels in this build.
    pub const BUILT: LayerNeeds = LayerNeeds {
        conv: cfg!(feature = "conv"),
        pool: cfg!(feature = "pool"),
        large_filters: cfg!(feature = "large-filters"),
    };

    /// The first needed kernel this build lacks, as the message `Model::from_bytes` gives.
    fn missing(&self) -> Option<&'static str> {
        self.missing_from(Self::BUILT)
    }

    fn missing_from(&self, built: LayerNeeds) -> Option<&'static str> {
        if self.conv && !built.conv {
            Some("convolution without pooling: this build lacks device-infer feature `conv`")
        } else if self.pool && !built.pool {
            Some("pooling layer: this build lacks device-infer feature `pool`")
        } else if self.large_filters && !built.large_filters {
            Some(
                "filter too large for the patch kernel: this build lacks device-infer feature `large-filters`",
            )
        } else {
            None
        }
    }

    /// Either's needs.
    pub fn or(self, other: LayerNeeds) -> LayerNeeds {
        LayerNeeds {
            conv: self.conv || other.conv,
            pool: self.pool || other.pool,
            large_filters: self.large_filters || other.large_filters,
        }
    }

    /// The device-infer feature names needed.
    pub fn features(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.conv, "conv"),
            (self.pool, "pool"),
            (self.large_filters, "large-filters"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
    }
}

/// A validated device model over borrowed bytes.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    bytes: &'a [u8],
    arena_len: usize,
    buffer1: usize,
    layers: u16,
    outputs: usize,
    input: Dims,
    input_zero_point: i8,
    output_zero_point: i8,
    input_multiplier: i32,
    input_shift: i8,
}

fn slice_i8(b: &[u8], off: u32, len: usize) -> Option<&[i8]> {
    let s = b.get(off as usize..(off as usize).checked_add(len)?)?;
    bytemuck::try_cast_slice(s).ok()
}
fn slice_i32(b: &[u8], off: u32, count: usize) -> Option<&[i32]> {
    if !off.is_multiple_of(4) {
        return None;
    }
    let s = b.get(off as usize..(off as usize).checked_add(count.checked_mul(4)?)?)?;
    bytemuck::try_cast_slice(s).ok()
}

impl<'a> Model<'a> {
    /// Parses and validates a model. After `Ok`, [`run`](Self::run) cannot fail on the
    /// model's account.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let h: Fields<HEADER_LEN> = match record(bytes, 0) {
            Some(h) if h.0[..4] == MAGIC => h,
            _ => return Err(Error::NotAModel),
        };
        let version = h.u16(4) as u16;
        if version != VERSION {
            return Err(Error::Version { found: version });
        }
        if h.u16(6) != HEADER_LEN {
            return Err(Error::Header("header length"));
        }
        let file_len = h.u32(8);
        if file_len as usize != bytes.len() {
            return Err(Error::Length {
                header: file_len,
                actual: bytes.len(),
            });
        }
        let crc = h.u32(12);
        let actual = crc32(&bytes[16..]);
        if crc != actual {
            return Err(Error::Crc {
                header: crc,
                actual,
            });
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(Error::Misaligned);
        }
        let model = Model {
            bytes,
            arena_len: h.u32(16) as usize,
            buffer1: h.u32(20) as usize,
            layers: h.u16(24) as u16,
            outputs: h.u16(26),
            input: Dims {
                h: h.u16(28),
                w: h.u16(30),
                c: h.u16(32),
            },
            input_zero_point: h.u8(34) as i8,
            output_zero_point: h.u8(35) as i8,
            input_multiplier: h.u32(36) as i32,
            input_shift: h.u8(40) as i8,
        };
        if h.u32(44) as usize != HEADER_LEN {
            return Err(Error::Header("layer table offset"));
        }
        if model.layers == 0 || HEADER_LEN + model.layers as usize * ENTRY_LEN > bytes.len() {
            return Err(Error::Header("layer count"));
        }
        if model.input.is_empty() || model.outputs == 0 {
            return Err(Error::Header("input or output size"));
        }
        if model.input_multiplier < 0 || !(-31..=30).contains(&model.input_shift) {
            return Err(Error::Header("input quantization"));
        }
        if model.buffer1 > model.arena_len || !model.buffer1.is_multiple_of(4) {
            return Err(Error::Header("arena buffer offset"));
        }
        // Every layer, and the chain of shapes and buffers.
        let mut prev = model.input;
        let mut prev_buf = 0u8;
        for i in 0..model.layers {
            let l = model.layer(i)?;
            let bad = |what| Err(Error::Layer { layer: i, what });
            // Checked once here rather than on every decode: it reads every weight, and the
            // bytes cannot change while the model borrows them.
            if l.weights.contains(&i8::MIN) {
                return bad("weights must lie in [-127, 127]");
            }
            if l.input != prev {
                return bad("input shape differs from the previous layer's output");
            }
            if let Some(feature) = LayerNeeds::of_layer(&l).missing() {
                return bad(feature);
            }
            if l.read != prev_buf || l.write > 1 || l.read == l.write {
                return bad("arena buffers");
            }
            let cap = |buf: u8| {
                if buf == 0 {
                    model.buffer1
                } else {
                    model.arena_len - model.buffer1
                }
            };
            if l.input.len() > cap(l.read) || l.output.len() > cap(l.write) {
                return bad("activation larger than its arena buffer");
            }
            prev = l.output;
            prev_buf = l.write;
        }
        if prev.len() != model.outputs {
            return Err(Error::Header(
                "output count differs from the last layer's output",
            ));
        }
        Ok(model)
    }

    /// Decodes and checks entry `i` of the layer table (in constant time per entry plus the
    /// per-channel arrays; `from_bytes` also checks the weights' range once).
    fn layer(&self, i: u16) -> Result<Layer<'a>, Error> {
        let b = self.bytes;
        let bad = |what| Error::Layer { layer: i, what };
        let e: Fields<ENTRY_LEN> =
            record(b, HEADER_LEN + i as usize * ENTRY_LEN).ok_or(bad("truncated"))?;
        let input = Dims {
            h: e.u16(2),
            w: e.u16(4),
            c: e.u16(6),
        };
        let output = Dims {
            h: e.u16(8),
            w: e.u16(10),
            c: e.u16(12),
        };
        let field = |o: usize| e.u8(o) as usize;
        let kernel = [field(14), field(15)];
        let stride = [field(16), field(17)];
        let padding = [field(18), field(19)];
        let input_offset = e.u32(20) as i32;
        let output_offset = e.u32(24) as i32;
        let act = Clamp {
            min: e.u8(28) as i8,
            max: e.u8(29) as i8,
        };
        let has_lut = e.u8(30) != 0;
        let kind = match (e.u8(0), e.u8(1)) {
            (1, 0) => Kind::Conv2d(None),
            (1, 3) => Kind::Conv2d(Some(Pool2x2::Max)),
            (1, 4) => Kind::Conv2d(Some(Pool2x2::Avg)),
            (2, 0) => Kind::Dense,
            (3, 0) => Kind::MaxPool,
            (4, 0) => Kind::AvgPool,
            _ => return Err(bad("unknown kind")),
        };
        if input.is_empty() || output.is_empty() {
            return Err(bad("empty activation"));
        }
        if !(-255..=255).contains(&input_offset)
            || !(-128..=127).contains(&output_offset)
            || act.min > act.max
        {
            return Err(bad("zero point or clamp out of range"));
        }
        let (oc, weights_len) = match kind {
            Kind::Conv2d(pool) => {
                let (Some(ch), Some(cw)) = (
                    out_size(input.h, kernel[0], stride[0], 2 * padding[0]),
                    out_size(input.w, kernel[1], stride[1], 2 * padding[1]),
                ) else {
                    return Err(bad("kernel does not fit the input"));
                };
                // Bottom/right padding may be one less than top/left (SAME with even kernels):
                // accept both sizes the rule gives.
                let alt = |n: usize, k, s, p: usize| out_size(n, k, s, (2 * p).saturating_sub(1));
                let conv_ok = |ch: usize, cw: usize| match pool {
                    None => output.h == ch && output.w == cw,
                    Some(_) => output.h == ch / 2 && output.w == cw / 2 && ch >= 2 && cw >= 2,
                };
                let ok = conv_ok(ch, cw)
                    || match (
                        alt(input.h, kernel[0], stride[0], padding[0]),
                        alt(input.w, kernel[1], stride[1], padding[1]),
                    ) {
                        (Some(a), Some(c)) => conv_ok(a, c),
                        _ => false,
                    };
                if !ok {
                    return Err(bad("output size does not follow from the convolution"));
                }
                let vol = kernel[0] * kernel[1] * input.c;
                // |(x - zp) * w| <= 255 * 127 per product: keep the sum inside i32.
                if vol > 65_000 {
                    return Err(bad("filter volume could overflow the accumulator"));
                }
                (output.c, output.c * vol)
            }
            Kind::Dense => {
                if output.h != 1 || output.w != 1 || input.len() > 65_000 {
                    return Err(bad("dense shape"));
                }
                (output.c, output.c * input.len())
            }
            Kind::MaxPool | Kind::AvgPool => {
                let ok = output.c == input.c
                    && out_size(input.h, kernel[0], stride[0], 2 * padding[0])
                        .is_some_and(|v| v >= output.h)
                    && out_size(input.w, kernel[1], stride[1], 2 * padding[1])
                        .is_some_and(|v| v >= output.w)
                    && padding[0] < kernel[0]
                    && padding[1] < kernel[1];
                if !ok {
                    return Err(bad("pooling shape"));
                }
                (0, 0)
            }
        };
        let weights_off = e.u32(32);
        if e.u32(36) as usize != weights_len {
            return Err(bad("weights length"));
        }
        let weights =
            slice_i8(b, weights_off, weights_len).ok_or(bad("weights out of the file"))?;
        if e.u32(44) as usize != oc {
            return Err(bad("bias count"));
        }
        let bias = slice_i32(b, e.u32(40), oc).ok_or(bad("bias out of the file or misaligned"))?;
        let multiplier =
            slice_i32(b, e.u32(48), oc).ok_or(bad("multipliers out of the file or misaligned"))?;
        let shift = slice_i8(b, e.u32(52), oc).ok_or(bad("shifts out of the file"))?;
        if multiplier.iter().any(|&m| m < 0) || shift.iter().any(|s| !(-31..=30).contains(s)) {
            return Err(bad("multiplier or shift out of range"));
        }
        let lut = if has_lut {
            let t = slice_i8(b, e.u32(56), 256).ok_or(bad("lookup table out of the file"))?;
            Some(t.try_into().map_err(|_| bad("lookup table"))?)
        } else {
            None
        };
        if has_lut && !matches!(kind, Kind::Conv2d(_) | Kind::Dense) {
            return Err(bad("lookup table on a pooling layer"));
        }
        let layer = Layer {
            kind,
            input,
            output,
            kernel,
            stride,
            padding,
            input_offset,
            output_offset,
            act,
            weights,
            bias,
            multiplier,
            shift,
            lut,
            read: e.u8(60),
            write: e.u8(61),
        };
        Ok(layer)
    }

    /// The optional kernels this model needs on a target like this build's (a firmware for
    /// an Armv7E-M part needs no `large-filters` for a one-channel first layer; computed on
    /// the host, the answer is the portable one, which never asks for less).
    pub fn kernel_features(&self) -> LayerNeeds {
        (0..self.layers)
            .filter_map(|i| self.layer(i).ok())
            .fold(LayerNeeds::default(), |acc, l| {
                acc.or(LayerNeeds::of_layer(&l))
            })
    }

    /// Bytes of arena [`run`](Self::run) needs.
    pub const fn arena_len(&self) -> usize {
        self.arena_len
    }

    /// Input shape (HWC).
    pub const fn input_dims(&self) -> Dims {
        self.input
    }

    /// Number of output values (classes).
    pub const fn outputs(&self) -> usize {
        self.outputs
    }

    /// Number of layers.
    pub const fn layers(&self) -> u16 {
        self.layers
    }

    /// Layer `i` (validated at load).
    pub fn layer_at(&self, i: u16) -> Result<Layer<'a>, Error> {
        self.layer(i)
    }

    /// The output zero point (an output `q` means `scale * (q - zero_point)`).
    pub const fn output_zero_point(&self) -> i8 {
        self.output_zero_point
    }

    /// Quantizes raw `u8` pixels (HWC, the training preprocessing is `p / 255`) into the model's
    /// input.
    pub fn quantize_input(&self, pixels: &[u8], out: &mut [i8]) -> Result<(), Error> {
        if pixels.len() != self.input.len() || out.len() != self.input.len() {
            return Err(Error::InputLength {
                expected: self.input.len() as u32,
            });
        }
        for (o, &p) in out.iter_mut().zip(pixels) {
            *o = self.quantize_pixel(p);
        }
        Ok(())
    }

    /// One raw pixel quantized as [`quantize_input`](Self::quantize_input) does.
    pub fn quantize_pixel(&self, p: u8) -> i8 {
        let v = requantize(p as i32, self.input_multiplier, self.input_shift as i32)
            + self.input_zero_point as i32;
        v.clamp(-128, 127) as i8
    }

    /// Runs the model on a quantized input, using `arena` (at least [`arena_len`](Self::arena_len)
    /// bytes) for activations. Returns the int8 outputs, which live in the arena.
    pub fn run<'b>(&self, input: &[i8], arena: &'b mut [i8]) -> Result<&'b [i8], Error> {
        self.run_traced(input, arena, |_, _| {})
    }

    /// [`run`](Self::run), calling `trace(layer, output)` after each layer (per-layer error
    /// analysis on the host, instruction counts per layer on a board).
    pub fn run_traced<'b>(
        &self,
        input: &[i8],
        arena: &'b mut [i8],
        trace: impl FnMut(u16, &[i8]),
    ) -> Result<&'b [i8], Error> {
        if arena.len() < self.arena_len {
            return Err(Error::ArenaTooSmall {
                needed: self.arena_len as u32,
            });
        }
        if input.len() != self.input.len() {
            return Err(Error::InputLength {
                expected: self.input.len() as u32,
            });
        }
        arena[..input.len()].copy_from_slice(input);
        self.run_in_place(arena, trace)
    }

    /// The part of `arena` where [`run_in_place`](Self::run_in_place) reads its input: quantize
    /// straight into it (e.g. with [`quantize_input`](Self::quantize_input)) and the input needs
    /// no RAM of its own.
    pub fn input_slot<'b>(&self, arena: &'b mut [i8]) -> Result<&'b mut [i8], Error> {
        if arena.len() < self.arena_len {
            return Err(Error::ArenaTooSmall {
                needed: self.arena_len as u32,
            });
        }
        Ok(&mut arena[..self.input.len()])
    }

    /// [`run_traced`](Self::run_traced) on an input already written to
    /// [`input_slot`](Self::input_slot).
    pub fn run_in_place<'b>(
        &self,
        arena: &'b mut [i8],
        mut trace: impl FnMut(u16, &[i8]),
    ) -> Result<&'b [i8], Error> {
        self.run_dyn(arena, &mut trace)
    }

    /// The body of [`run_in_place`](Self::run_in_place), not generic: compiled once, in this
    /// crate (with its optimisation settings), in a frame of its own.
    #[inline(never)]
    fn run_dyn<'b>(
        &self,
        arena: &'b mut [i8],
        trace: &mut dyn FnMut(u16, &[i8]),
    ) -> Result<&'b [i8], Error> {
        if arena.len() < self.arena_len {
            return Err(Error::ArenaTooSmall {
                needed: self.arena_len as u32,
            });
        }
        let (buf0, buf1) = arena.split_at_mut(self.buffer1);
        let mut last = (0u8, 0usize);
        for i in 0..self.layers {
            // Borrowed where it was parsed: moving the ~100-byte layer out of the `Result`
            // cost two copies and their stack on the Cortex-M.
            let parsed = self.layer(i);
            let l = match &parsed {
                Ok(l) => l,
                Err(e) => return Err(*e),
            };
            let (src, dst) = if l.read == 0 {
                (&*buf0, &mut *buf1)
            } else {
                (&*buf1, &mut *buf0)
            };
            let x = &src[..l.input.len()];
            let y = &mut dst[..l.output.len()];
            run_layer(l, x, y);
            trace(i, y);
            last = (l.write, l.output.len());
        }
        let out = if last.0 == 0 {
            &buf0[..last.1]
        } else {
            &buf1[..last.1]
        };
        Ok(out)
    }
}

/// Runs one validated layer.
fn run_layer(l: &Layer, x: &[i8], y: &mut [i8]) {
    let q = PerChannelQuant {
        multiplier: l.multiplier,
        shift: l.shift,
    };
    let (p, filter) = (l.conv_params(), l.filter_dims());
    match l.kind {
        Kind::Conv2d(Some(pool)) => kernels::conv2d_pool2x2_s8(
            &p, &q, l.input, x, filter, l.weights, l.bias, l.lut, pool, l.output, y,
        ),
        Kind::Conv2d(None) => {
            #[cfg(feature = "conv")]
            kernels::conv2d_s8(&p, &q, l.input, x, filter, l.weights, l.bias, l.output, y);
            apply_lut(l.lut, y);
        }
        Kind::Dense => {
            kernels::dense_s8(
                l.input_offset,
                l.output_offset,
                l.act,
                &q,
                x,
                l.weights,
                l.bias,
                y,
            );
            apply_lut(l.lut, y);
        }
        Kind::MaxPool | Kind::AvgPool => {
            let pp = PoolParams {
                kernel: l.kernel,
                stride: l.stride,
                padding: l.padding,
                act: l.act,
            };
            #[cfg(feature = "pool")]
            if l.kind == Kind::MaxPool {
                kernels::maxpool2d_s8(&pp, l.input, x, l.output, y)
            } else {
                kernels::avgpool2d_s8(&pp, l.input, x, l.output, y)
            }
            #[cfg(not(feature = "pool"))]
            let _ = pp;
        }
    }
}

fn apply_lut(lut: Option<&[i8; 256]>, y: &mut [i8]) {
    if let Some(t) = lut {
        for v in y.iter_mut() {
            *v = t[(*v as i32 + 128) as usize];
        }
    }
}

/// Index of the largest output (the predicted class); the first on ties.
pub fn argmax(outputs: &[i8]) -> usize {
    outputs
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > outputs[best] { i } else { best })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::reference;
    use crate::testutil::weights as bytes;
    use crate::writer::{AlignedBytes, LayerSpec, ModelSpec, write};

    /// 6x6x1 -> conv 3x3 (pad 1) 2ch + ReLU + fused max pool -> 3x3x2 -> dense 18 -> 3.
    pub(crate) fn spec() -> ModelSpec {
        let conv = LayerSpec {
            kind: Kind::Conv2d(Some(Pool2x2::Max)),
            input: Dims { h: 6, w: 6, c: 1 },
            output: Dims { h: 3, w: 3, c: 2 },
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            input_offset: 128,
            output_offset: -128,
            act: Clamp {
                min: -128,
                max: 127,
            },
            weights: bytes(18, 1),
            bias: vec![100, -50],
            multiplier: vec![1_500_000_000, 1_200_000_000],
            shift: vec![-7, -6],
            lut: None,
        };
        let dense = LayerSpec {
            kind: Kind::Dense,
            input: Dims { h: 3, w: 3, c: 2 },
            output: Dims { h: 1, w: 1, c: 3 },
            kernel: [0, 0],
            stride: [0, 0],
            padding: [0, 0],
            input_offset: 128,
            output_offset: 5,
            act: Clamp::NONE,
            weights: bytes(54, 2),
            bias: vec![7, 8, -9],
            multiplier: vec![1_300_000_000; 3],
            shift: vec![-6; 3],
            lut: None,
        };
        ModelSpec {
            input: Dims { h: 6, w: 6, c: 1 },
            input_zero_point: -128,
            input_multiplier: 1 << 30,
            input_shift: 1,
            output_zero_point: 5,
            layers: vec![conv, dense],
        }
    }

    #[test]
    fn runs_bit_exact_with_the_reference_kernels() {
        let file = AlignedBytes::new(&write(&spec()));
        let m = Model::from_bytes(file.as_bytes()).unwrap();
        assert_eq!((m.layers(), m.outputs(), m.arena_len()), (2, 3, 36 + 18));
        let pixels: Vec<u8> = (0..36).map(|i| (i * 7 % 256) as u8).collect();
        let mut x = [0i8; 36];
        m.quantize_input(&pixels, &mut x).unwrap();
        assert_eq!(x[5], (35 - 128) as i8);
        let mut arena = vec![0i8; m.arena_len()];
        let out = m.run(&x, &mut arena).unwrap().to_vec();

        let s = spec();
        let (c, d) = (&s.layers[0], &s.layers[1]);
        let q = PerChannelQuant {
            multiplier: &c.multiplier,
            shift: &c.shift,
        };
        let p = ConvParams {
            input_offset: 128,
            output_offset: -128,
            stride: [1, 1],
            padding: [1, 1],
            act: c.act,
        };
        let mut conv = [0i8; 72];
        reference::conv2d::conv2d_s8(
            &p,
            &q,
            c.input,
            &x,
            Dims { h: 3, w: 3, c: 1 },
            &c.weights,
            &c.bias,
            Dims { h: 6, w: 6, c: 2 },
            &mut conv,
        );
        let mut pooled = [0i8; 18];
        let pp = PoolParams {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            act: Clamp::NONE,
        };
        reference::pool::maxpool2d_s8(&pp, Dims { h: 6, w: 6, c: 2 }, &conv, c.output, &mut pooled);
        let mut want = [0i8; 3];
        let qd = PerChannelQuant {
            multiplier: &d.multiplier,
            shift: &d.shift,
        };
        reference::dense::dense_s8(
            128,
            5,
            Clamp::NONE,
            &qd,
            &pooled,
            &d.weights,
            &d.bias,
            &mut want,
        );
        assert_eq!(out, want);
        assert_eq!(argmax(&out), argmax(&want));
    }

    #[test]
    fn optional_kernels_are_named_by_the_layers_that_need_them() {
        let conv_pool = Kind::Conv2d(Some(Pool2x2::Max));
        // LeNet's layers need none; an unfused conv, a pool and a 400-value filter each one.
        assert_eq!(
            LayerNeeds::of(conv_pool, 150, 128, false),
            LayerNeeds::default()
        );
        assert_eq!(
            LayerNeeds::of(Kind::Dense, 400, 128, false),
            LayerNeeds::default()
        );
        let conv = LayerNeeds::of(Kind::Conv2d(None), 9, 0, false);
        let pool = LayerNeeds::of(Kind::AvgPool, 4, 0, false);
        let large = LayerNeeds::of(conv_pool, 400, 0, false);
        // An input zero point outside int8 cannot pad the int8 patches.
        assert!(LayerNeeds::of(conv_pool, 25, -200, false).large_filters);
        assert_eq!(
            conv.or(pool).or(large).features().collect::<Vec<_>>(),
            ["conv", "pool", "large-filters"]
        );
        let none = LayerNeeds::default();
        for (needs, feature) in [
            (conv, "`conv`"),
            (pool, "`pool`"),
            (large, "`large-filters`"),
        ] {
            let e = needs.missing_from(none).unwrap();
            assert!(e.contains(feature), "{e}");
            assert_eq!(needs.missing_from(needs), None);
        }
        // A model with an unfused conv and a standalone pool loads where the build has both
        // kernels (the default features) and is refused, naming a feature, where it does not
        // (`cargo test -p device-infer --no-default-features`, run by CI).
        let mut with_pool = spec();
        let c = &mut with_pool.layers[0];
        c.kind = Kind::Conv2d(None);
        c.output = Dims { h: 6, w: 6, c: 2 };
        let dims = (Dims { h: 6, w: 6, c: 2 }, Dims { h: 3, w: 3, c: 2 });
        let pool_layer = LayerSpec::pool(Kind::MaxPool, dims, [2, 2], [2, 2], [0, 0], -128);
        with_pool.layers.insert(1, pool_layer);
        let bytes = AlignedBytes::new(&write(&with_pool));
        let loaded = Model::from_bytes(bytes.as_bytes());
        let built = LayerNeeds::BUILT;
        assert_eq!(loaded.is_ok(), built.conv && built.pool, "{loaded:?}");
        match loaded {
            Ok(m) => assert_eq!(m.kernel_features(), conv.or(pool)),
            Err(e) => assert!(e.to_string().contains("device-infer feature `"), "{e}"),
        }
        // The test model needs what its layers are.
        let bytes = AlignedBytes::new(&write(&spec()));
        let m = Model::from_bytes(bytes.as_bytes()).unwrap();
        let kinds: Vec<Kind> = (0..m.layers())
            .map(|i| m.layer_at(i).unwrap().kind)
            .collect();
        let needs = m.kernel_features();
        assert_eq!(needs.conv, kinds.contains(&Kind::Conv2d(None)));
        assert_eq!(
            needs.pool,
            kinds
                .iter()
                .any(|k| matches!(k, Kind::MaxPool | Kind::AvgPool))
        );
    }

    #[test]
    fn crc32_is_zlibs() {
        // The CRC-32 check value, and zlib's crc32 of a longer run (Python: zlib.crc32).
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(&[]), 0);
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(crc32(&bytes), 0x17BC_2A46);
    }

    #[test]
    fn bad_files_are_named_errors() {
        let file = write(&spec());
        let check = |b: &[u8]| Model::from_bytes(AlignedBytes::new(b).as_bytes()).err();
        assert_eq!(check(&file[..40]), Some(Error::NotAModel));
        assert!(matches!(
            check(&file[..file.len() - 4]),
            Some(Error::Length { .. })
        ));
        let mut f = file.clone();
        f[100] ^= 1;
        assert!(matches!(check(&f), Some(Error::Crc { .. })));
        let mut f = file.clone();
        f[4] = 2;
        let e = check(&f).unwrap();
        assert_eq!(e, Error::Version { found: 2 });
        assert!(std::format!("{e}").contains("export quantize"));
        // Misaligned bytes.
        let shifted = AlignedBytes::new(&[&[0u8][..], &file].concat());
        assert_eq!(
            Model::from_bytes(&shifted.as_bytes()[1..]).err(),
            Some(Error::Misaligned)
        );
        // Run-time misuse.
        let aligned = AlignedBytes::new(&file);
        let m = Model::from_bytes(aligned.as_bytes()).unwrap();
        assert_eq!(
            m.run(&[0; 36], &mut [0; 10]).err(),
            Some(Error::ArenaTooSmall { needed: 54 })
        );
        assert_eq!(
            m.run(&[0; 35], &mut [0; 54]).err(),
            Some(Error::InputLength { expected: 36 })
        );
    }

    #[test]
    fn mutated_models_never_panic() {
        let file = write(&spec());
        let mut st = 0x9E37_79B9_7F4A_7C15u64;
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut f = file.clone();
            for _ in 0..2 {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                let i = 16 + (st % (f.len() as u64 - 16)) as usize;
                f[i] = (st >> 40) as u8;
            }
            // Re-seal the CRC so validation goes past it.
            let crc = crc32(&f[16..]);
            f[12..16].copy_from_slice(&crc.to_le_bytes());
            let mem = AlignedBytes::new(&f);
            if let Ok(m) = Model::from_bytes(mem.as_bytes()) {
                accepted += 1;
                let mut arena = vec![0i8; m.arena_len()];
                let x = vec![3i8; m.input_dims().len()];
                m.run(&x, &mut arena).unwrap();
            }
        }
        // Most mutations hit weights or reserved bytes and stay valid models.
        assert!(accepted > 1000, "{accepted}");
    }
}
