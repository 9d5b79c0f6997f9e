//! int8 kernels, named `<op>[_<shape case>]_<dtype>[_<variant>]`, each with a slow,
//! obviously-correct twin in [`reference`](mod@reference) that it must match bit for bit.
//!
//! Layouts: activations HWC (one image, channels innermost), convolution filters OHWI
//! (`[out_c][kh][kw][in_c]`), dense weights `[out][in]`. Quantization (TFLite / ONNX QLinear
//! scheme): activations asymmetric int8 with zero point `zp` (`real = scale * (q - zp)`),
//! weights symmetric per output channel (zero point 0, `[-127, 127]`), biases int32 at
//! `s_in * s_w`. All constants are folded by export: kernels add `input_offset = -zp_in` to
//! inputs, requantize with a per-channel multiplier and shift, add `output_offset = zp_out`
//! and clamp to the fused activation's range.
//!
//! Kernels take validated arguments (see `Model::from_bytes`): slice lengths match the dims,
//! and an `i32` accumulator cannot overflow (`in_c * kh * kw * 255 * 127 < 2^31` holds for
//! filter volumes up to 66,000 values, VGG-16's largest is 4,608).

pub mod conv2d;
pub mod conv2d_block;
pub mod conv2d_c1;
pub mod dense;
mod dot;
pub mod pool;
pub mod reference;
/// x86-64 host kernels (AVX2, detected at run time), used by the dispatchers when present.
#[cfg(all(any(test, feature = "std"), target_arch = "x86_64"))]
pub mod x86;

pub use conv2d::conv2d_s8;
pub use conv2d_block::{Pool2x2, conv2d_pool2x2_s8};
pub use dense::dense_s8;
pub use pool::{avgpool2d_s8, maxpool2d_s8};

/// Height, width and channels of one HWC image (or an OHWI filter's spatial part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Dims {
    /// Number of values.
    pub const fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Whether the tensor holds no value.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The output range of a layer with its activation folded in (ReLU -> `[zp_out, 127]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clamp {
    /// Smallest output.
    pub min: i8,
    /// Largest output.
    pub max: i8,
}

impl Clamp {
    /// The full int8 range (no activation).
    pub const NONE: Clamp = Clamp {
        min: i8::MIN,
        max: i8::MAX,
    };

    /// Clamps an int32 value into the range.
    pub fn apply(&self, v: i32) -> i8 {
        // Not `clamp`: its `min <= max` check (validated at load) would carry a panic path.
        v.max(self.min as i32).min(self.max as i32) as i8
    }
}

/// Per-output-channel requantization constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerChannelQuant<'a> {
    /// Q31 multipliers, one per output channel.
    pub multiplier: &'a [i32],
    /// Power-of-two shifts, one per output channel.
    pub shift: &'a [i8],
}

/// Parameters of a 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    /// Added to every input value: `-zp_in`.
    pub input_offset: i32,
    /// Added after requantization: `zp_out`.
    pub output_offset: i32,
    /// `[stride_h, stride_w]`.
    pub stride: [usize; 2],
    /// Zero (real zero, i.e. `zp_in`) rows and columns before the input: `[top, left]`. The
    /// bottom and right padding follow from the output size.
    pub padding: [usize; 2],
    /// The fused activation.
    pub act: Clamp,
}

/// Parameters of a 2-D pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolParams {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[stride_h, stride_w]`.
    pub stride: [usize; 2],
    /// `[top, left]` padding (padded positions are skipped, not counted).
    pub padding: [usize; 2],
    /// The fused activation.
    pub act: Clamp,
}

/// Output size of a window op along one axis (explicit padding `begin + end`), or `None` when
/// the window does not fit: `floor((in + pads - k) / stride) + 1`.
pub const fn window_out(input: usize, k: usize, stride: usize, pads: usize) -> Option<usize> {
    if stride == 0 || k == 0 || input + pads < k {
        None
    } else {
        Some((input + pads - k) / stride + 1)
    }
}
