//! Fixed-point requantization: the one place an int32 accumulator becomes an int8 value.
//!
//! A real scale `M` in `(0, 2^31)` is stored as a Q31 `multiplier` in `[2^30, 2^31)` and a
//! power-of-two `shift` with `M = multiplier * 2^(shift - 31)`; export computes both (see
//! [`quantize_multiplier`]), the device never sees a float.
//!
//! Rounding rule (TFLite-Micro's `MultiplyByQuantizedMultiplier`, CMSIS-NN's
//! `arm_nn_requantize` without `CMSIS_NN_USE_SINGLE_ROUNDING`), so outputs compare bit for bit
//! with theirs:
//! 1. `x = acc * 2^max(shift, 0)` (wrapping, as the C code does);
//! 2. `y = SaturatingRoundingDoublingHighMul(x, multiplier)`: `(x * multiplier + 2^30) >> 31`
//!    with the nudge `1 - 2^30` for negative products and division truncating toward zero,
//!    saturating the single overflow case `i32::MIN * i32::MIN`;
//! 3. `RoundingDivideByPOT(y, max(-shift, 0))`: an arithmetic shift rounding half away from
//!    zero.
//!
//! The result differs from the exactly rounded `acc * M` by at most 1 (two roundings); the
//! property tests below check that against an exact 128-bit oracle.

/// `(a * b + nudge) / 2^31`, saturated: the high half of the doubled product, rounded.
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // i64 division truncates toward zero, as C's does.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent`, rounding half away from zero. `exponent` in `0..=31`.
pub fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    debug_assert!(exponent <= 31);
    let exponent = exponent.min(31);
    // 32-bit mask arithmetic (2^31 - 1 at most): no 64-bit shift on a 32-bit core.
    let mask = ((1u32 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// `acc * multiplier * 2^(shift - 31)`, rounded by the TFLM / CMSIS-NN rule (module docs):
/// the same results as [`requantize_reference`], which spells the rule out, for every input
/// in range.
///
/// Ranges: `multiplier` in `[0, 2^31)` (export writes `[2^30, 2^31)` or 0), `shift` in
/// `-31..=30`. For `b = multiplier >= 0` the saturating case (`a == b == i32::MIN`) cannot
/// occur, and the nudged, truncating division of `SaturatingRoundingDoublingHighMul`,
/// `trunc((ab + (ab >= 0 ? 2^30 : 1 - 2^30)) / 2^31)`, equals `floor((ab + 2^30) / 2^31)`
/// (for negative `ab`, `trunc(s / d) = floor((s + d - 1) / d)`): one multiply-accumulate and
/// an arithmetic shift, a handful of instructions on a Cortex-M instead of a 64-bit division.
#[inline]
pub fn requantize(acc: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.clamp(0, 30) as u32;
    let right = (-shift).clamp(0, 31) as u32;
    let x = acc.wrapping_shl(left) as i64;
    let high = ((x * multiplier as i64 + (1 << 30)) >> 31) as i32;
    rounding_divide_by_pot(high, right)
}

/// One output channel's requantization with its constants worked out once: [`requantize`],
/// then the output offset and the activation clamp, as the kernels finish every output.
#[derive(Debug, Clone, Copy)]
pub struct Requant {
    multiplier: i32,
    left: u32,
    right: u32,
    mask: i32,
    half: i32,
    offset: i32,
    min: i32,
    max: i32,
}

impl Requant {
    /// For `multiplier` in `[0, 2^31)` and `shift` in `-31..=30` (as [`requantize`]), adding
    /// `offset` and clamping to `[min, max]`.
    #[inline(always)]
    pub fn new(multiplier: i32, shift: i8, offset: i32, min: i8, max: i8) -> Self {
        let right = (-(shift as i32)).clamp(0, 31) as u32;
        let mask = ((1u32 << right) - 1) as i32;
        Requant {
            multiplier,
            left: (shift as i32).clamp(0, 30) as u32,
            right,
            mask,
            half: mask >> 1,
            offset,
            min: min as i32,
            max: max as i32,
        }
    }

    /// `clamp(requantize(acc, multiplier, shift) + offset, min, max)`.
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i32 {
        let x = acc.wrapping_shl(self.left) as i64 * self.multiplier as i64;
        let x = ((x + (1 << 30)) >> 31) as i32;
        // rounding_divide_by_pot(x, right) with the mask and half worked out.
        let threshold = self.half + i32::from(x < 0);
        let v = (x >> self.right) + i32::from((x & self.mask) > threshold);
        // `max` then `min`: `clamp` would check `min <= max` (validated at load) and carry a
        // panic path.
        (v + self.offset).max(self.min).min(self.max)
    }
}

/// [`requantize`] written as TFLM's `MultiplyByQuantizedMultiplier`: the slow, obviously
/// faithful twin it is tested against.
pub fn requantize_reference(acc: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.clamp(0, 30) as u32;
    let right = (-shift).clamp(0, 31) as u32;
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(acc.wrapping_shl(left), multiplier),
        right,
    )
}

/// Splits a real scale into `(multiplier, shift)` for [`requantize`] (export side; `std` only
/// for `f64::frexp`-like math). Returns `(0, 0)` for a zero scale.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real == 0.0 || !real.is_finite() {
        return (0, 0);
    }
    // real = q * 2^shift with q in [0.5, 1).
    let mut shift = 0i32;
    let mut q = real;
    while q >= 1.0 {
        q /= 2.0;
        shift += 1;
    }
    while q < 0.5 {
        q *= 2.0;
        shift -= 1;
    }
    let mut m = libm_round(q * (1u64 << 31) as f64) as i64;
    if m == 1i64 << 31 {
        m /= 2;
        shift += 1;
    }
    (m as i32, shift)
}

/// Round half away from zero without `std`.
fn libm_round(x: f64) -> f64 {
    let t = x as i64 as f64;
    let frac = x - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact value `acc * multiplier * 2^(shift - 31)` rounded half away from zero, in i128.
    fn oracle(acc: i32, multiplier: i32, shift: i32) -> i128 {
        let num = acc as i128 * multiplier as i128;
        let e = 31 - shift; // value = num / 2^e
        if e <= 0 {
            return num << (-e);
        }
        let d = 1i128 << e;
        let q = num / d;
        let r = num % d;
        if 2 * r.abs() >= d {
            q + num.signum()
        } else {
            q
        }
    }

    #[test]
    fn known_values() {
        // Multiplier 0.5 (2^30), shift 0: the doubling high multiply rounds ties up (toward
        // +infinity), as gemmlowp / TFLM do: 1.5 -> 2, -1.5 -> -1.
        assert_eq!(requantize(3, 1 << 30, 0), 2);
        assert_eq!(requantize(-3, 1 << 30, 0), -1);
        // The power-of-two division rounds ties away from zero: 1.5 -> 2, -1.5 -> -2.
        assert_eq!(requantize(4, 1 << 30, 0), 2);
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(-4, 1), -2);
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(requantize(0, 1_234_567_890, -5), 0);
        // Positive shift: x * 2^3 * 0.75.
        assert_eq!(requantize(100, 1_610_612_736, 3), 600);
    }

    #[test]
    fn quantize_multiplier_roundtrips() {
        for &real in &[
            0.75,
            0.5,
            0.0039215686,
            1.0 / 3.0,
            1.5,
            2e-6,
            0.999_999_999_9,
        ] {
            let (m, s) = quantize_multiplier(real);
            assert!((1 << 30..=i32::MAX).contains(&m), "{real}: {m}");
            let back = m as f64 * 2f64.powi(s - 31);
            assert!((back - real).abs() <= real * 1e-9, "{real}: {back}");
        }
        assert_eq!(quantize_multiplier(0.0), (0, 0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn equals_the_tflm_rule(
            acc in prop_oneof![any::<i32>(), -300i32..300, Just(i32::MIN), Just(i32::MAX)],
            m in prop_oneof![Just(0i32), Just(i32::MAX), (1i32 << 30)..i32::MAX, 0..i32::MAX],
            shift in -31i32..=30,
        ) {
            prop_assert_eq!(requantize(acc, m, shift), requantize_reference(acc, m, shift));
        }

        #[test]
        fn requant_is_requantize_offset_and_clamp(
            acc in prop_oneof![any::<i32>(), -300i32..300],
            m in prop_oneof![Just(0i32), (1i32 << 30)..i32::MAX, 0..i32::MAX],
            shift in -31i8..=30,
            offset in -128i32..128,
            (a, b) in (any::<i8>(), any::<i8>()),
        ) {
            let (min, max) = (a.min(b), a.max(b));
            let want = (requantize_reference(acc, m, shift as i32) + offset).clamp(min as i32, max as i32);
            prop_assert_eq!(Requant::new(m, shift, offset, min, max).apply(acc), want);
        }

        #[test]
        fn within_one_of_the_exact_rounding(acc in any::<i32>(), m in (1i32 << 30)..i32::MAX, shift in -31i32..=0) {
            let got = requantize(acc, m, shift) as i128;
            let want = oracle(acc, m, shift);
            prop_assert!((got - want).abs() <= 1, "acc {acc} m {m} shift {shift}: {got} vs {want}");
        }

        #[test]
        fn exact_when_the_first_rounding_is_exact(a in -(1i32 << 10)..(1i32 << 10), k in 1i32..(1 << 10), shift in -20i32..=0) {
            // acc = a * 2^10 and multiplier = k * 2^21: acc * m / 2^31 = a * k exactly, so only
            // the final division rounds, half away from zero, as the oracle does.
            let (acc, m) = (a << 10, k << 21);
            prop_assert_eq!(requantize(acc, m, shift) as i128, oracle(acc, m, shift));
        }

        #[test]
        fn against_an_f64_oracle_for_typical_layers(acc in -(1i32 << 24)..(1i32 << 24), real in 1e-5f64..0.999) {
            // The export path: a real scale, its fixed-point form, and the float product.
            let (m, s) = quantize_multiplier(real);
            let got = requantize(acc, m, s) as f64;
            let exact = acc as f64 * m as f64 * 2f64.powi(s - 31);
            prop_assert!((got - exact).abs() <= 1.0, "acc {acc} real {real}: {got} vs {exact}");
        }
    }
}
