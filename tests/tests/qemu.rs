//! The int8 model on emulated microcontrollers and on the edge box: `export deploy` builds the
//! firmware for the Cortex-M4F (mps2-an386) and the Cortex-M0 (micro:bit), or `lenet-classify`
//! for a Linux AArch64 board, runs it under QEMU, and its outputs must equal device-infer's on
//! the host bit for bit. Needs `qemu-system-arm` and `qemu-user` (scripts/setup.sh installs
//! them), the two thumb targets and `aarch64-unknown-linux-musl`.

use export::deploy::{self, Digit};
use export::edge;
use host_train::data::{self, DatasetKind};
use lenet_tests::{data_root, fixture_dir};

/// A private copy of the golden set's device model (the tests may corrupt it).
fn committed_model(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("model.lnq8");
    std::fs::copy(fixture_dir().join("model.lnq8"), &path).unwrap();
    path
}

fn test_digits(n: usize, skip: usize) -> Vec<Digit> {
    let found = data::locate(DatasetKind::Mnist, Some(&data_root())).unwrap();
    let test = DatasetKind::Mnist.load(&found.dir).unwrap().test;
    (skip..skip + n)
        .map(|i| Digit {
            label: test.labels[i],
            pixels: test.image(i).to_vec(),
        })
        .collect()
}

#[test]
fn firmware_matches_host_bit_for_bit_on_cortex_m4_and_m0() {
    let dir = tempfile::tempdir().unwrap();
    let model = committed_model(dir.path());
    for (board, skip) in [("mps2-an386", 0), ("microbit", 1000)] {
        let digits = test_digits(40, skip);
        let cfg = deploy::Config::new(model.clone(), deploy::find_board(board).unwrap(), digits);
        // LeNet5-like needs no optional kernel: conv+pool and dense only.
        let features = deploy::firmware_features(&cfg, &std::fs::read(&model).unwrap()).unwrap();
        assert_eq!(features, board);
        let r = deploy::deploy(&cfg).unwrap_or_else(|e| panic!("{board}: {e:#}"));
        let text = r.text();
        println!("{text}");
        assert!(
            r.bit_exact(),
            "{board}: board and host differ:\n{}",
            deploy::mismatches(&r, 5)
        );
        assert_eq!(r.run.digits.len(), 40);
        // The checksum the firmware computed agrees with the outputs it printed.
        let mut h: u32 = 0x811C_9DC5;
        for v in r.host_outputs.iter().flatten() {
            h = (h ^ *v as u8 as u32).wrapping_mul(0x0100_0193);
        }
        assert_eq!(r.run.checksum, h, "{board}");
        let correct = r.run.correct();
        assert!(correct >= 38, "{board}: {correct}/40 correct");
        assert_eq!(r.run.layer_ticks.len(), 5, "{board}");
        assert_eq!(r.macs.iter().sum::<u64>(), 416_520);
        // The per-layer ticks add up to the whole inference (the trace costs a few ticks).
        let sum: u64 = r.run.layer_ticks.iter().sum();
        let whole = r.run.digits[0].ticks;
        assert!(
            sum <= whole && whole - sum < 50,
            "{board}: {sum} vs {whole}"
        );
        // RAM budget of the issue: arena + stack <= 4 KB. The golden model's arena overlaps
        // its buffers: 1,576 bytes (1,960 separate).
        assert_eq!(r.arena, 1576);
        assert!(r.sizes.bss >= r.arena);
        assert!(
            r.run.stack_hwm > 100 && r.sizes.bss + r.sizes.data + r.run.stack_hwm <= 4096,
            "{board}: RAM {} + {} + stack {}",
            r.sizes.bss,
            r.sizes.data,
            r.run.stack_hwm
        );
        assert!(r.sizes.rodata >= r.model_bytes + r.digit_bytes);
        // Flash budget of the issue: weights + 6 KB. Code (harness included), other constants
        // and vectors: 5,660 B on the M4, 5,408 B on the M0 when written (M4: 10.9 KB at the
        // start of that session, 16.7 KB the session before).
        assert!(
            r.code_and_tables() <= 6 * 1024,
            "{board}: code and tables {} (.text {})",
            r.code_and_tables(),
            r.sizes.text
        );
        assert!(text.contains("instructions per MAC: "), "{text}");
    }
}

#[test]
fn deploy_rejects_a_corrupt_model_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let model = committed_model(dir.path());
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[200] ^= 0x40;
    std::fs::write(&model, &bytes).unwrap();
    let cfg = deploy::Config::new(
        model,
        deploy::find_board("microbit").unwrap(),
        test_digits(1, 0),
    );
    let e = format!("{:#}", deploy::deploy(&cfg).unwrap_err());
    assert!(e.contains("CRC") || e.contains("corrupt"), "{e}");
    let e = format!("{:#}", deploy::find_board("esp32").unwrap_err());
    assert!(e.contains("mps2-an386") && e.contains("microbit"), "{e}");
}

#[test]
fn kernels_match_their_references_on_random_cases_on_the_boards() {
    // The smlad paths of the Cortex-M4 (and the portable ones on the M0) against the reference
    // kernels, on the target: random shapes, paddings, offsets, tables and pools.
    let dir = tempfile::tempdir().unwrap();
    let model = committed_model(dir.path());
    for board in ["mps2-an386", "mps2-an500", "microbit"] {
        let mut cfg = deploy::Config::new(
            model.clone(),
            deploy::find_board(board).unwrap(),
            test_digits(2, 0),
        );
        cfg.selftest = true;
        let r = deploy::deploy(&cfg).unwrap_or_else(|e| panic!("{board}: {e:#}"));
        assert_eq!(r.run.selftest_cases, Some(300), "{board}");
        assert!(r.bit_exact(), "{board}");
        assert!(
            r.text().contains("kernel self-test on the board: 300"),
            "{board}"
        );
    }
}

#[test]
fn the_plugins_exact_count_agrees_with_systick() {
    // Two independent measures of one inference on the M4: the workspace's TCG plugin between
    // the firmware's markers, and SysTick under -icount shift=0 (40 instructions per tick).
    let dir = tempfile::tempdir().unwrap();
    let model = committed_model(dir.path());
    let mut cfg = deploy::Config::new(
        model,
        deploy::find_board("mps2-an386").unwrap(),
        test_digits(2, 0),
    );
    cfg.plugin = Some(edge::build_plugin(&deploy::project_root(), &cfg.target_dir).unwrap());
    let r = deploy::deploy(&cfg).unwrap();
    let exact = r.run.exact_insns.expect("the plugin's region count");
    let ticks = r.run.digits[0].ticks * 40;
    assert!(
        exact.abs_diff(ticks) <= 80,
        "plugin {exact} vs SysTick {ticks} instructions"
    );
    assert!(r.text().contains("(exact, qemu-insncount)"));
}

#[test]
fn the_classifier_on_linux_aarch64_matches_the_host_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let model = committed_model(dir.path());
    let board = edge::find_board("linux-aarch64").unwrap();
    let cfg = edge::Config::new(model.clone(), board, test_digits(40, 2000));
    let r = edge::deploy(&cfg).unwrap_or_else(|e| panic!("{e:#}"));
    println!("{}", r.text());
    assert!(
        r.bit_exact(),
        "board and host differ:\n{}",
        edge::mismatches(&r, 5)
    );
    assert_eq!(r.run.digits.len(), 40);
    assert!(r.correct() >= 38, "{}/40 correct", r.correct());
    // One exact count per classification; the same code path each time, so they barely vary.
    assert_eq!(r.run.insns.len(), 40);
    let (lo, hi) = (
        *r.run.insns.iter().min().unwrap(),
        *r.run.insns.iter().max().unwrap(),
    );
    assert!(hi - lo < 100, "instructions vary from {lo} to {hi}");
    assert_eq!(r.macs, 416_520);
    // The model is in the binary; a static binary without tract stays small.
    assert!(r.sizes.rodata >= r.model_bytes);
    assert!(
        r.sizes.loaded < r.sizes.file && r.sizes.file < 4 << 20,
        "{:?}",
        r.sizes
    );
    // A corrupt model is refused on the host, before anything is built.
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[200] ^= 0x40;
    std::fs::write(&model, &bytes).unwrap();
    let cfg = edge::Config::new(model, board, test_digits(1, 0));
    let e = format!("{:#}", edge::deploy(&cfg).unwrap_err());
    assert!(e.contains("CRC") || e.contains("corrupt"), "{e}");
    let e = format!("{:#}", deploy::find_board("linux-riscv").unwrap_err());
    assert!(e.contains("linux-aarch64"), "{e}");
}
