//! Reference `dense_s8`.

use crate::kernels::{Clamp, PerChannelQuant};
use crate::quant::requantize;

/// As [`crate::kernels::dense_s8`].
#[allow(clippy::too_many_arguments)]
pub fn dense_s8(
    input_offset: i32,
    output_offset: i32,
    act: Clamp,
    q: &PerChannelQuant,
    input: &[i8],
    weights: &[i8],
    bias: &[i32],
    output: &mut [i8],
) {
    let n = input.len();
    for (o, out) in output.iter_mut().enumerate() {
        let mut acc = bias[o];
        for i in 0..n {
            acc += (input[i] as i32 + input_offset) * weights[o * n + i] as i32;
        }
        *out = act.apply(requantize(acc, q.multiplier[o], q.shift[o] as i32) + output_offset);
    }
}
