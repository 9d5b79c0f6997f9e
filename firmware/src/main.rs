//! Classifies the embedded digits with the embedded device model and reports, through
//! semihosting, one line per digit (label, prediction, int8 outputs, SysTick ticks), the
//! per-layer ticks of the first digit, an FNV-1a checksum of all outputs and the stack
//! high-water mark of one inference. Exits 0 when every digit ran, 1 on any error or fault.
//!
//! Under `qemu-system-arm -icount shift=0` one instruction takes 1 ns of virtual time, so
//! `ticks * 1e9 / clock_hz` is the instruction count (40 per tick on mps2-an386).
#![no_std]
#![no_main]

use core::fmt::Write;

use cortex_m::peripheral::{SYST, syst::SystClkSource};
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hio};
use device_infer::{Model, argmax};

mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
use config::*;

static MODEL: &[u8] = device_infer::include_model!(concat!(env!("OUT_DIR"), "/model.lnq8"));
static DIGITS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/digits.bin"));

const STACK_PAINT: u32 = 0x5AFE_C0DE;
const MAX_LAYERS: usize = 32;

/// Marks for the qemu-insncount plugin (`start=`/`stop=` addresses): they bracket the first
/// digit's inference.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bench_start() {
    cortex_m::asm::nop();
}
/// See [`bench_start`].
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn bench_stop() {
    // Not the same body as `bench_start`, or the linker folds the two into one address.
    cortex_m::asm::nop();
    cortex_m::asm::nop();
}

#[entry]
fn main() -> ! {
    let code = match run() {
        Ok(()) => debug::EXIT_SUCCESS,
        Err(()) => debug::EXIT_FAILURE,
    };
    debug::exit(code);
    loop {
        cortex_m::asm::bkpt();
    }
}

fn run() -> Result<(), ()> {
    let mut out = hio::hstdout()?;
    let mut cp = cortex_m::Peripherals::take().ok_or(())?;
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(0x00FF_FFFF);
    cp.SYST.clear_current();
    cp.SYST.enable_counter();

    let model = match Model::from_bytes(MODEL) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return Err(());
        }
    };
    let arena: &'static mut [i8; ARENA_LEN] =
        cortex_m::singleton!(: [i8; ARENA_LEN] = [0; ARENA_LEN]).ok_or(())?;
    writeln!(
        out,
        "fw board={BOARD} clock_hz={CLOCK_HZ} digits={DIGIT_COUNT} arena={} layers={} outputs={OUTPUTS}",
        model.arena_len(),
        model.layers()
    )
    .map_err(drop)?;

    let mut checksum: u32 = 0x811C_9DC5;
    let mut correct = 0usize;
    let mut layer_ticks = [0u32; MAX_LAYERS];
    let mut stack_used = 0usize;
    for (i, record) in DIGITS.chunks_exact(1 + INPUT_LEN).enumerate() {
        let (label, pixels) = (record[0], &record[1..]);
        if let Err(e) = model.quantize_input(pixels, model.input_slot(arena).map_err(drop)?) {
            let _ = writeln!(out, "error: {e}");
            return Err(());
        }
        let first = i == 0;
        if first {
            paint_stack();
            bench_start();
        }
        let t0 = now();
        let mut last = t0;
        let result = model.run_in_place(arena, |layer, y| {
            if first {
                // The layer's outputs are all written before the clock is read.
                core::hint::black_box(y);
                let t = now();
                if let Some(slot) = layer_ticks.get_mut(layer as usize) {
                    *slot = last.wrapping_sub(t) & 0x00FF_FFFF;
                }
                last = now();
            }
        });
        let ticks = t0.wrapping_sub(now()) & 0x00FF_FFFF;
        if first {
            bench_stop();
            stack_used = stack_high_water();
        }
        let y = match result {
            Ok(y) => y,
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                return Err(());
            }
        };
        let pred = argmax(y);
        correct += usize::from(pred == label as usize);
        write!(out, "digit {i} label {label} pred {pred} ticks {ticks} out").map_err(drop)?;
        for &v in y {
            checksum = (checksum ^ v as u8 as u32).wrapping_mul(0x0100_0193);
            write!(out, " {v}").map_err(drop)?;
        }
        writeln!(out).map_err(drop)?;
    }
    for (i, t) in layer_ticks.iter().take(model.layers() as usize).enumerate() {
        writeln!(out, "layer {i} ticks {t}").map_err(drop)?;
    }
    writeln!(out, "correct {correct}/{DIGIT_COUNT}").map_err(drop)?;
    writeln!(out, "checksum 0x{checksum:08x}").map_err(drop)?;
    writeln!(out, "stack_hwm {stack_used}").map_err(drop)?;
    writeln!(out, "done").map_err(drop)?;
    Ok(())
}

/// SysTick's current value (it counts down), read where it stands in program order: the
/// compiler may not move memory accesses of the inference across it.
#[inline(always)]
fn now() -> u32 {
    use core::sync::atomic::{Ordering, compiler_fence};
    compiler_fence(Ordering::SeqCst);
    let t = SYST::get_current();
    compiler_fence(Ordering::SeqCst);
    t
}

unsafe extern "C" {
    static __sheap: u32;
    static _stack_start: u32;
}

/// Fills the free stack below the current frame with a pattern.
#[inline(never)]
fn paint_stack() {
    let bottom = (&raw const __sheap) as usize;
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = bottom.next_multiple_of(4);
    // Leave this function's own frame alone.
    while p + 64 < sp {
        // SAFETY: [__sheap, sp - 64) is free RAM between the statics and the live stack; nothing
        // else uses it (no heap) and the writes are aligned u32s.
        unsafe { core::ptr::write_volatile(p as *mut u32, STACK_PAINT) };
        p += 4;
    }
}

/// Bytes of stack ever used: from the top of RAM down to the lowest word that lost its paint.
#[inline(never)]
fn stack_high_water() -> usize {
    let bottom = (&raw const __sheap) as usize;
    let top = (&raw const _stack_start) as usize;
    let mut p = bottom.next_multiple_of(4);
    // SAFETY: as in `paint_stack`, aligned reads of RAM below the live stack.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == STACK_PAINT {
        p += 4;
    }
    top - p
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    if let Ok(mut out) = hio::hstdout() {
        let _ = writeln!(out, "error: hard fault");
    }
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Ok(mut out) = hio::hstdout() {
        let _ = writeln!(out, "error: panic: {info}");
    }
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
