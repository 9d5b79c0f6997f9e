//! A QEMU TCG plugin that counts executed guest instructions exactly.
//!
//! Load it with `-plugin libqemu_insncount.so[,start=ADDR,stop=ADDR] -d plugin`. Every executed
//! guest instruction bumps one counter (an inline add QEMU emits into the translated code, so
//! the count is exact and costs little). When the instruction at `start` executes the counter
//! is noted; when the one at `stop` executes, the instructions since then are printed as
//! `insncount: region #N = X insns`. At exit it prints `insncount: total = X insns`.
//!
//! `profile=FILE` also counts each instruction address on its own (one more inline add per
//! instruction) and writes `address count` lines, hex and decimal, most executed first, to
//! FILE at exit: with `llvm-objdump -d` of the ELF, where a kernel spends its instructions.
//!
//! It speaks the plugin ABI of QEMU 7.2 (plugin API version 1), declared by hand below, so it
//! builds without QEMU's headers. One vCPU is assumed (user mode runs one guest thread here; the
//! counter is a plain add, as QEMU's inline ops are). The addresses' low bit is ignored (Thumb).

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The plugin API version this plugin was written against (QEMU 7.2's `QEMU_PLUGIN_VERSION`).
#[unsafe(no_mangle)]
pub static qemu_plugin_version: c_int = 1;

type PluginId = u64;

/// `struct qemu_plugin_tb` and `struct qemu_plugin_insn`: opaque.
#[repr(C)]
struct Tb {
    _opaque: [u8; 0],
}
#[repr(C)]
struct Insn {
    _opaque: [u8; 0],
}

/// `enum qemu_plugin_cb_flags`: QEMU_PLUGIN_CB_NO_REGS.
const CB_NO_REGS: c_int = 0;
/// `enum qemu_plugin_op`: QEMU_PLUGIN_INLINE_ADD_U64.
const INLINE_ADD_U64: c_int = 0;

type TbTransCb = extern "C" fn(PluginId, *mut Tb);
type VcpuUdataCb = extern "C" fn(c_uint, *mut c_void);
type UdataCb = extern "C" fn(PluginId, *mut c_void);

unsafe extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: TbTransCb);
    fn qemu_plugin_tb_n_insns(tb: *const Tb) -> usize;
    fn qemu_plugin_tb_get_insn(tb: *const Tb, idx: usize) -> *mut Insn;
    fn qemu_plugin_insn_vaddr(insn: *const Insn) -> u64;
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Insn,
        cb: VcpuUdataCb,
        flags: c_int,
        userdata: *mut c_void,
    );
    fn qemu_plugin_register_vcpu_insn_exec_inline(
        insn: *mut Insn,
        op: c_int,
        ptr: *mut c_void,
        imm: u64,
    );
    fn qemu_plugin_register_atexit_cb(id: PluginId, cb: UdataCb, userdata: *mut c_void);
    fn qemu_plugin_outs(string: *const c_char);
}

/// Executed instructions so far (QEMU adds to it from the translated code).
static TOTAL: AtomicU64 = AtomicU64::new(0);
/// `TOTAL` when the start marker last executed.
static AT_START: AtomicU64 = AtomicU64::new(0);
/// Regions reported so far.
static REGIONS: AtomicU64 = AtomicU64::new(0);
static START: AtomicU64 = AtomicU64::new(u64::MAX);
static STOP: AtomicU64 = AtomicU64::new(u64::MAX);
/// `profile=FILE`: where to write the per-address counts, and the counters (boxed, so their
/// addresses, which the translated code adds to, never move).
static PROFILE: Mutex<Option<Profile>> = Mutex::new(None);
/// The output path and a counter per instruction address.
type Profile = (String, HashMap<u64, Box<u64>>);

fn outs(line: &str) {
    if let Ok(s) = CString::new(line) {
        // SAFETY: a NUL-terminated string that outlives the call; QEMU copies it.
        unsafe { qemu_plugin_outs(s.as_ptr()) }
    }
}

extern "C" fn on_start(_vcpu: c_uint, _u: *mut c_void) {
    AT_START.store(TOTAL.load(Ordering::Relaxed), Ordering::Relaxed);
}

extern "C" fn on_stop(_vcpu: c_uint, _u: *mut c_void) {
    let n = TOTAL.load(Ordering::Relaxed) - AT_START.load(Ordering::Relaxed);
    let i = REGIONS.fetch_add(1, Ordering::Relaxed);
    outs(&format!("insncount: region #{i} = {n} insns\n"));
}

extern "C" fn tb_trans(_id: PluginId, tb: *mut Tb) {
    let (start, stop) = (START.load(Ordering::Relaxed), STOP.load(Ordering::Relaxed));
    let mut profile = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: `tb` and its instructions are valid for the duration of this callback, which is
    // where QEMU allows registering per-instruction callbacks.
    unsafe {
        for i in 0..qemu_plugin_tb_n_insns(tb) {
            let insn = qemu_plugin_tb_get_insn(tb, i);
            let va = qemu_plugin_insn_vaddr(insn) & !1;
            // Marker callbacks run before the instruction's own count is added.
            if va == start {
                qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_start,
                    CB_NO_REGS,
                    std::ptr::null_mut(),
                );
            }
            if va == stop {
                qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_stop,
                    CB_NO_REGS,
                    std::ptr::null_mut(),
                );
            }
            qemu_plugin_register_vcpu_insn_exec_inline(
                insn,
                INLINE_ADD_U64,
                TOTAL.as_ptr().cast(),
                1,
            );
            if let Some((_, counts)) = profile.as_mut() {
                let c: *mut u64 = &mut **counts.entry(va).or_insert_with(|| Box::new(0));
                qemu_plugin_register_vcpu_insn_exec_inline(insn, INLINE_ADD_U64, c.cast(), 1);
            }
        }
    }
}

extern "C" fn at_exit(_id: PluginId, _u: *mut c_void) {
    outs(&format!(
        "insncount: total = {} insns\n",
        TOTAL.load(Ordering::Relaxed)
    ));
    let profile = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, counts)) = profile.as_ref() {
        let mut rows: Vec<(u64, u64)> = counts.iter().map(|(&a, c)| (a, **c)).collect();
        rows.sort_by_key(|&(a, c)| (std::cmp::Reverse(c), a));
        let text: String = rows.iter().map(|(a, c)| format!("{a:x} {c}\n")).collect();
        if let Err(e) = std::fs::write(path, text) {
            outs(&format!("insncount: cannot write {path}: {e}\n"));
        }
    }
}

/// `start=0x..` / `stop=0x..` (hex with 0x, else decimal).
fn parse_addr(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Called by QEMU when it loads the plugin.
///
/// # Safety
/// QEMU passes `argc` valid NUL-terminated strings in `argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qemu_plugin_install(
    id: PluginId,
    _info: *const c_void,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    for i in 0..argc.max(0) as usize {
        // SAFETY: QEMU's contract above.
        let arg = unsafe { CStr::from_ptr(*argv.add(i)) }.to_string_lossy();
        if let Some(path) = arg.strip_prefix("profile=") {
            *PROFILE.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((path.to_string(), HashMap::new()));
            continue;
        }
        let (slot, value) = if let Some(v) = arg.strip_prefix("start=") {
            (&START, v)
        } else if let Some(v) = arg.strip_prefix("stop=") {
            (&STOP, v)
        } else {
            outs(&format!("insncount: unknown argument {arg:?}\n"));
            return -1;
        };
        match parse_addr(value) {
            Some(a) => slot.store(a & !1, Ordering::Relaxed),
            None => {
                outs(&format!("insncount: bad address in {arg:?}\n"));
                return -1;
            }
        }
    }
    // SAFETY: registering callbacks with the id QEMU gave us.
    unsafe {
        qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
        qemu_plugin_register_atexit_cb(id, at_exit, std::ptr::null_mut());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::parse_addr;

    #[test]
    fn addresses_parse_in_hex_and_decimal() {
        assert_eq!(parse_addr("0x4000f0"), Some(0x4000f0));
        assert_eq!(parse_addr("0XFF"), Some(255));
        assert_eq!(parse_addr("4096"), Some(4096));
        assert_eq!(parse_addr("0xzz"), None);
        assert_eq!(parse_addr(""), None);
    }
}
