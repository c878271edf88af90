//! The vTPM end to end: vioboot in Debian's QEMU (its tpm-spapr device; the project's own
//! QEMU build has no TPM) with a software TPM (swtpm) behind it, under SLOF and as -bios: the
//! adapter line, the TPM line (manufacturer, family, banks) and the PCR 16 extend round trip
//! checked against vioboot's own SHA-256, nothing left mapped.
//!
//! Needs the image (`cargo xtask image`) and Debian's `swtpm` (`cargo xtask test` installs it).

use std::path::PathBuf;
use std::time::Duration;
use vioboot_harness::{Boot, Qemu, Run, Swtpm};

const TIMEOUT: Duration = Duration::from_secs(180);
/// The vTPM's unit: low byte 0x04, clear of vty, nvram, l-lan and v-scsi.
const UNIT: u32 = 0x7100_0004;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/test-vtpm").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn smoke(boot: Boot, name: &str) -> Run {
    let dir = vioboot_harness::image_dir(&root());
    assert!(
        dir.join("vioboot.elf").exists(),
        "no image: run `cargo xtask image` first"
    );
    let tpm = Swtpm::start(&scratch(name)).expect("swtpm");
    let mut q = Qemu::new(boot, dir);
    // Debian's QEMU: it has tpm-spapr.
    q.binary = vioboot_harness::qemu_binary();
    q.extra.extend(tpm.qemu_args(UNIT));
    vioboot_harness::run(&q, TIMEOUT).expect("QEMU runs")
}

fn line(run: &Run, check: &str) -> String {
    run.report()
        .check(check)
        .map(|l| l.description.clone())
        .unwrap_or_else(|| panic!("no `{check}` line:\n{}", run.output))
}

fn assert_tpm(run: &Run) {
    let r = run.report();
    assert!(!run.timed_out(), "QEMU timed out:\n{}", run.output);
    assert!(r.is_complete(), "incomplete report:\n{}", run.output);
    assert!(
        r.failures().is_empty(),
        "{:?}:\n{}",
        r.failures(),
        run.output
    );
    assert_eq!(r.verdict, Some(true), "{}", run.output);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output);
    let a = line(run, "vtpm@71000004");
    assert!(a.contains("TPM 2.0, 4096-byte command buffer"), "{a}");
    let t = line(run, "vtpm@71000004 tpm");
    assert!(t.contains("manufacturer \"IBM\", family \"2.0\""), "{t}");
    assert!(t.contains("sha256 active"), "{t}");
    let e = line(run, "vtpm@71000004 extend");
    assert!(
        e.contains("PCR 16 sha256") && e.ends_with("as computed"),
        "{e}"
    );
    let u = line(run, "vtpm@71000004 unmapped");
    assert!(u.contains("0 protocol errors"), "{u}");
    line(run, "vtpm@71000004 shutdown");
}

#[test]
fn smoke_under_slof() {
    let run = smoke(Boot::Slof, "slof");
    assert_tpm(&run);
    // SLOF starts the TPM itself.
    assert!(line(&run, "vtpm@71000004 tpm").contains("already started"));
}

#[test]
fn smoke_as_bios() {
    let run = smoke(Boot::Bios, "bios");
    assert_tpm(&run);
    // Nobody started it before vioboot.
    assert!(line(&run, "vtpm@71000004 tpm").contains("Startup(SU_CLEAR) done"));
}
