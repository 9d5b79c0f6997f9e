//! Hostile device models (docs/reliability.md, cases 1-9): each a valid small model
//! (`fuzz/seeds/device_model/conv-max-dense.lnq8`: a 3x3 conv + max pool, 6x6x1 -> 3x3x2, then
//! dense 18 -> 3) with one field made malicious and the length and CRC re-sealed, so that only
//! the validator stands between the bytes and the kernels. Each must be refused with the error
//! that names its guard (a test fails if that guard is removed: the model then loads, or fails
//! later for another reason), and the fuzz harness's run of it must not panic.

use device_infer::fuzzing::{device_model, sealed};
use device_infer::writer::AlignedBytes;
use device_infer::{Error, Model};

/// Header length and layer-entry length of the format.
const HEADER: usize = 48;
const ENTRY: usize = 64;

fn base() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/seeds/device_model/conv-max-dense.lnq8"
    );
    std::fs::read(path).unwrap()
}

/// Offset of field `at` of layer `layer`'s entry.
fn field(layer: usize, at: usize) -> usize {
    HEADER + layer * ENTRY + at
}

fn put_u32(f: &mut [u8], at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(f: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(f[at..at + 4].try_into().unwrap())
}

fn put_u16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Loads `f` re-sealed (a correct length and CRC over the malicious content), returns the
/// error's message, and runs the fuzz harness on it (which panics on any inconsistency).
fn refused(f: &[u8]) -> String {
    let s = sealed(f);
    device_model(&s);
    let mem = AlignedBytes::new(&s);
    match Model::from_bytes(mem.as_bytes()) {
        Ok(_) => panic!("a malicious model loaded"),
        Err(e) => {
            assert!(
                !matches!(e, Error::Crc { .. } | Error::Length { .. }),
                "stopped by the accident checks, not the validator: {e}"
            );
            e.to_string()
        }
    }
}

fn with(edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut f = base();
    edit(&mut f);
    refused(&f)
}

#[test]
fn the_base_model_loads_and_runs() {
    let f = base();
    let mem = AlignedBytes::new(&f);
    let m = Model::from_bytes(mem.as_bytes()).unwrap();
    assert_eq!((m.layers(), m.outputs(), m.input_dims().len()), (2, 3, 36));
    device_model(&f);
}

#[test]
fn case1_offsets_and_buffer_indices_out_of_range() {
    // Weights, bias, multipliers, shifts and the table pointing past the end, or at -1.
    for v in [u32::MAX, 0x7FFF_FFFF] {
        assert_eq!(
            with(|f| put_u32(f, field(0, 32), v)),
            "invalid layer 0: weights out of the file"
        );
        assert_eq!(
            with(|f| put_u32(f, field(1, 40), v & !3)),
            "invalid layer 1: bias out of the file or misaligned"
        );
        assert_eq!(
            with(|f| put_u32(f, field(0, 48), v & !3)),
            "invalid layer 0: multipliers out of the file or misaligned"
        );
        assert_eq!(
            with(|f| put_u32(f, field(0, 52), v)),
            "invalid layer 0: shifts out of the file"
        );
        assert_eq!(
            with(|f| {
                f[field(0, 30)] = 1;
                put_u32(f, field(0, 56), v);
            }),
            "invalid layer 0: lookup table out of the file"
        );
    }
    // An array that starts inside the file and runs past its end.
    assert_eq!(
        with(|f| {
            let end = f.len() as u32;
            put_u32(f, field(1, 32), end - 10);
        }),
        "invalid layer 1: weights out of the file"
    );
    // Misaligned i32 arrays.
    assert_eq!(
        with(|f| {
            let b = get_u32(f, field(0, 40));
            put_u32(f, field(0, 40), b + 1);
        }),
        "invalid layer 0: bias out of the file or misaligned"
    );
    // Arena buffer indices out of range.
    for (read, write) in [(255, 1), (0, 7), (2, 1)] {
        assert_eq!(
            with(|f| {
                f[field(0, 60)] = read;
                f[field(0, 61)] = write;
            }),
            "invalid layer 0: arena buffers"
        );
    }
    // More layers than the file holds.
    assert_eq!(
        with(|f| put_u16(f, 24, 0xFFFF)),
        "invalid model header: layer count"
    );
}

#[test]
fn case2_shape_products_that_would_overflow() {
    // A 255 x 255 kernel over 65,535 x 65,535 x 65,535 inputs (2.8e14 values; on a 32-bit part
    // `volume` is already None), output sizes consistent: refused before the filter bank's
    // 4.3e9 x 2 weights are counted or an accumulator could overflow.
    let e = with(|f| {
        for at in [2, 4, 6] {
            put_u16(f, field(0, at), 0xFFFF);
        }
        f[field(0, 14)] = 255;
        f[field(0, 15)] = 255;
        f[field(0, 18)] = 0;
        f[field(0, 19)] = 0;
        put_u16(f, field(0, 8), (0xFFFF - 254) / 2);
        put_u16(f, field(0, 10), (0xFFFF - 254) / 2);
    });
    assert_eq!(
        e,
        "invalid layer 0: filter volume could overflow the accumulator"
    );
    // A dense layer over 65,535 x 65,535 inputs.
    let e = with(|f| {
        put_u16(f, field(1, 2), 0xFFFF);
        put_u16(f, field(1, 4), 0xFFFF);
    });
    assert_eq!(e, "invalid layer 1: dense shape");
    // An arena claimed larger than anything: the buffer split must still fit it.
    let e = with(|f| put_u32(f, 20, !3));
    assert_eq!(e, "invalid model header: arena buffer offset");
}

#[test]
fn case3_payload_length_differs_from_the_shape() {
    for delta in [-1i64, 1, 1000] {
        let e = with(|f| {
            let n = get_u32(f, field(0, 36)) as i64;
            put_u32(f, field(0, 36), (n + delta) as u32);
        });
        assert_eq!(e, "invalid layer 0: weights length", "delta {delta}");
    }
    // Per-channel arrays counted for another number of channels.
    let e = with(|f| put_u32(f, field(0, 44), 3));
    assert_eq!(e, "invalid layer 0: bias count");
}

#[test]
fn case4_a_layer_reading_and_writing_one_buffer() {
    let e = with(|f| {
        f[field(0, 60)] = 0;
        f[field(0, 61)] = 0;
    });
    assert_eq!(e, "invalid layer 0: arena buffers");
    // The chain: layer 1 must read what layer 0 wrote.
    let e = with(|f| f[field(1, 60)] = 0);
    assert_eq!(e, "invalid layer 1: arena buffers");
    // Weights live in the file, activations in the arena: no layer can write over a constant.
}

#[test]
fn case5_quantization_constants_out_of_range() {
    // A negative multiplier (the sign byte of channel 0's), a shift of 31 or -32.
    let e = with(|f| {
        let m = get_u32(f, field(0, 48)) as usize;
        f[m + 3] = 0x80;
    });
    assert_eq!(e, "invalid layer 0: multiplier or shift out of range");
    for shift in [31i8, -32, i8::MIN] {
        let e = with(|f| {
            let s = get_u32(f, field(0, 52)) as usize;
            f[s] = shift as u8;
        });
        assert_eq!(e, "invalid layer 0: multiplier or shift out of range");
    }
    // Zero points out of range, an empty clamp.
    for (at, v) in [
        (20, 300u32),
        (20, (-256i32) as u32),
        (24, 128),
        (24, (-129i32) as u32),
    ] {
        let e = with(|f| put_u32(f, field(0, at), v));
        assert_eq!(e, "invalid layer 0: zero point or clamp out of range");
    }
    let e = with(|f| {
        f[field(0, 28)] = 10;
        f[field(0, 29)] = 9;
    });
    assert_eq!(e, "invalid layer 0: zero point or clamp out of range");
    // The input's quantization.
    let e = with(|f| put_u32(f, 36, 0x8000_0000));
    assert_eq!(e, "invalid model header: input quantization");
    let e = with(|f| f[40] = 31);
    assert_eq!(e, "invalid model header: input quantization");
    // A weight of -128 (the symmetric range is [-127, 127]).
    let e = with(|f| {
        let w = get_u32(f, field(0, 32)) as usize;
        f[w] = 0x80;
    });
    assert_eq!(e, "invalid layer 0: weights must lie in [-127, 127]");
}

#[test]
fn case6_degenerate_windows() {
    // Stride 0, a kernel larger than the padded input, zero channels.
    let e = with(|f| f[field(0, 16)] = 0);
    assert_eq!(e, "invalid layer 0: kernel does not fit the input");
    let e = with(|f| {
        f[field(0, 14)] = 9;
        f[field(0, 15)] = 9;
    });
    assert_eq!(e, "invalid layer 0: kernel does not fit the input");
    // Padding of 255: the output size no longer follows.
    let e = with(|f| f[field(0, 18)] = 255);
    assert_eq!(
        e,
        "invalid layer 0: output size does not follow from the convolution"
    );
    let e = with(|f| put_u16(f, field(0, 12), 0));
    assert_eq!(e, "invalid layer 0: empty activation");
    let e = with(|f| put_u16(f, field(0, 6), 0));
    assert_eq!(e, "invalid layer 0: empty activation");
}

#[test]
fn case7_the_layer_chain_cannot_loop() {
    // The format is a chain: each layer reads its predecessor's buffer and shape, so a cycle
    // or a self-reference is a shape or buffer mismatch.
    // Layer 1 claiming 9x1x2 (as many values as 3x3x2, so its weights still fit).
    let e = with(|f| {
        put_u16(f, field(1, 2), 9);
        put_u16(f, field(1, 4), 1);
    });
    assert_eq!(
        e,
        "invalid layer 1: input shape differs from the previous layer's output"
    );
    // No layers at all.
    let e = with(|f| put_u16(f, 24, 0));
    assert_eq!(e, "invalid model header: layer count");
}

#[test]
fn case8_truncated_at_every_offset() {
    let f = base();
    for n in 0..f.len() {
        let cut = &f[..n];
        // As it is: the accident checks (or the magic) catch it.
        let mem = AlignedBytes::new(cut);
        let e = Model::from_bytes(mem.as_bytes()).unwrap_err();
        assert!(
            matches!(e, Error::NotAModel | Error::Length { .. }),
            "{n}: {e}"
        );
        device_model(cut);
        // Re-sealed: the validator catches it, as some array or entry now runs past the end;
        // only the last byte (alignment padding after the 3 shifts of the dense layer) may go.
        if n >= 16 {
            let s = sealed(cut);
            let mem = AlignedBytes::new(&s);
            let loaded = Model::from_bytes(mem.as_bytes()).is_ok();
            assert_eq!(loaded, n == f.len() - 1, "cut at {n}");
            device_model(&s);
        }
    }
}

#[test]
fn case9_a_correct_crc_over_malicious_content_is_still_refused() {
    // Every case above is sealed (its CRC is right); here one without re-sealing, to show the
    // CRC alone would have stopped it, and the same bytes sealed reaching the validator.
    let mut f = base();
    put_u32(&mut f, field(0, 32), u32::MAX);
    let mem = AlignedBytes::new(&f);
    assert!(matches!(
        Model::from_bytes(mem.as_bytes()),
        Err(Error::Crc { .. })
    ));
    assert_eq!(refused(&f), "invalid layer 0: weights out of the file");
}
