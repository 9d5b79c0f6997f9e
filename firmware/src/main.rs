//! Classifies the embedded digits with the embedded device model and reports, through
//! semihosting, one line per digit (label, prediction, int8 outputs, SysTick ticks), the
//! per-layer ticks of the first digit, an FNV-1a checksum of all outputs and the stack
//! high-water mark of one inference. Exits 0 when every digit ran, 1 on any error or fault.
//!
//! Under `qemu-system-arm -icount shift=0` one instruction takes 1 ns of virtual time, so
//! `ticks * 1e9 / clock_hz` is the instruction count (40 per tick on mps2-an386).
#![no_std]
#![no_main]

use core::ffi::CStr;
use cortex_m::peripheral::{SYST, syst::SystClkSource};
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::debug;
use device_infer::{Error, Model, argmax};

mod mem;
#[cfg(feature = "selftest")]
mod selftest;

mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
use config::*;

/// Validated while this crate compiles: a bad model is a build error, and no validation code
/// is left in flash.
static MODEL: Model<'static> =
    device_infer::include_model!(concat!(env!("OUT_DIR"), "/model.lnq8"));
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

/// The activations (the model's arena, sized by the build script from the model's header).
static mut ARENA: [i8; ARENA_LEN] = [0; ARENA_LEN];

fn run() -> Result<(), ()> {
    // SAFETY: the firmware's only use of the core peripherals, and no interrupt is enabled.
    let mut syst = unsafe { cortex_m::Peripherals::steal() }.SYST;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(0x00FF_FFFF);
    syst.clear_current();
    syst.enable_counter();

    #[cfg(feature = "selftest")]
    {
        const CASES: u32 = 300;
        let buffers = cortex_m::singleton!(: selftest::Buffers = selftest::BUFFERS).ok_or(())?;
        if let Err(case) = selftest::run(buffers, CASES) {
            num(c"error: selftest case ", case);
            print(c" differs from the reference kernels\n");
            return Err(());
        }
        num(c"selftest ", CASES);
        print(c" ok\n");
    }

    let model = &MODEL;
    // SAFETY: `run` is entered once (from `main`), so this is the only reference to ARENA.
    // (A reference to a `static mut` must go through a raw pointer in Rust 2024.)
    #[allow(clippy::deref_addrof)]
    let arena: &mut [i8] = unsafe { &mut *(&raw mut ARENA) };
    print(c"fw board=");
    print(BOARD);
    num(c" clock_hz=", CLOCK_HZ);
    print(c"\n");

    let mut checksum: u32 = 0x811C_9DC5;
    let mut layer_ticks = [0u32; MAX_LAYERS];
    let mut stack_used = 0;
    for (i, record) in DIGITS.chunks_exact(1 + INPUT_LEN).enumerate() {
        let (label, pixels) = (record[0], &record[1..]);
        let slot = model.input_slot(arena).map_err(fail)?;
        model.quantize_input(pixels, slot).map_err(fail)?;
        let first = i == 0;
        if first {
            paint_stack();
            bench_start();
        }
        let t0 = now();
        let mut last = t0;
        let result = model.run_static(arena, |layer, y| {
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
        let y = result.map_err(fail)?;
        num(c"digit ", i as u32);
        num(c" label ", label as u32);
        num(c" pred ", argmax(y) as u32);
        num(c" ticks ", ticks);
        print(c" out");
        for &v in y {
            checksum = (checksum ^ v as u8 as u32).wrapping_mul(0x0100_0193);
            let key = if v < 0 { c" -" } else { c" " };
            num(key, v.unsigned_abs() as u32);
        }
        print(c"\n");
    }
    for (i, &t) in layer_ticks.iter().take(model.layers() as usize).enumerate() {
        num(c"layer ", i as u32);
        num(c" ticks ", t);
        print(c"\n");
    }
    num(c"checksum ", checksum);
    num(c"\nstack_hwm ", stack_used as u32);
    print(c"\ndone\n");
    Ok(())
}

/// Semihosting output without `core::fmt` (which would cost kilobytes of flash): C strings
/// through SYS_WRITE0 (no file handle to open) and unsigned decimals.
fn print(s: &CStr) {
    // SAFETY: SYS_WRITE0 reads the NUL-terminated string at the address given.
    unsafe { cortex_m_semihosting::syscall1!(WRITE0, s.as_ptr()) };
}

/// `key` then `v` in decimal.
#[inline(never)]
fn num(key: &CStr, mut v: u32) {
    print(key);
    // Digits from the end (a u32 has at most 10); the last byte stays 0, the terminator.
    let mut buf = [0u8; 11];
    let mut start = 0;
    for (at, d) in buf[..10].iter_mut().enumerate().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
        start = at;
        if v == 0 {
            break;
        }
    }
    // SAFETY: as in `print`: the bytes from `start` end with the 0 byte.
    unsafe { cortex_m_semihosting::syscall1!(WRITE0, buf.as_ptr().wrapping_add(start)) };
}

/// Reports a failed run (the host reads the line and fails). The model was validated at
/// compile time and the arena and digits are sized from it, so this does not happen; one
/// generic line keeps the error messages out of flash.
fn fail(_: Error) {
    print(c"error: arena or input size does not match the model\n");
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

/// The device interrupt table: the firmware enables no interrupt, and the linker script wants
/// at least one entry. (Without cortex-m-rt's `device` feature it would hold 240, 960 bytes of
/// flash on the M4.)
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
pub static __INTERRUPTS: [unsafe extern "C" fn(); 1] = [default_irq];

/// What the one interrupt vector points at: an interrupt nobody enabled is a fault.
unsafe extern "C" fn default_irq() {
    debug::exit(debug::EXIT_FAILURE);
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    die(c"error: hard fault\n")
}

/// Prints `msg` and exits with failure.
fn die(msg: &CStr) -> ! {
    print(msg);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // No message formatting: it would pull core::fmt into the image.
    die(c"error: panic\n")
}
