//! The device model: parsed and validated once from bytes (see `docs/device-model-format.md`),
//! then run any number of times in a caller-provided arena.

use core::fmt;

use crate::Aligned;
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
/// Header flag (byte 41) bit 0: buffer 0 spans the whole arena, so it overlaps buffer 1,
/// and a fused conv+pool layer may write over the input rows it has consumed (see
/// [`rows_overlap_ok`]). Other bits are reserved and refused.
pub const FLAG_OVERLAP: u8 = 1;

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

impl Error {
    /// What went wrong, without the numbers: for a firmware's one-line report, and the
    /// compile-time error of [`include_model!`](crate::include_model).
    pub const fn summary(&self) -> &'static str {
        match *self {
            Error::NotAModel => "not a device model",
            Error::Version { .. } => {
                "device model format version: regenerate it with `export quantize`"
            }
            Error::Length { .. } => "truncated or padded model",
            Error::Crc { .. } => "CRC mismatch: the model is corrupt",
            Error::Misaligned => "model bytes not 4-byte aligned",
            Error::Header(what) | Error::Layer { what, .. } => what,
            Error::ArenaTooSmall { .. } => "arena too small",
            Error::InputLength { .. } => "input length",
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib's `crc32`.
pub const fn crc32(bytes: &[u8]) -> u32 {
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
    let mut c = !0u32;
    let mut i = 0;
    while i < bytes.len() {
        c ^= bytes[i] as u32;
        c = TABLE[(c & 0xF) as usize] ^ (c >> 4);
        c = TABLE[(c & 0xF) as usize] ^ (c >> 4);
        i += 1;
    }
    !c
}

/// `?` for `const fn`s.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Err(e),
        }
    };
}

/// Little-endian fields of a fixed-size record (the header or a layer entry): one bounds
/// check for the record, none per field.
struct Fields<'b, const N: usize>(&'b [u8; N]);

impl<const N: usize> Fields<'_, N> {
    #[inline(always)]
    const fn u8(&self, o: usize) -> u8 {
        self.0[o]
    }
    #[inline(always)]
    const fn u16(&self, o: usize) -> usize {
        u16::from_le_bytes([self.0[o], self.0[o + 1]]) as usize
    }
    #[inline(always)]
    const fn u32(&self, o: usize) -> u32 {
        u32::from_le_bytes([self.0[o], self.0[o + 1], self.0[o + 2], self.0[o + 3]])
    }
}

/// The `len` bytes at `at`, if `b` holds them.
#[inline(always)]
const fn bytes_at(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    match b.split_at_checked(at) {
        Some((_, rest)) => match rest.split_at_checked(len) {
            Some((s, _)) => Some(s),
            None => None,
        },
        None => None,
    }
}

/// The `N`-byte record at `at`, if the bytes hold it.
#[inline(always)]
const fn record<const N: usize>(b: &[u8], at: usize) -> Option<Fields<'_, N>> {
    match bytes_at(b, at, N) {
        Some(s) => match s.first_chunk::<N>() {
            Some(r) => Some(Fields(r)),
            None => None,
        },
        None => None,
    }
}

/// [`window_out`] in one place (validation calls it six times; on a part that validates a
/// model at run time, one copy in flash).
#[inline(never)]
const fn out_size(input: usize, k: usize, stride: usize, pads: usize) -> Option<usize> {
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

/// A filter's spatial size and input channels.
#[inline(always)]
const fn filter_dims(kernel: [usize; 2], input: Dims) -> Dims {
    Dims {
        h: kernel[0],
        w: kernel[1],
        c: input.c,
    }
}

/// Layer-table entry `i` as numbers: offsets into the file rather than slices, so that
/// validation is a `const fn` (an embedded model is checked at compile time, see
/// [`include_model!`](crate::include_model)). Checks only that the entry lies in the file and
/// names a known kind; [`check_entry`] checks the rest.
#[derive(Clone, Copy)]
struct Entry {
    kind: Kind,
    input: Dims,
    output: Dims,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    input_offset: i32,
    output_offset: i32,
    act: Clamp,
    /// Offset and length of the weights.
    weights: (u32, usize),
    /// Offsets of the biases, multipliers and shifts, and their common count.
    bias: u32,
    multiplier: u32,
    shift: u32,
    channels: usize,
    /// Offset of the lookup table.
    lut: Option<u32>,
    read: u8,
    write: u8,
}

impl Entry {
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

    /// The arrays the entry points at, in place in `b` (the validated bytes: `None` only
    /// for bytes that were not).
    #[inline(always)]
    fn arrays<'a>(&self, b: &'a [u8]) -> Option<Arrays<'a>> {
        let lut = match self.lut {
            Some(off) => Some(slice_i8(b, off, 256)?.try_into().ok()?),
            None => None,
        };
        Some(Arrays {
            weights: slice_i8(b, self.weights.0, self.weights.1)?,
            bias: slice_i32(b, self.bias, self.channels)?,
            q: PerChannelQuant {
                multiplier: slice_i32(b, self.multiplier, self.channels)?,
                shift: slice_i8(b, self.shift, self.channels)?,
            },
            lut,
        })
    }
}

/// A layer's constant arrays.
struct Arrays<'a> {
    weights: &'a [i8],
    bias: &'a [i32],
    q: PerChannelQuant<'a>,
    lut: Option<&'a [i8; 256]>,
}

const fn layer_error(layer: u16, what: &'static str) -> Error {
    Error::Layer { layer, what }
}

#[inline(always)]
const fn entry(b: &[u8], i: u16) -> Result<Entry, Error> {
    let Some(e) = record::<ENTRY_LEN>(b, HEADER_LEN + i as usize * ENTRY_LEN) else {
        return Err(layer_error(i, "truncated"));
    };
    let kind = match (e.u8(0), e.u8(1)) {
        (1, 0) => Kind::Conv2d(None),
        (1, 3) => Kind::Conv2d(Some(Pool2x2::Max)),
        (1, 4) => Kind::Conv2d(Some(Pool2x2::Avg)),
        (2, 0) => Kind::Dense,
        (3, 0) => Kind::MaxPool,
        (4, 0) => Kind::AvgPool,
        _ => return Err(layer_error(i, "unknown kind")),
    };
    Ok(Entry {
        kind,
        input: Dims {
            h: e.u16(2),
            w: e.u16(4),
            c: e.u16(6),
        },
        output: Dims {
            h: e.u16(8),
            w: e.u16(10),
            c: e.u16(12),
        },
        kernel: [e.u8(14) as usize, e.u8(15) as usize],
        stride: [e.u8(16) as usize, e.u8(17) as usize],
        padding: [e.u8(18) as usize, e.u8(19) as usize],
        input_offset: e.u32(20) as i32,
        output_offset: e.u32(24) as i32,
        act: Clamp {
            min: e.u8(28) as i8,
            max: e.u8(29) as i8,
        },
        weights: (e.u32(32), e.u32(36) as usize),
        bias: e.u32(40),
        channels: e.u32(44) as usize,
        multiplier: e.u32(48),
        shift: e.u32(52),
        lut: if e.u8(30) != 0 { Some(e.u32(56)) } else { None },
        read: e.u8(60),
        write: e.u8(61),
    })
}

/// Whether a conv's output size `out` follows from the convolution's `conv` (`h`, `w`).
const fn conv_out_ok(pool: Option<Pool2x2>, out: Dims, conv: Option<(usize, usize)>) -> bool {
    match (conv, pool) {
        (None, _) => false,
        (Some((h, w)), None) => out.h == h && out.w == w,
        (Some((h, w)), Some(_)) => out.h == h / 2 && out.w == w / 2 && h >= 2 && w >= 2,
    }
}

/// A convolution's output size for `pads` (total padding) on both axes.
const fn conv_out(e: &Entry, pads: [usize; 2]) -> Option<(usize, usize)> {
    match (
        out_size(e.input.h, e.kernel[0], e.stride[0], pads[0]),
        out_size(e.input.w, e.kernel[1], e.stride[1], pads[1]),
    ) {
        (Some(h), Some(w)) => Some((h, w)),
        _ => None,
    }
}

/// Whether a pooling window along one axis reaches `out` outputs.
const fn pool_axis_ok(input: usize, k: usize, stride: usize, pad: usize, out: usize) -> bool {
    pad < k
        && match out_size(input, k, stride, 2 * pad) {
            Some(v) => v >= out,
            None => false,
        }
}

/// Checks one entry against the file's bytes: shapes, quantization constants, the arrays it
/// points at and the kernels this build has. Constant time per entry plus one pass over its
/// weights and per-channel arrays.
const fn check_entry(b: &[u8], e: &Entry) -> Result<(), &'static str> {
    // Sizes first, so that no product below overflows a 32-bit `usize` (on the part, and in
    // the compile-time check of an embedded model).
    let (Some(input_len), Some(output_len)) = (volume(e.input), volume(e.output)) else {
        return Err("activation too large");
    };
    if input_len == 0 || output_len == 0 {
        return Err("empty activation");
    }
    if e.input_offset < -255
        || e.input_offset > 255
        || e.output_offset < -128
        || e.output_offset > 127
        || e.act.min > e.act.max
    {
        return Err("zero point or clamp out of range");
    }
    let (oc, weights_len) = match e.kind {
        Kind::Conv2d(pool) => {
            let pads = [2 * e.padding[0], 2 * e.padding[1]];
            let Some(conv) = conv_out(e, pads) else {
                return Err("kernel does not fit the input");
            };
            // Bottom/right padding may be one less than top/left (SAME with even kernels):
            // accept both sizes the rule gives.
            let odd = [pads[0].saturating_sub(1), pads[1].saturating_sub(1)];
            if !conv_out_ok(pool, e.output, Some(conv))
                && !conv_out_ok(pool, e.output, conv_out(e, odd))
            {
                return Err("output size does not follow from the convolution");
            }
            // |(x - zp) * w| <= 255 * 127 per product: keep the sum inside i32.
            let vol = match volume(filter_dims(e.kernel, e.input)) {
                Some(vol) if vol <= 65_000 => vol,
                _ => return Err("filter volume could overflow the accumulator"),
            };
            match e.output.c.checked_mul(vol) {
                Some(len) => (e.output.c, len),
                None => return Err("filter bank too large"),
            }
        }
        Kind::Dense => {
            if e.output.h != 1 || e.output.w != 1 || input_len > 65_000 {
                return Err("dense shape");
            }
            match e.output.c.checked_mul(input_len) {
                Some(len) => (e.output.c, len),
                None => return Err("dense weights too large"),
            }
        }
        Kind::MaxPool | Kind::AvgPool => {
            let (i, o) = (e.input, e.output);
            if o.c != i.c
                || !pool_axis_ok(i.h, e.kernel[0], e.stride[0], e.padding[0], o.h)
                || !pool_axis_ok(i.w, e.kernel[1], e.stride[1], e.padding[1], o.w)
            {
                return Err("pooling shape");
            }
            (0, 0)
        }
    };
    if e.weights.1 != weights_len {
        return Err("weights length");
    }
    let Some(weights) = bytes_at(b, e.weights.0 as usize, weights_len) else {
        return Err("weights out of the file");
    };
    // Checked once here rather than on every run: it reads every weight, and the bytes
    // cannot change while the model borrows them.
    let mut k = 0;
    while k < weights.len() {
        if weights[k] == i8::MIN as u8 {
            return Err("weights must lie in [-127, 127]");
        }
        k += 1;
    }
    if e.channels != oc {
        return Err("bias count");
    }
    let words = oc * 4;
    if !e.bias.is_multiple_of(4) || bytes_at(b, e.bias as usize, words).is_none() {
        return Err("bias out of the file or misaligned");
    }
    let Some(multipliers) = bytes_at(b, e.multiplier as usize, words) else {
        return Err("multipliers out of the file or misaligned");
    };
    if !e.multiplier.is_multiple_of(4) {
        return Err("multipliers out of the file or misaligned");
    }
    let Some(shifts) = bytes_at(b, e.shift as usize, oc) else {
        return Err("shifts out of the file");
    };
    let mut c = 0;
    while c < oc {
        // Little-endian i32: negative when the top byte's sign bit is set.
        let shift = shifts[c] as i8;
        if multipliers[4 * c + 3] >= 0x80 || shift < -31 || shift > 30 {
            return Err("multiplier or shift out of range");
        }
        c += 1;
    }
    if let Some(lut) = e.lut {
        if bytes_at(b, lut as usize, 256).is_none() {
            return Err("lookup table out of the file");
        }
        if !matches!(e.kind, Kind::Conv2d(_) | Kind::Dense) {
            return Err("lookup table on a pooling layer");
        }
    }
    match LayerNeeds::of_entry(e).missing() {
        Some(feature) => Err(feature),
        None => Ok(()),
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
    const fn of(kind: Kind, filter: Dims, input_offset: i32, c1_fits: bool) -> Self {
        LayerNeeds {
            conv: matches!(kind, Kind::Conv2d(None)),
            pool: matches!(kind, Kind::MaxPool | Kind::AvgPool),
            // The dispatcher's order: one-channel (Armv7E-M), patch, per-channel.
            large_filters: matches!(kind, Kind::Conv2d(Some(_)))
                && !kernels::conv2d_block::patch_fits(filter, input_offset)
                && !(cfg!(arm_dsp) && c1_fits),
        }
    }

    /// What a layer needs (the dispatcher's choice for its shape and quantization).
    const fn of_entry(e: &Entry) -> Self {
        let filter = filter_dims(e.kernel, e.input);
        let pool = match e.kind {
            Kind::Conv2d(Some(pool)) => pool,
            _ => Pool2x2::Max,
        };
        let c1 =
            kernels::conv2d_c1::c1_fits(e.stride, e.input, filter, e.output, pool, e.lut.is_some());
        Self::of(e.kind, filter, e.input_offset, c1)
    }

    /// The optional kernels in this build.
    pub const BUILT: LayerNeeds = LayerNeeds {
        conv: cfg!(feature = "conv"),
        pool: cfg!(feature = "pool"),
        large_filters: cfg!(feature = "large-filters"),
    };

    /// The first needed kernel this build lacks, as the message `Model::from_bytes` gives.
    const fn missing(&self) -> Option<&'static str> {
        self.missing_from(Self::BUILT)
    }

    const fn missing_from(&self, built: LayerNeeds) -> Option<&'static str> {
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
    /// Validated, and 4-byte aligned.
    bytes: &'a [u8],
    arena_len: usize,
    buffer1: usize,
    /// [`FLAG_OVERLAP`]: buffer 0 is the whole arena.
    overlap: bool,
    layers: u16,
    outputs: usize,
    input: Dims,
    input_zero_point: i8,
    output_zero_point: i8,
    input_multiplier: i32,
    input_shift: i8,
}

#[inline(always)]
fn slice_i8(b: &[u8], off: u32, len: usize) -> Option<&[i8]> {
    bytemuck::try_cast_slice(bytes_at(b, off as usize, len)?).ok()
}
#[inline(always)]
fn slice_i32(b: &[u8], off: u32, count: usize) -> Option<&[i32]> {
    bytemuck::try_cast_slice(bytes_at(b, off as usize, count.checked_mul(4)?)?).ok()
}

/// `d`'s number of values, if it fits a `usize`.
const fn volume(d: Dims) -> Option<usize> {
    match d.h.checked_mul(d.w) {
        Some(hw) => hw.checked_mul(d.c),
        None => None,
    }
}

const fn same_dims(a: Dims, b: Dims) -> bool {
    a.h == b.h && a.w == b.w && a.c == b.c
}

impl<'a> Model<'a> {
    /// Parses and validates a model. After `Ok`, [`run`](Self::run) cannot fail on the
    /// model's account.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        let model = Self::validate(bytes)?;
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(Error::Misaligned);
        }
        Ok(model)
    }

    /// [`from_bytes`](Self::from_bytes) for bytes aligned by their type, callable in a
    /// `const` context: [`include_model!`](crate::include_model) validates an embedded model
    /// while the firmware compiles, which then carries no validation code.
    pub const fn from_aligned(bytes: &'a Aligned<[u8]>) -> Result<Self, Error> {
        Self::validate(&bytes.0)
    }

    /// Everything [`from_bytes`](Self::from_bytes) checks but the alignment.
    const fn validate(bytes: &'a [u8]) -> Result<Self, Error> {
        let Some(h) = record::<HEADER_LEN>(bytes, 0) else {
            return Err(Error::NotAModel);
        };
        if h.u32(0) != u32::from_le_bytes(MAGIC) {
            return Err(Error::NotAModel);
        }
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
        let actual = crc32(bytes.split_at(16).1);
        if crc != actual {
            return Err(Error::Crc {
                header: crc,
                actual,
            });
        }
        let model = Model {
            bytes,
            arena_len: h.u32(16) as usize,
            buffer1: h.u32(20) as usize,
            overlap: h.u8(41) & FLAG_OVERLAP != 0,
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
        if !matches!(volume(model.input), Some(1..)) || model.outputs == 0 {
            return Err(Error::Header("input or output size"));
        }
        if model.input_multiplier < 0 || model.input_shift < -31 || model.input_shift > 30 {
            return Err(Error::Header("input quantization"));
        }
        if model.buffer1 > model.arena_len || !model.buffer1.is_multiple_of(4) {
            return Err(Error::Header("arena buffer offset"));
        }
        if h.u8(41) & !FLAG_OVERLAP != 0 {
            return Err(Error::Header("unknown flags"));
        }
        // Every layer, and the chain of shapes and buffers.
        let mut prev = model.input;
        let mut prev_buf = 0u8;
        let mut i = 0;
        while i < model.layers {
            let l = tri!(entry(bytes, i));
            if let Err(what) = check_entry(bytes, &l) {
                return Err(layer_error(i, what));
            }
            if !same_dims(l.input, prev) {
                return Err(layer_error(
                    i,
                    "input shape differs from the previous layer's output",
                ));
            }
            if l.read != prev_buf || l.write > 1 || l.read == l.write {
                return Err(layer_error(i, "arena buffers"));
            }
            if l.input.len() > model.buffer_len(l.read)
                || l.output.len() > model.buffer_len(l.write)
            {
                return Err(layer_error(i, "activation larger than its arena buffer"));
            }
            if let Err(what) = model.overlap_ok(&l) {
                return Err(layer_error(i, what));
            }
            prev = l.output;
            prev_buf = l.write;
            i += 1;
        }
        if prev.len() != model.outputs {
            return Err(Error::Header(
                "output count differs from the last layer's output",
            ));
        }
        Ok(model)
    }

    /// `Ok` if `arena` holds the [`arena_len`](Self::arena_len) bytes a run needs.
    #[inline(always)]
    fn arena_fits(&self, arena: &[i8]) -> Result<(), Error> {
        if arena.len() < self.arena_len {
            return Err(Error::ArenaTooSmall {
                needed: self.arena_len as u32,
            });
        }
        Ok(())
    }

    /// Bytes of arena buffer `buf` (0 or 1).
    const fn buffer_len(&self, buf: u8) -> usize {
        if buf == 0 {
            if self.overlap {
                self.arena_len
            } else {
                self.buffer1
            }
        } else {
            self.arena_len - self.buffer1
        }
    }

    /// Where arena buffer `buf` starts.
    const fn buffer_at(&self, buf: u8) -> usize {
        if buf == 0 { 0 } else { self.buffer1 }
    }

    /// Whether the arena is planned with overlapping buffers ([`FLAG_OVERLAP`]).
    pub const fn overlaps(&self) -> bool {
        self.overlap
    }

    /// A layer whose input and output share arena bytes must be a fused conv+pool the
    /// patch kernel takes (the dispatcher's last resort for any sub-shape), and its rows must
    /// be safe to write in its order (see [`rows_overlap_ok`]).
    const fn overlap_ok(&self, l: &Entry) -> Result<(), &'static str> {
        let (i0, o0) = (self.buffer_at(l.read), self.buffer_at(l.write));
        let (i1, o1) = (i0 + l.input.len(), o0 + l.output.len());
        if o0 >= i1 || o1 <= i0 {
            return Ok(());
        }
        let filter = filter_dims(l.kernel, l.input);
        let fused = matches!(l.kind, Kind::Conv2d(Some(_)));
        if !fused || !kernels::conv2d_block::patch_fits(filter, l.input_offset) {
            return Err("only a fused conv+pool with the patch kernel may overlap its input");
        }
        if !rows_overlap_ok(
            l.input,
            l.output,
            l.kernel[0],
            l.stride[0],
            l.padding[0],
            i0,
            o0,
        ) {
            return Err("output overwrites input rows still to be read");
        }
        Ok(())
    }

    /// Layer `i` of the validated table: its fields and its arrays in place. No semantic
    /// check (load did them), only the bounds that keep it memory-safe.
    fn layer(&self, i: u16) -> Result<Layer<'a>, Error> {
        let e = entry(self.bytes, i)?;
        let a = e
            .arrays(self.bytes)
            .ok_or(layer_error(i, "out of the file"))?;
        Ok(Layer {
            kind: e.kind,
            input: e.input,
            output: e.output,
            kernel: e.kernel,
            stride: e.stride,
            padding: e.padding,
            input_offset: e.input_offset,
            output_offset: e.output_offset,
            act: e.act,
            weights: a.weights,
            bias: a.bias,
            multiplier: a.q.multiplier,
            shift: a.q.shift,
            lut: a.lut,
            read: e.read,
            write: e.write,
        })
    }

    /// The optional kernels this model needs on a target like this build's (a firmware for
    /// an Armv7E-M part needs no `large-filters` for a one-channel first layer; computed on
    /// the host, the answer is the portable one, which never asks for less).
    pub fn kernel_features(&self) -> LayerNeeds {
        (0..self.layers)
            .filter_map(|i| entry(self.bytes, i).ok())
            .fold(LayerNeeds::default(), |acc, e| {
                acc.or(LayerNeeds::of_entry(&e))
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

    /// How a raw pixel becomes the input: `(multiplier, shift, zero_point)` of
    /// [`quantize_pixel`](Self::quantize_pixel) (validated at load: `multiplier >= 0`, `shift`
    /// in `-31..=30`).
    pub const fn input_quantization(&self) -> (i32, i8, i8) {
        (
            self.input_multiplier,
            self.input_shift,
            self.input_zero_point,
        )
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
        self.arena_fits(arena)?;
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
        self.arena_fits(arena)?;
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
        self.arena_fits(arena)?;
        let mut last = (0usize, 0usize);
        for i in 0..self.layers {
            last = self.step(i, arena, trace)?;
        }
        Ok(Self::output(arena, last))
    }

    /// [`run_in_place`](Self::run_in_place) for a model known while the firmware compiles
    /// (a `static` from [`include_model!`](crate::include_model)): the layer loop is written
    /// out ([`UNROLLED_LAYERS`] steps) and inlined, so the compiler reads each layer-table
    /// entry from flash, keeps only the call of that layer's kernel with its arguments as
    /// constants, and drops the decoding and the dispatch. Same results. For a model read at
    /// run time it would be that many copies of the dispatch: use `run_in_place` there.
    #[inline(always)]
    pub fn run_static<'b>(
        &self,
        arena: &'b mut [i8],
        mut trace: impl FnMut(u16, &[i8]),
    ) -> Result<&'b [i8], Error> {
        if self.layers as usize > UNROLLED_LAYERS {
            return self.run_dyn(arena, &mut trace);
        }
        self.arena_fits(arena)?;
        let mut last = (0usize, 0usize);
        macro_rules! steps {
            ($($i:literal)*) => {
                const _: () = assert!([$($i),*].len() == UNROLLED_LAYERS);
                $(
                    if $i < self.layers {
                        last = self.step($i, arena, &mut trace)?;
                    }
                )*
            };
        }
        steps!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        Ok(Self::output(arena, last))
    }

    /// Layer `i` from the buffer it reads to the one it writes, then `trace`: the body of
    /// both run loops. Returns where the output starts and its length.
    #[inline(always)]
    fn step(
        &self,
        i: u16,
        arena: &mut [i8],
        trace: &mut (impl FnMut(u16, &[i8]) + ?Sized),
    ) -> Result<(usize, usize), Error> {
        let l = entry(self.bytes, i)?;
        let Some(a) = l.arrays(self.bytes) else {
            return Err(layer_error(i, "out of the file"));
        };
        let (x_at, y_at) = (self.buffer_at(l.read), self.buffer_at(l.write));
        let (x_len, y_len) = (l.input.len(), l.output.len());
        // Plain comparisons, so that a layer known at compile time folds to one branch.
        let disjoint = !self.overlap || y_at >= x_at + x_len || y_at + y_len <= x_at;
        if disjoint {
            if let Some((x, y)) = split_regions(arena, x_at, x_len, y_at, y_len) {
                run_layer(&l, &a, x, y);
            }
        } else {
            // Validated at load: a fused conv+pool whose rows allow it.
            run_overlapping(&l, &a, arena, x_at, y_at);
        }
        let Some(y) = arena.get(y_at..y_at + y_len) else {
            return Err(layer_error(i, "out of the arena"));
        };
        trace(i, y);
        Ok((y_at, y_len))
    }

    /// The last layer's output: `len` values from `at`.
    fn output(arena: &[i8], (at, len): (usize, usize)) -> &[i8] {
        arena.get(at..at + len).unwrap_or(&[])
    }
}

/// `arena[x_at..][..x_len]` and `arena[y_at..][..y_len]` as two slices, when they are disjoint
/// (and inside the arena).
#[inline(always)]
fn split_regions(
    arena: &mut [i8],
    x_at: usize,
    x_len: usize,
    y_at: usize,
    y_len: usize,
) -> Option<(&[i8], &mut [i8])> {
    if y_at >= x_at + x_len {
        let (a, b) = arena.split_at_mut_checked(y_at)?;
        Some((a.get(x_at..x_at + x_len)?, b.get_mut(..y_len)?))
    } else if y_at + y_len <= x_at {
        let (a, b) = arena.split_at_mut_checked(x_at)?;
        Some((b.get(..x_len)?, a.get_mut(y_at..y_at + y_len)?))
    } else {
        None
    }
}

/// Input rows `[first, end)` pooled output row `py` of a fused conv+pool reads (kernel
/// height `k`, vertical stride `s`, top padding `pad`, `h` input rows): its two convolution
/// rows `2py` and `2py + 1`, clipped to the input.
const fn pooled_row_inputs(py: usize, h: usize, k: usize, s: usize, pad: usize) -> (usize, usize) {
    let top = 2 * py * s;
    let first = top.saturating_sub(pad);
    let end = top + s + k;
    let end = end.saturating_sub(pad);
    (first, if end < h { end } else { h })
}

/// The rows of a fused conv+pool whose output (at arena offset `y_at`) may share bytes with
/// its input (at `x_at`): rows are computed top-down when the output starts at or below the
/// input, bottom-up otherwise.
struct RowGeometry {
    down: bool,
    h: usize,
    k: usize,
    s: usize,
    pad: usize,
    /// The first input row the layer reads and the end of the last.
    first_all: usize,
    end_all: usize,
    row_in: usize,
    row_out: usize,
    x_at: usize,
    y_at: usize,
}

impl RowGeometry {
    const fn new(
        input: Dims,
        output: Dims,
        k: usize,
        s: usize,
        pad: usize,
        x_at: usize,
        y_at: usize,
    ) -> Self {
        let first_all = pooled_row_inputs(0, input.h, k, s, pad).0;
        let end_all = pooled_row_inputs(output.h.saturating_sub(1), input.h, k, s, pad).1;
        RowGeometry {
            down: y_at <= x_at,
            h: input.h,
            k,
            s,
            pad,
            first_all,
            end_all,
            row_in: input.w * input.c,
            row_out: output.w * output.c,
            x_at,
            y_at,
        }
    }

    /// Input rows `[first, end)` pooled row `py` reads.
    #[inline(always)]
    const fn inputs(&self, py: usize) -> (usize, usize) {
        pooled_row_inputs(py, self.h, self.k, self.s, self.pad)
    }

    /// Whether pooled rows `[lo, hi)`, computed in one pass, leave intact the input rows they
    /// and the rows after them read (a superset: their union's hull).
    #[inline(always)]
    const fn clear(&self, lo: usize, hi: usize) -> bool {
        let (x0, x1) = if self.down {
            (self.inputs(lo).0, self.end_all)
        } else {
            (self.first_all, self.inputs(hi - 1).1)
        };
        let (y0, y1) = (self.y_at + lo * self.row_out, self.y_at + hi * self.row_out);
        y1 <= self.x_at + x0 * self.row_in || y0 >= self.x_at + x1 * self.row_in
    }
}

/// Whether a fused conv+pool from arena offset `x_at` to `y_at` may share bytes with its
/// input: computed one pooled row at a time in [`RowGeometry`]'s order, no output row may
/// touch an input row that it or a later row still reads (and every pooled row must read at
/// least one input row).
pub const fn rows_overlap_ok(
    input: Dims,
    output: Dims,
    k: usize,
    s: usize,
    pad: usize,
    x_at: usize,
    y_at: usize,
) -> bool {
    let g = RowGeometry::new(input, output, k, s, pad, x_at, y_at);
    let mut py = 0;
    while py < output.h {
        let (first, end) = g.inputs(py);
        if first >= end || !g.clear(py, py + 1) {
            return false;
        }
        py += 1;
    }
    true
}

/// A layer whose output overlaps its input. On an x86-64 host with `std` (RAM is plenty, and
/// the AVX kernels want whole layers) the input is copied aside and the layer runs whole;
/// elsewhere (the boards, the Linux ARM box: no allocation, the same instructions every run),
/// and in this crate's tests, row groups in place ([`run_rows`]). The same sums either way.
#[inline(always)]
fn run_overlapping(l: &Entry, a: &Arrays, arena: &mut [i8], x_at: usize, y_at: usize) {
    #[cfg(all(feature = "std", target_arch = "x86_64", not(test)))]
    {
        extern crate std;
        use std::cell::RefCell;
        use std::vec::Vec;
        std::thread_local! {
            static SCRATCH: RefCell<Vec<i8>> = const { RefCell::new(Vec::new()) };
        }
        let (x_len, y_len) = (l.input.len(), l.output.len());
        SCRATCH.with_borrow_mut(|s| {
            s.clear();
            if let Some(x) = arena.get(x_at..x_at + x_len) {
                s.extend_from_slice(x);
            }
            if let (true, Some(y)) = (s.len() == x_len, arena.get_mut(y_at..y_at + y_len)) {
                run_layer(l, a, s, y);
            }
        });
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64", not(test))))]
    run_rows(l, a, arena, x_at, y_at);
}

/// A fused conv+pool whose output overlaps its input (validated by [`rows_overlap_ok`]):
/// pooled rows in the safe order, in groups as large as stay clear of the input they and the
/// rows after them read (one row always does, by validation), each group as a layer of its
/// own over the input rows it reads (top padding adjusted), so any kernel computes it, with
/// the same sums.
#[cfg_attr(
    all(feature = "std", target_arch = "x86_64", not(test)),
    allow(dead_code)
)]
#[inline(always)]
fn run_rows(l: &Entry, a: &Arrays, arena: &mut [i8], x_at: usize, y_at: usize) {
    let Kind::Conv2d(Some(pool)) = l.kind else {
        return;
    };
    let (k, s, pad) = (l.kernel[0], l.stride[0], l.padding[0]);
    let g = RowGeometry::new(l.input, l.output, k, s, pad, x_at, y_at);
    let filter = filter_dims(l.kernel, l.input);
    let rows = l.output.h;
    let mut done = 0;
    while done < rows {
        let (mut lo, mut hi) = if g.down {
            (done, done + 1)
        } else {
            (rows - done - 1, rows - done)
        };
        if g.down {
            while hi < rows && g.clear(lo, hi + 1) {
                hi += 1;
            }
        } else {
            while lo > 0 && g.clear(lo - 1, hi) {
                lo -= 1;
            }
        }
        done += hi - lo;
        let (first, end) = (g.inputs(lo).0, g.inputs(hi - 1).1);
        let in_dims = Dims {
            h: end - first,
            ..l.input
        };
        let out_dims = Dims {
            h: hi - lo,
            ..l.output
        };
        let mut p = l.conv_params();
        p.padding[0] = pad + first - 2 * lo * s;
        let Some((x, y)) = split_regions(
            arena,
            x_at + first * g.row_in,
            in_dims.len(),
            y_at + lo * g.row_out,
            out_dims.len(),
        ) else {
            return;
        };
        kernels::conv2d_pool2x2_s8(
            &p, &a.q, in_dims, x, filter, a.weights, a.bias, a.lut, pool, out_dims, y,
        );
    }
}

/// Steps [`Model::run_static`] writes out; a model with more layers runs the loop.
pub const UNROLLED_LAYERS: usize = 16;

/// Runs one validated layer.
#[inline(always)]
fn run_layer(l: &Entry, a: &Arrays, x: &[i8], y: &mut [i8]) {
    let (p, filter) = (l.conv_params(), filter_dims(l.kernel, l.input));
    match l.kind {
        Kind::Conv2d(Some(pool)) => kernels::conv2d_pool2x2_s8(
            &p, &a.q, l.input, x, filter, a.weights, a.bias, a.lut, pool, l.output, y,
        ),
        Kind::Conv2d(None) => {
            #[cfg(feature = "conv")]
            kernels::conv2d_s8(&p, &a.q, l.input, x, filter, a.weights, a.bias, l.output, y);
            apply_lut(a.lut, y);
        }
        Kind::Dense => {
            kernels::dense_s8(
                l.input_offset,
                l.output_offset,
                l.act,
                &a.q,
                x,
                a.weights,
                a.bias,
                y,
            );
            apply_lut(a.lut, y);
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
    let mut best = (0, i8::MIN);
    for (i, &v) in outputs.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
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

    /// `f` with its CRC fixed up after an edit.
    fn reseal(f: &[u8]) -> Vec<u8> {
        let mut f = f.to_vec();
        let crc = crc32(f.split_at(16).1).to_le_bytes();
        f[12..16].copy_from_slice(&crc);
        f
    }

    /// The CMSIS-NN paper's CIFAR-10 net in shape (random constants): three fused 5x5 SAME
    /// conv + 2x2 max stages, 32, 32 and 64 channels, then a dense layer.
    pub(crate) fn cmsis_spec(seed: u64) -> ModelSpec {
        let stage = |h: usize, c: usize, oc: usize, i: u64| LayerSpec {
            kind: Kind::Conv2d(Some(Pool2x2::Max)),
            input: Dims { h, w: h, c },
            output: Dims {
                h: h / 2,
                w: h / 2,
                c: oc,
            },
            kernel: [5, 5],
            stride: [1, 1],
            padding: [2, 2],
            input_offset: 128 - i as i32,
            output_offset: -128 + i as i32,
            act: Clamp {
                min: -128 + i as i8,
                max: 127,
            },
            weights: bytes(25 * c * oc, seed + i),
            bias: (0..oc as i32).map(|j| j * 37 - 600).collect(),
            multiplier: (0..oc as i32)
                .map(|j| 1_100_000_000 + j * 9_000_000)
                .collect(),
            shift: vec![-9; oc],
            lut: None,
        };
        let dense = LayerSpec {
            kind: Kind::Dense,
            input: Dims { h: 4, w: 4, c: 64 },
            output: Dims { h: 1, w: 1, c: 10 },
            kernel: [0, 0],
            stride: [0, 0],
            padding: [0, 0],
            input_offset: 125,
            output_offset: 3,
            act: Clamp::NONE,
            weights: bytes(10 * 1024, seed + 9),
            bias: (0..10).map(|j| j * 100 - 500).collect(),
            multiplier: vec![1_300_000_000; 10],
            shift: vec![-9; 10],
            lut: None,
        };
        ModelSpec {
            input: Dims { h: 32, w: 32, c: 3 },
            input_zero_point: -128,
            input_multiplier: 1 << 30,
            input_shift: 1,
            output_zero_point: 3,
            layers: vec![
                stage(32, 3, 32, 0),
                stage(16, 32, 32, 1),
                stage(8, 32, 64, 2),
                dense,
            ],
        }
    }

    #[test]
    fn overlapping_buffers_give_the_same_outputs_in_less_ram() {
        use crate::writer::{ArenaPlan, write_planned};
        let spec = cmsis_spec(5);
        let separate = AlignedBytes::new(&write_planned(&spec, ArenaPlan::Separate));
        let overlap = AlignedBytes::new(&write_planned(&spec, ArenaPlan::Overlap));
        let (s, o) = (
            Model::from_bytes(separate.as_bytes()).unwrap(),
            Model::from_bytes(overlap.as_bytes()).unwrap(),
        );
        // Separate: 3,072 + 8,192. Overlapping: conv1 writes above its input bottom-up,
        // conv2 below its input top-down, conv3 above again, whose rows set buffer 1 at 1,536.
        assert_eq!((s.arena_len(), s.overlaps()), (3072 + 8192, false));
        assert_eq!((o.arena_len(), o.overlaps()), (1536 + 8192, true));
        for img in 0..4u64 {
            let pixels = bytes(3072, 100 + img);
            let mut x = vec![0i8; 3072];
            s.quantize_input(&pixels.iter().map(|&v| v as u8).collect::<Vec<_>>(), &mut x)
                .unwrap();
            let mut a = vec![0i8; s.arena_len()];
            let mut b = vec![0i8; o.arena_len()];
            let mut trace_s = Vec::new();
            let want = s
                .run_traced(&x, &mut a, |_, y| trace_s.push(y.to_vec()))
                .unwrap()
                .to_vec();
            let mut trace_o = Vec::new();
            let got = o
                .run_traced(&x, &mut b, |_, y| trace_o.push(y.to_vec()))
                .unwrap()
                .to_vec();
            assert_eq!(trace_o, trace_s, "every layer's output");
            assert_eq!(got, want);
            // Not a constant: the layers computed something.
            assert!(trace_s[0].iter().any(|&v| v != trace_s[0][0]));
        }
    }

    #[test]
    fn unsafe_overlaps_are_refused() {
        use crate::writer::{ArenaPlan, write_planned};
        let spec = cmsis_spec(6);
        let bytes_with = |b1: u32, arena: u32| {
            let mut f = write_planned(&spec, ArenaPlan::Overlap);
            f[16..20].copy_from_slice(&arena.to_le_bytes());
            f[20..24].copy_from_slice(&b1.to_le_bytes());
            reseal(&f)
        };
        // Buffer 1 a row too low: conv3's bottom-up rows would overwrite input still read.
        let f = AlignedBytes::new(&bytes_with(1536 - 256, 1536 - 256 + 8192));
        assert_eq!(
            Model::from_bytes(f.as_bytes()).unwrap_err(),
            Error::Layer {
                layer: 2,
                what: "output overwrites input rows still to be read"
            }
        );
        // Buffer 1 at 0: the dense layer's output would land on its own input.
        let f = AlignedBytes::new(&bytes_with(0, 8192));
        assert!(matches!(
            Model::from_bytes(f.as_bytes()).unwrap_err(),
            Error::Layer { layer: 0, .. }
        ));
        // A dense layer may not overlap: the plain model's dense layer alone, buffer 1 at 4.
        let mut dense_only = super::tests::spec();
        dense_only.layers.remove(0);
        dense_only.input = dense_only.layers[0].input;
        let mut f = write_planned(&dense_only, ArenaPlan::Overlap);
        f[41] = FLAG_OVERLAP;
        f[20..24].copy_from_slice(&4u32.to_le_bytes());
        let f = AlignedBytes::new(&reseal(&f));
        assert_eq!(
            Model::from_bytes(f.as_bytes()).unwrap_err(),
            Error::Layer {
                layer: 0,
                what: "only a fused conv+pool with the patch kernel may overlap its input"
            }
        );
        // Unknown flag bits.
        let mut f = write_planned(&spec, ArenaPlan::Overlap);
        f[41] = 3;
        let f = AlignedBytes::new(&reseal(&f));
        assert_eq!(
            Model::from_bytes(f.as_bytes()).unwrap_err(),
            Error::Header("unknown flags")
        );
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
        let f = |h, w, c| Dims { h, w, c };
        // LeNet's layers need none, nor a 5x5x32 filter (its kernel rows fit the patches); an
        // unfused conv, a pool and a filter with a 5x40 kernel row each one.
        assert_eq!(
            LayerNeeds::of(conv_pool, f(5, 5, 6), 128, false),
            LayerNeeds::default()
        );
        assert_eq!(
            LayerNeeds::of(conv_pool, f(5, 5, 32), 128, false),
            LayerNeeds::default()
        );
        assert_eq!(
            LayerNeeds::of(Kind::Dense, f(1, 1, 400), 128, false),
            LayerNeeds::default()
        );
        let conv = LayerNeeds::of(Kind::Conv2d(None), f(3, 3, 1), 0, false);
        let pool = LayerNeeds::of(Kind::AvgPool, f(2, 2, 1), 0, false);
        let large = LayerNeeds::of(conv_pool, f(5, 5, 40), 0, false);
        // An input zero point outside int8 cannot pad the int8 patches.
        assert!(LayerNeeds::of(conv_pool, f(5, 5, 1), -200, false).large_filters);
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
    fn the_written_out_loop_runs_as_the_loop() {
        let x: Vec<i8> = (0..784).map(|i| (i * 53 % 241) as i8).collect();
        let mut a = vec![0i8; LENET.arena_len()];
        let mut b = a.clone();
        let mut seen = Vec::new();
        let looped = LENET.run(&x, &mut a).unwrap().to_vec();
        LENET.input_slot(&mut b).unwrap().copy_from_slice(&x);
        let written_out = LENET
            .run_static(&mut b, |i, y| seen.push((i, y.len())))
            .unwrap();
        assert_eq!(written_out, looped);
        assert_eq!(seen, [(0, 1176), (1, 400), (2, 120), (3, 84), (4, 10)]);
        // Past UNROLLED_LAYERS it runs the loop: 17 dense layers, 4 -> 4.
        let mut deep = spec();
        let dense = deep.layers.pop().unwrap();
        deep.input = Dims { h: 1, w: 1, c: 4 };
        deep.layers = (0..UNROLLED_LAYERS + 1)
            .map(|_| LayerSpec {
                input: Dims { h: 1, w: 1, c: 4 },
                output: Dims { h: 1, w: 1, c: 4 },
                weights: bytes(16, 3),
                bias: vec![1, -2, 3, -4],
                multiplier: vec![1_300_000_000; 4],
                shift: vec![-3; 4],
                ..dense.clone()
            })
            .collect();
        let file = AlignedBytes::new(&write(&deep));
        let m = Model::from_bytes(file.as_bytes()).unwrap();
        assert_eq!(m.layers() as usize, UNROLLED_LAYERS + 1);
        let mut a = vec![0i8; m.arena_len()];
        let mut b = a.clone();
        let looped = m.run(&[5, -7, 100, -128], &mut a).unwrap().to_vec();
        m.input_slot(&mut b)
            .unwrap()
            .copy_from_slice(&[5, -7, 100, -128]);
        let mut layers = 0;
        assert_eq!(m.run_static(&mut b, |_, _| layers += 1).unwrap(), looped);
        assert_eq!(layers, UNROLLED_LAYERS + 1);
    }

    /// The committed LeNet5-like model, validated while this test compiles.
    static LENET: Model<'static> =
        crate::include_model!("../../tests/golden/lenet5-like/model.lnq8");

    /// That file with its first weight set to -128 (outside the symmetric range) and the CRC
    /// resealed, built at compile time.
    const LENET_BAD_WEIGHT: &Aligned<[u8]> = &Aligned({
        let mut b = *include_bytes!("../../tests/golden/lenet5-like/model.lnq8");
        let e = HEADER_LEN + 32;
        let off = u32::from_le_bytes([b[e], b[e + 1], b[e + 2], b[e + 3]]) as usize;
        b[off] = 0x80;
        let crc = crc32(b.split_at(16).1).to_le_bytes();
        let mut i = 0;
        while i < 4 {
            b[12 + i] = crc[i];
            i += 1;
        }
        b
    });

    #[test]
    fn embedded_models_are_validated_at_compile_time() {
        // The compile-time model is the run-time one.
        let copy = AlignedBytes::new(LENET.bytes);
        let m = Model::from_bytes(copy.as_bytes()).unwrap();
        assert_eq!(
            (LENET.layers(), LENET.arena_len(), LENET.outputs()),
            (m.layers(), m.arena_len(), m.outputs())
        );
        assert_eq!((m.layers(), m.outputs()), (5, 10));
        let x: Vec<i8> = (0..784).map(|i| (i * 37 % 251) as i8).collect();
        let (mut a, mut b) = (vec![0i8; m.arena_len()], vec![0i8; m.arena_len()]);
        assert_eq!(LENET.run(&x, &mut a).unwrap(), m.run(&x, &mut b).unwrap());
        // The same checks run in a const context: what `include_model!` turns into a build
        // error for a corrupt or invalid file.
        const FLIPPED: &Aligned<[u8]> = &Aligned({
            let mut b = *include_bytes!("../../tests/golden/lenet5-like/model.lnq8");
            b[1000] ^= 1;
            b
        });
        const CORRUPT: Result<Model<'static>, Error> = Model::from_aligned(FLIPPED);
        assert!(matches!(CORRUPT, Err(Error::Crc { .. })), "{CORRUPT:?}");
        const BAD_WEIGHT: Result<Model<'static>, Error> = Model::from_aligned(LENET_BAD_WEIGHT);
        assert_eq!(
            BAD_WEIGHT.err(),
            Some(Error::Layer {
                layer: 0,
                what: "weights must lie in [-127, 127]"
            })
        );
        let e = BAD_WEIGHT.unwrap_err();
        assert_eq!(e.summary(), "weights must lie in [-127, 127]");
        // At run time the same bytes give the same error.
        let bad = AlignedBytes::new(&LENET_BAD_WEIGHT.0);
        assert_eq!(Model::from_bytes(bad.as_bytes()).err(), Some(e));
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

    /// Writes the small models of the device-model fuzz targets' seed corpus when
    /// `LENET_WRITE_FUZZ_SEEDS` names a folder (`fuzz/seeds/device_model`); a no-op otherwise.
    #[test]
    fn fuzz_seeds() {
        let Some(dir) = std::env::var_os("LENET_WRITE_FUZZ_SEEDS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("conv-max-dense.lnq8"), write(&spec())).unwrap();
        let mut s = spec();
        s.layers[0].kind = Kind::Conv2d(Some(Pool2x2::Avg));
        s.layers[0].lut = Some(core::array::from_fn(|i| {
            (i as i32 - 128).clamp(-100, 100) as i8
        }));
        std::fs::write(dir.join("conv-avg-lut-dense.lnq8"), write(&s)).unwrap();
        std::fs::write(dir.join("overlap-conv-conv-dense.lnq8"), small_overlap()).unwrap();
    }

    /// A small model whose arena overlaps (two fused conv+pool stages, then dense): a fuzz
    /// seed for the overlap validation.
    fn small_overlap() -> Vec<u8> {
        use crate::writer::{ArenaPlan, write_planned};
        let mut spec = cmsis_spec(3);
        spec.input = Dims { h: 8, w: 8, c: 3 };
        spec.layers.truncate(2);
        spec.layers[0].input = spec.input;
        spec.layers[0].output = Dims { h: 4, w: 4, c: 4 };
        spec.layers[0].weights = bytes(4 * 25 * 3, 1);
        spec.layers[0].bias.truncate(4);
        spec.layers[0].multiplier.truncate(4);
        spec.layers[0].shift.truncate(4);
        let mut dense = spec.layers.pop().unwrap();
        dense.kind = Kind::Dense;
        dense.input = Dims { h: 4, w: 4, c: 4 };
        dense.output = Dims { h: 1, w: 1, c: 3 };
        dense.kernel = [0, 0];
        dense.stride = [0, 0];
        dense.padding = [0, 0];
        dense.act = Clamp::NONE;
        dense.weights = bytes(3 * 64, 2);
        dense.bias.truncate(3);
        dense.multiplier.truncate(3);
        dense.shift.truncate(3);
        spec.layers.push(dense);
        write_planned(&spec, ArenaPlan::Overlap)
    }

    #[test]
    fn the_small_overlap_seed_overlaps_and_runs() {
        let f = AlignedBytes::new(&small_overlap());
        let m = Model::from_bytes(f.as_bytes()).unwrap();
        assert!(m.overlaps(), "arena {}", m.arena_len());
        assert!(m.arena_len() < 192 + 64);
        let mut arena = vec![0i8; m.arena_len()];
        let x: Vec<i8> = bytes(192, 9);
        assert_eq!(m.run(&x, &mut arena).unwrap().len(), 3);
    }

    #[test]
    fn mutated_models_never_panic() {
        let file = write(&spec());
        let mut st = 0x9E37_79B9_7F4A_7C15u64;
        let mut accepted = 0;
        // Miri (scripts/miri.sh) runs a few hundred: each mutation costs it a second.
        let n = if cfg!(miri) { 200 } else { 20_000 };
        for _ in 0..n {
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
        assert!(accepted > n / 20, "{accepted}");
    }
}
