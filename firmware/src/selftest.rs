//! On-target kernel self-test (`selftest` feature): random shapes, offsets and quantization,
//! each optimized kernel against its reference twin, bit for bit. On the Cortex-M4 this is
//! where the `smlad` paths meet random inputs (the host proptests run the portable code).

use device_infer::kernels::{
    Clamp, ConvParams, Dims, PerChannelQuant, Pool2x2, PoolParams, conv2d_pool2x2_s8, dense_s8,
    reference, window_out,
};

/// xorshift32.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    /// In `lo..=hi`.
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u32) as i32
    }
    fn fill(&mut self, v: &mut [i8], lo: i32, hi: i32) {
        for x in v {
            *x = self.range(lo, hi) as i8;
        }
    }
}

/// Input channels, side and kernel: on the Cortex-M4/M7 up to 24 channels of 5x5 (kernel rows
/// of 120 values, whole filters of 600: the row variant of the patch kernel, as the CIFAR-10
/// nets' 32-channel layers) and output channels past one 32-filter `smlad` block; the
/// micro:bit's 16 KB of RAM holds 8 channels of 6x6 and 8 outputs.
#[cfg(feature = "microbit")]
const MAX_C: usize = 8;
#[cfg(not(feature = "microbit"))]
const MAX_C: usize = 24;
#[cfg(feature = "microbit")]
const MAX_HW: usize = 14;
#[cfg(not(feature = "microbit"))]
const MAX_HW: usize = 10;
#[cfg(feature = "microbit")]
const MAX_K: usize = 6;
#[cfg(not(feature = "microbit"))]
const MAX_K: usize = 5;
#[cfg(feature = "microbit")]
const MAX_OC: usize = 8;
#[cfg(not(feature = "microbit"))]
const MAX_OC: usize = 36;
const MAX_IN: usize = 160;
/// Convolution output side with padding 2 on each side: 14 + 4 - 1 + 1.
const MAX_CONV: usize = MAX_HW + 4;

/// The buffers (in .bss, selftest builds only).
pub struct Buffers {
    input: [i8; MAX_HW * MAX_HW * MAX_C],
    filter: [i8; MAX_OC * MAX_K * MAX_K * MAX_C],
    conv: [i8; MAX_CONV * MAX_CONV * MAX_OC],
    fused: [i8; MAX_CONV * MAX_CONV * MAX_OC / 4],
    unfused: [i8; MAX_CONV * MAX_CONV * MAX_OC / 4],
    dense_w: [i8; MAX_OC * MAX_IN],
}

pub const BUFFERS: Buffers = Buffers {
    input: [0; MAX_HW * MAX_HW * MAX_C],
    filter: [0; MAX_OC * MAX_K * MAX_K * MAX_C],
    conv: [0; MAX_CONV * MAX_CONV * MAX_OC],
    fused: [0; MAX_CONV * MAX_CONV * MAX_OC / 4],
    unfused: [0; MAX_CONV * MAX_CONV * MAX_OC / 4],
    dense_w: [0; MAX_OC * MAX_IN],
};

/// Runs `cases` random conv+pool and dense cases; `Err(i)` names the first that differs.
pub fn run(b: &mut Buffers, cases: u32) -> Result<(), u32> {
    let mut rng = Rng(0x1234_5678);
    let mut table = [0i8; 256];
    for (i, t) in table.iter_mut().enumerate() {
        *t = ((i as i32 * 37 + 11) % 256 - 128) as i8;
    }
    for case in 0..cases {
        let c = rng.range(1, MAX_C as i32) as usize;
        let h = rng.range(2, MAX_HW as i32) as usize;
        let w = rng.range(2, MAX_HW as i32) as usize;
        let k = rng.range(1, MAX_K as i32) as usize;
        let oc = rng.range(1, MAX_OC as i32) as usize;
        let pad = rng.range(0, 2) as usize;
        let zp = rng.range(-128, 127);
        let zo = rng.range(-128, 127);
        let m = [rng.range(1 << 30, i32::MAX); MAX_OC];
        let shift = [rng.range(-10, 0) as i8; MAX_OC];
        let bias: [i32; MAX_OC] = core::array::from_fn(|_| rng.range(-4000, 4000));
        let relu = rng.next() & 1 == 1;
        let lut = (rng.next() & 1 == 1).then_some(&table);
        let pool = if rng.next() & 1 == 1 {
            Pool2x2::Max
        } else {
            Pool2x2::Avg
        };
        let (Some(ch), Some(cw)) = (window_out(h, k, 1, 2 * pad), window_out(w, k, 1, 2 * pad))
        else {
            continue;
        };
        if ch < 2 || cw < 2 {
            continue;
        }
        let in_dims = Dims { h, w, c };
        let fd = Dims { h: k, w: k, c };
        let conv_dims = Dims {
            h: ch,
            w: cw,
            c: oc,
        };
        let out_dims = Dims {
            h: ch / 2,
            w: cw / 2,
            c: oc,
        };
        let p = ConvParams {
            input_offset: -zp,
            output_offset: zo,
            stride: [1, 1],
            padding: [pad, pad],
            act: if relu {
                Clamp {
                    min: zo as i8,
                    max: 127,
                }
            } else {
                Clamp::NONE
            },
        };
        let q = PerChannelQuant {
            multiplier: &m[..oc],
            shift: &shift[..oc],
        };
        let input = &mut b.input[..in_dims.len()];
        rng.fill(input, -128, 127);
        let filter = &mut b.filter[..oc * fd.len()];
        rng.fill(filter, -127, 127);
        let fused = &mut b.fused[..out_dims.len()];
        conv2d_pool2x2_s8(
            &p,
            &q,
            in_dims,
            input,
            fd,
            filter,
            &bias[..oc],
            lut,
            pool,
            out_dims,
            fused,
        );
        let conv = &mut b.conv[..conv_dims.len()];
        reference::conv2d::conv2d_s8(
            &p,
            &q,
            in_dims,
            input,
            fd,
            filter,
            &bias[..oc],
            conv_dims,
            conv,
        );
        if let Some(t) = lut {
            for v in conv.iter_mut() {
                *v = t[(*v as i32 + 128) as usize];
            }
        }
        let pp = PoolParams {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            act: Clamp::NONE,
        };
        let unfused = &mut b.unfused[..out_dims.len()];
        match pool {
            Pool2x2::Max => reference::pool::maxpool2d_s8(&pp, conv_dims, conv, out_dims, unfused),
            Pool2x2::Avg => reference::pool::avgpool2d_s8(&pp, conv_dims, conv, out_dims, unfused),
        }
        if fused != unfused {
            return Err(case);
        }

        // Dense: n inputs (any length, so word tails are exercised), oc outputs.
        let n = rng.range(1, MAX_IN as i32) as usize;
        let x = &mut b.input[..n];
        rng.fill(x, -128, 127);
        let wts = &mut b.dense_w[..oc * n];
        rng.fill(wts, -127, 127);
        let (y0, y1) = b.fused.split_at_mut(MAX_OC);
        dense_s8(-zp, zo, p.act, &q, x, wts, &bias[..oc], &mut y0[..oc]);
        reference::dense::dense_s8(-zp, zo, p.act, &q, x, wts, &bias[..oc], &mut y1[..oc]);
        if y0[..oc] != y1[..oc] {
            return Err(case);
        }
    }
    Ok(())
}
