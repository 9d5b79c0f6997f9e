//! Reference `conv2d_s8`.

use crate::kernels::{ConvParams, Dims, PerChannelQuant};
use crate::quant::requantize;

/// As [`crate::kernels::conv2d_s8`], one output value at a time.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_s8(
    p: &ConvParams,
    q: &PerChannelQuant,
    in_dims: Dims,
    input: &[i8],
    filter_dims: Dims,
    filter: &[i8],
    bias: &[i32],
    out_dims: Dims,
    output: &mut [i8],
) {
    for oy in 0..out_dims.h {
        for ox in 0..out_dims.w {
            for oc in 0..out_dims.c {
                let mut acc = bias[oc];
                for ky in 0..filter_dims.h {
                    for kx in 0..filter_dims.w {
                        let iy = (oy * p.stride[0] + ky) as isize - p.padding[0] as isize;
                        let ix = (ox * p.stride[1] + kx) as isize - p.padding[1] as isize;
                        if iy < 0 || ix < 0 || iy >= in_dims.h as isize || ix >= in_dims.w as isize
                        {
                            continue; // padding: (zp_in + input_offset) * w = 0
                        }
                        for ic in 0..in_dims.c {
                            let x = input[(iy as usize * in_dims.w + ix as usize) * in_dims.c + ic]
                                as i32;
                            let w = filter[((oc * filter_dims.h + ky) * filter_dims.w + kx)
                                * filter_dims.c
                                + ic] as i32;
                            acc += (x + p.input_offset) * w;
                        }
                    }
                }
                let v = requantize(acc, q.multiplier[oc], q.shift[oc] as i32) + p.output_offset;
                output[(oy * out_dims.w + ox) * out_dims.c + oc] = p.act.apply(v);
            }
        }
    }
}
