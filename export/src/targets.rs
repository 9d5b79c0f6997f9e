//! Target parts: flash and RAM budgets the int8 model must fit.

/// A microcontroller (or emulated board) with its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// The name `--target` takes.
    pub name: &'static str,
    /// Core and example part.
    pub core: &'static str,
    /// Flash bytes.
    pub flash: usize,
    /// RAM bytes.
    pub ram: usize,
}

/// Flash reserved for the runtime and the firmware glue (code, constant tables, vectors):
/// measured, an upper bound. The LeNet5-like firmware on the Cortex-M4 with every optional
/// kernel built and the generic layer loop (`run_in_place`): `.text` 10,036 bytes + 247 of
/// other constants + 68 of vectors = 10,351. `export deploy` builds the firmware with only
/// the kernels the model needs and the loop written out for its layers (`run_static`):
/// 5,660 bytes for LeNet5-like (5,408 on the M0).
pub const CODE_RESERVE: usize = 10_752;
/// RAM reserved for the stack and the firmware's own statics: set from the high-water marks
/// `export deploy` measured on the Cortex-M4 two sessions ago, 2,012 bytes for LeNet5-like and
/// 2,564 with the kernel self-test (every kernel, larger shapes); LeNet5-like now takes 1,680.
pub const STACK_RESERVE: usize = 2560;

/// The built-in table, smallest first.
pub const PARTS: &[Part] = &[
    Part {
        name: "cortex-m0plus-32k",
        core: "Cortex-M0+ (e.g. STM32G030F6)",
        flash: 32 * 1024,
        ram: 8 * 1024,
    },
    Part {
        name: "microbit",
        core: "Cortex-M0, nRF51822 (BBC micro:bit v1)",
        flash: 256 * 1024,
        ram: 16 * 1024,
    },
    Part {
        name: "stm32f401",
        core: "Cortex-M4F, STM32F401RE",
        flash: 512 * 1024,
        ram: 96 * 1024,
    },
    Part {
        name: "cortex-m7-1m",
        core: "Cortex-M7 (e.g. STM32F767)",
        flash: 1024 * 1024,
        ram: 512 * 1024,
    },
    Part {
        name: "mps2-an386",
        core: "Cortex-M4F, Arm MPS2 AN386 (QEMU)",
        flash: 4 * 1024 * 1024,
        ram: 4 * 1024 * 1024,
    },
    Part {
        name: "mps2-an500",
        core: "Cortex-M7, Arm MPS2 AN500 (QEMU)",
        flash: 4 * 1024 * 1024,
        ram: 4 * 1024 * 1024,
    },
];

/// Looks a part up by name.
pub fn find(name: &str) -> Option<&'static Part> {
    PARTS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The names, for messages.
pub fn names() -> String {
    PARTS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}
