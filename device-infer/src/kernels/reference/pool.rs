//! Reference `maxpool2d_s8` and `avgpool2d_s8`.

use crate::kernels::{Dims, PoolParams};

/// Calls `f` with every input value of the window of output `(oy, ox)`, channel `c`, skipping
/// padded positions.
fn for_window(
    p: &PoolParams,
    in_dims: Dims,
    input: &[i8],
    oy: usize,
    ox: usize,
    c: usize,
    mut f: impl FnMut(i32),
) {
    for ky in 0..p.kernel[0] {
        for kx in 0..p.kernel[1] {
            let iy = (oy * p.stride[0] + ky) as isize - p.padding[0] as isize;
            let ix = (ox * p.stride[1] + kx) as isize - p.padding[1] as isize;
            if iy >= 0 && ix >= 0 && iy < in_dims.h as isize && ix < in_dims.w as isize {
                f(input[(iy as usize * in_dims.w + ix as usize) * in_dims.c + c] as i32);
            }
        }
    }
}

/// As [`crate::kernels::maxpool2d_s8`].
pub fn maxpool2d_s8(
    p: &PoolParams,
    in_dims: Dims,
    input: &[i8],
    out_dims: Dims,
    output: &mut [i8],
) {
    for oy in 0..out_dims.h {
        for ox in 0..out_dims.w {
            for c in 0..out_dims.c {
                let mut m = i32::MIN;
                for_window(p, in_dims, input, oy, ox, c, |v| m = m.max(v));
                output[(oy * out_dims.w + ox) * out_dims.c + c] = p.act.apply(m);
            }
        }
    }
}

/// As [`crate::kernels::avgpool2d_s8`]: the mean of the window's valid values, rounded half
/// away from zero.
pub fn avgpool2d_s8(
    p: &PoolParams,
    in_dims: Dims,
    input: &[i8],
    out_dims: Dims,
    output: &mut [i8],
) {
    for oy in 0..out_dims.h {
        for ox in 0..out_dims.w {
            for c in 0..out_dims.c {
                let (mut sum, mut n) = (0i32, 0i32);
                for_window(p, in_dims, input, oy, ox, c, |v| {
                    sum += v;
                    n += 1;
                });
                let mean = if n == 0 {
                    0
                } else if sum >= 0 {
                    (sum + n / 2) / n
                } else {
                    (sum - n / 2) / n
                };
                output[(oy * out_dims.w + ox) * out_dims.c + c] = p.act.apply(mean);
            }
        }
    }
}
