//! Helpers shared by the unit tests.

/// Deterministic pseudo-random int8 values (xorshift64) for test inputs and weights.
pub fn bytes(n: usize, seed: u64) -> Vec<i8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as i8
        })
        .collect()
}

/// Like [`bytes`], in the symmetric weight range `[-127, 127]`.
pub fn weights(n: usize, seed: u64) -> Vec<i8> {
    bytes(n, seed).into_iter().map(|v| v.max(-127)).collect()
}
