//! Turns on the packed 16-bit multiply-accumulate kernels (`smlad`) for Armv7E-M and
//! Armv8-M Mainline with the DSP extension (Cortex-M4, M7, M33 ...); stable Rust has no cfg for
//! the DSP extension, so the target name decides.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(arm_dsp)");
    println!("cargo::rerun-if-env-changed=TARGET");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main") {
        println!("cargo::rustc-cfg=arm_dsp");
    }
}
