//! The bodies of the fuzz targets in `fuzz/` (std only), kept here so that plain `cargo test`
//! replays the committed regression inputs (`fuzz/regressions/`) through the same code. Each
//! body panics only on a bug: an inconsistency between entry points, or a panic inside the
//! crate, which is what the fuzzer looks for.

// A panic here is the signal the fuzzer looks for.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::vec;
use std::vec::Vec;

use crate::model::{Error, Model, crc32};
use crate::writer::AlignedBytes;

/// The largest arena the harness gives a model that validates (a valid model may claim up to
/// 4 GiB; the caller provides the arena on a device, and refusing is its choice).
pub const MAX_ARENA: usize = 16 << 20;

/// `data` with the header's length field and CRC fixed up (when it is long enough to hold
/// them), so that mutations reach the validator behind those accident checks.
pub fn sealed(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.len() >= 16 {
        let len = d.len() as u32;
        d[8..12].copy_from_slice(&len.to_le_bytes());
        let crc = crc32(&d[16..]);
        d[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    d
}

/// Loads `data` as a device model, aligned and one byte off alignment (the same verdict, or
/// `Misaligned` for a valid model), and runs what loads through `run`, `run_traced` and
/// `run_in_place` on a fixed input: the outputs must agree.
pub fn device_model(data: &[u8]) {
    let mem = AlignedBytes::new(data);
    let aligned = Model::from_bytes(mem.as_bytes());
    let off = AlignedBytes::new(&[&[0u8][..], data].concat());
    let shifted = Model::from_bytes(&off.as_bytes()[1..]);
    match (&aligned, &shifted) {
        (Ok(_), Err(Error::Misaligned)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b, "aligned and misaligned bytes disagree"),
        _ => panic!(
            "aligned: {:?}, misaligned: {:?}",
            aligned.err(),
            shifted.err()
        ),
    }
    let Ok(m) = aligned else {
        // Every error has a message.
        let _ = std::format!("{}", aligned.err().unwrap_or(Error::NotAModel));
        return;
    };
    if m.arena_len() > MAX_ARENA {
        return;
    }
    let n = m.input_dims().len();
    let x: Vec<i8> = (0..n).map(|i| (i * 37 % 251) as i8).collect();
    let mut arena = vec![0i8; m.arena_len()];
    let first = m
        .run(&x, &mut arena)
        .expect("a validated model runs")
        .to_vec();
    assert_eq!(first.len(), m.outputs(), "output length");
    let mut layers = 0;
    let traced = m
        .run_traced(&x, &mut arena, |_, _| layers += 1)
        .expect("a validated model runs traced")
        .to_vec();
    assert_eq!(traced, first, "run_traced differs from run");
    assert_eq!(layers, m.layers() as usize, "one trace per layer");
    let slot = m.input_slot(&mut arena).expect("the arena holds the input");
    slot.copy_from_slice(&x);
    let in_place = m
        .run_in_place(&mut arena, |_, _| {})
        .expect("runs in place");
    assert_eq!(in_place, &first[..], "run_in_place differs from run");
    // Too small an arena and a wrong input length are errors, not panics.
    if m.arena_len() > 0 {
        let mut small = vec![0i8; m.arena_len() - 1];
        assert!(m.run(&x, &mut small).is_err());
    }
    assert!(m.run(&x[..n.saturating_sub(1)], &mut arena).is_err() || n == 0);
}

/// The fields of the format a structured mutation may set: (offset, width in bytes). Header
/// fields first (arena length, buffer split, layer and output counts, input dims, zero points,
/// input quantization, table offset), then the fields of a layer entry, relative to it.
const HEADER_FIELDS: [(usize, usize); 14] = [
    (16, 4),
    (20, 4),
    (24, 2),
    (26, 2),
    (28, 2),
    (30, 2),
    (32, 2),
    (34, 1),
    (35, 1),
    (36, 4),
    (40, 1),
    (41, 1),
    (44, 4),
    (8, 4),
];
const ENTRY_FIELDS: [(usize, usize); 28] = [
    (0, 1),
    (1, 1),
    (2, 2),
    (4, 2),
    (6, 2),
    (8, 2),
    (10, 2),
    (12, 2),
    (14, 1),
    (15, 1),
    (16, 1),
    (17, 1),
    (18, 1),
    (19, 1),
    (20, 4),
    (24, 4),
    (28, 1),
    (29, 1),
    (30, 1),
    (32, 4),
    (36, 4),
    (40, 4),
    (44, 4),
    (48, 4),
    (52, 4),
    (56, 4),
    (60, 1),
    (61, 1),
];

/// A valid model (`base`) with hostile fields: `data` is read as records of 6 bytes (field,
/// layer, value as u32), each setting one header or entry field; the result is re-sealed and
/// loaded as [`device_model`] does. A structured target: raw bytes would spend their time on
/// the magic and the CRC.
pub fn device_model_fields(base: &[u8], data: &[u8]) {
    let mut f = base.to_vec();
    for rec in data.chunks_exact(6) {
        let (field, layer) = (rec[0] as usize, rec[1] as usize);
        let value = u32::from_le_bytes([rec[2], rec[3], rec[4], rec[5]]);
        let all = HEADER_FIELDS.len() + ENTRY_FIELDS.len();
        let (at, width) = match field % all {
            i if i < HEADER_FIELDS.len() => HEADER_FIELDS[i],
            i => {
                let (off, w) = ENTRY_FIELDS[i - HEADER_FIELDS.len()];
                (48 + (layer % 4) * 64 + off, w)
            }
        };
        if let Some(dst) = f.get_mut(at..at + width) {
            dst.copy_from_slice(&value.to_le_bytes()[..width]);
        }
    }
    device_model(&sealed(&f));
}
