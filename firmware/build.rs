//! Picks the board's memory map and embeds the device model and the digits to classify.
//!
//! Inputs (environment):
//! - `LENET_FW_MODEL`: the device model (`.lnq8`, from `export quantize`).
//! - `LENET_FW_DIGITS`: the digits, records of one label byte + the model's input pixels (u8).
//!
//! One `memory.x` per board is written to OUT_DIR; none may sit in the package root (the linker
//! would find that one first).
use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let boards: Vec<&str> = ["mps2-an386", "mps2-an500", "microbit"]
        .into_iter()
        .filter(|b| {
            env::var_os(format!(
                "CARGO_FEATURE_{}",
                b.to_uppercase().replace('-', "_")
            ))
            .is_some()
        })
        .collect();
    let [board] = boards[..] else {
        panic!(
            "enable exactly one board feature: mps2-an386, mps2-an500 or microbit (got {boards:?})"
        );
    };
    // SysTick runs from the core clock QEMU gives each board.
    let clock_hz: u32 = match board {
        "mps2-an386" | "mps2-an500" => 25_000_000,
        _ => 16_000_000,
    };
    let memory = fs::read(format!("boards/{board}.x")).expect("board memory map");
    fs::write(out.join("memory.x"), memory).expect("write memory.x");
    // cortex-m-rt's `device` feature: the firmware gives its own (one-entry) interrupt table
    // instead of the generic 240 (the M4) or 32 entries; no device handlers to alias.
    fs::write(out.join("device.x"), "/* no device interrupts */\n").expect("write device.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed=boards");

    let model_path = input_file("LENET_FW_MODEL");
    let digits_path = input_file("LENET_FW_DIGITS");
    let model = fs::read(&model_path).unwrap_or_else(|e| panic!("{}: {e}", model_path.display()));
    if model.len() < 48 || &model[..4] != b"LNQ8" {
        panic!(
            "{}: not a device model (run `export quantize`)",
            model_path.display()
        );
    }
    let u16_at = |o: usize| u16::from_le_bytes([model[o], model[o + 1]]) as usize;
    let arena = u32::from_le_bytes(model[16..20].try_into().unwrap()) as usize;
    let input_len = u16_at(28) * u16_at(30) * u16_at(32);
    let digits =
        fs::read(&digits_path).unwrap_or_else(|e| panic!("{}: {e}", digits_path.display()));
    let record = 1 + input_len;
    if digits.is_empty() || !digits.len().is_multiple_of(record) {
        panic!(
            "{}: {} bytes is not a whole number of {record}-byte records (label + {input_len} pixels)",
            digits_path.display(),
            digits.len()
        );
    }
    fs::copy(&model_path, out.join("model.lnq8")).expect("copy model");
    fs::copy(&digits_path, out.join("digits.bin")).expect("copy digits");
    fs::write(
        out.join("config.rs"),
        format!(
            "pub const BOARD: &core::ffi::CStr = c{board:?};\n\
             pub const CLOCK_HZ: u32 = {clock_hz};\n\
             pub const ARENA_LEN: usize = {arena};\n\
             pub const INPUT_LEN: usize = {input_len};\n"
        ),
    )
    .expect("write config.rs");
}

fn input_file(var: &str) -> PathBuf {
    println!("cargo:rerun-if-env-changed={var}");
    let path = PathBuf::from(env::var_os(var).unwrap_or_else(|| {
        panic!("set {var} (the firmware embeds it; `export deploy` sets it for you)")
    }));
    println!("cargo:rerun-if-changed={}", path.display());
    path
}
