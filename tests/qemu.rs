//! Boots the built image in qemu-system-ppc64 for every entry path and asserts on its console:
//! the TAP report, the inventory, the verdict line and QEMU's exit status, which must agree.
//!
//! Needs `target/image` (`cargo xtask image`; `cargo xtask test` builds it first).

use std::path::PathBuf;
use std::time::Duration;
use vioboot_harness::{Boot, Qemu, Run};

const TIMEOUT: Duration = Duration::from_secs(120);

fn image_dir() -> PathBuf {
    let dir = vioboot_harness::image_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    assert!(
        dir.join("vioboot.elf").exists() && dir.join("vioboot.bin").exists(),
        "{} has no image: run `cargo xtask image` (or `cargo xtask test`) first",
        dir.display()
    );
    dir
}

fn boot(q: Qemu) -> Run {
    let run = vioboot_harness::run(&q, TIMEOUT).expect("QEMU starts");
    assert!(
        !run.timed_out(),
        "QEMU did not finish in {TIMEOUT:?}:\n{}",
        run.output
    );
    run
}

/// A run that passed: exit 0, a complete report, verdict PASS, no failing line.
fn assert_pass(run: &Run) {
    let r = run.report();
    assert!(r.is_complete(), "incomplete TAP report:\n{}", run.output);
    assert_eq!(
        r.verdict,
        Some(true),
        "verdict is not PASS:\n{}",
        run.output
    );
    assert!(
        r.failures().is_empty(),
        "failing checks {:?}:\n{}",
        r.failures(),
        run.output
    );
    assert_eq!(
        run.exit_code(),
        Some(0),
        "QEMU exit status:\n{}",
        run.output
    );
    assert!(
        run.output.contains("# vioboot: powering off"),
        "{}",
        run.output
    );
}

/// A run that failed: exit 1 (ibm,os-term), verdict FAIL, and the named check failing.
fn assert_fail(run: &Run, check: &str) {
    let r = run.report();
    assert_eq!(
        r.verdict,
        Some(false),
        "verdict is not FAIL:\n{}",
        run.output
    );
    assert!(
        r.check(check).is_some_and(|l| !l.ok),
        "check `{check}` did not fail:\n{}",
        run.output
    );
    assert_eq!(
        run.exit_code(),
        Some(1),
        "QEMU exit status:\n{}",
        run.output
    );
    assert!(
        run.output.contains("OS terminated: vioboot"),
        "{}",
        run.output
    );
}

fn line<'a>(run: &'a Run, check: &str) -> &'a str {
    let r = run.report();
    let l = r
        .check(check)
        .unwrap_or_else(|| panic!("no `{check}` line:\n{}", run.output));
    let at = run.output.find(&l.description).unwrap_or(0);
    &run.output[at..at + l.description.len()]
}

/// What every full boot on QEMU pseries must show in its inventory.
fn assert_inventory(run: &Run) {
    for want in [
        "# memory    0x0..0x40000000  1024 MiB",
        "# vdevice   vty@71000000",
        "unit 0x71000000 compatible hvterm1",
        "# cpu       PowerPC,",
    ] {
        assert!(
            run.output.contains(want),
            "inventory lacks `{want}`:\n{}",
            run.output
        );
    }
    assert!(line(run, "rtas").contains("tokens"), "{}", run.output);
    assert!(
        line(run, "hcall").contains("H_PARAMETER (-4)"),
        "{}",
        run.output
    );
    for phase in ["entry", "memory", "fdt", "inventory", "checks", "total"] {
        assert!(
            run.output.contains(&format!("# phase {phase}: ")),
            "no time for phase {phase}:\n{}",
            run.output
        );
    }
}

#[test]
fn slof_boots_to_a_passing_report() {
    let run = boot(Qemu::new(Boot::Slof, image_dir()));
    assert_pass(&run);
    assert_inventory(&run);
    assert!(
        line(&run, "entry").starts_with("entry: Open Firmware client interface at 0x400000"),
        "{}",
        run.output
    );
    assert!(
        line(&run, "fdt").contains("from Open Firmware fdt-fetch"),
        "{}",
        run.output
    );
    assert!(
        line(&run, "rtas").contains("called by H_RTAS"),
        "{}",
        run.output
    );
    assert!(
        line(&run, "quiesce").contains("console on hvterm 0x71000000"),
        "{}",
        run.output
    );
}

#[test]
fn vof_boots_by_walking_the_tree() {
    let run = boot(Qemu::new(Boot::Vof, image_dir()));
    assert_pass(&run);
    assert_inventory(&run);
    assert!(
        line(&run, "fdt").contains("from a walk of the Open Firmware tree"),
        "{}",
        run.output
    );
}

#[test]
fn bios_boots_without_firmware() {
    let run = boot(Qemu::new(Boot::Bios, image_dir()));
    assert_pass(&run);
    assert_inventory(&run);
    assert!(
        line(&run, "entry").starts_with("entry: flattened device tree at 0x0"),
        "{}",
        run.output
    );
    assert!(
        line(&run, "fdt").contains("from r3 at entry"),
        "{}",
        run.output
    );
    assert!(
        run.report().check("quiesce").is_none(),
        "nothing to quiesce without OF:\n{}",
        run.output
    );
}

#[test]
fn boots_at_another_load_address() {
    let run = boot(Qemu::new(Boot::Slof, image_dir()).kernel_addr(0x200_0000));
    assert_pass(&run);
    assert!(
        line(&run, "entry").contains("at 0x2000000, image 0x2000000.."),
        "{}",
        run.output
    );
}

#[test]
fn vof_at_another_load_address() {
    let run = boot(Qemu::new(Boot::Vof, image_dir()).kernel_addr(0x1230000));
    assert_pass(&run);
    assert!(
        line(&run, "entry").contains("at 0x1230000"),
        "{}",
        run.output
    );
}

#[test]
fn slof_walk_and_rtas_through_open_firmware() {
    // What PowerVM needs: no fdt-fetch, RTAS instantiated through OF and entered big-endian.
    let run = boot(
        Qemu::new(Boot::Slof, image_dir())
            .append("vioboot.fdt=walk vioboot.rtas=of vioboot.log=debug"),
    );
    assert_pass(&run);
    assert_inventory(&run);
    assert!(
        line(&run, "fdt").contains("from a walk of the Open Firmware tree"),
        "{}",
        run.output
    );
    assert!(
        line(&run, "rtas").contains("called by instantiated at"),
        "{}",
        run.output
    );
    assert!(
        line(&run, "options").starts_with("options: 3 vioboot options"),
        "{}",
        run.output
    );
}

#[test]
fn options_reach_vioboot_without_firmware() {
    let run = boot(Qemu::new(Boot::Bios, image_dir()).append("vioboot.log=debug console=hvc0"));
    assert_pass(&run);
    assert!(
        line(&run, "options").starts_with("options: 1 vioboot options, 1 kernel words"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("DEBUG"),
        "vioboot.log=debug had no effect:\n{}",
        run.output
    );
}

/// Every deliberate failure ends as a failing report and os-term (exit 1), whichever way
/// vioboot was booted: an unexpected interrupt too, under Open Firmware (whose vectors vioboot
/// replaces while it runs) as without it.
#[test]
fn every_injected_failure_exits_1_under_every_entry_path() {
    for boot_path in [Boot::Slof, Boot::Vof, Boot::Bios] {
        let run = boot(Qemu::new(boot_path, image_dir()).append("vioboot.inject=fail"));
        assert_fail(&run, "inject");
        assert!(run.report().is_complete(), "{}", run.output);
        assert!(
            run.output
                .contains("  message: \"failure injected by vioboot.inject=fail\""),
            "{}",
            run.output
        );

        let run = boot(Qemu::new(boot_path, image_dir()).append("vioboot.inject=panic"));
        assert_fail(&run, "panic");
        for want in [
            "# vioboot: PANIC at src/main.rs:",
            "Bail out! panic at src/main.rs:",
        ] {
            assert!(run.output.contains(want), "{want}:\n{}", run.output);
        }

        let run = boot(Qemu::new(boot_path, image_dir()).append("vioboot.inject=exception"));
        assert_fail(&run, "exception");
        assert!(
            run.output.contains("program interrupt 0x700 at 0x"),
            "{}",
            run.output
        );
    }
}

#[test]
fn unknown_option_is_named_and_fails() {
    let run =
        boot(Qemu::new(Boot::Bios, image_dir()).append("vioboot.colour=red vioboot.log=loud"));
    assert_fail(&run, "options");
    assert!(
        run.output.contains("unknown option `vioboot.colour`"),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("option `vioboot.log` has bad value `loud`"),
        "{}",
        run.output
    );
}

/// The hypervisor and RTAS services a guest relies on, under each entry path; H_RANDOM is a
/// skip without a platform RNG and a check with one.
#[test]
fn hypervisor_and_rtas_services() {
    for boot_path in [Boot::Bios, Boot::Slof, Boot::Vof] {
        let run = boot(Qemu::new(boot_path, image_dir()));
        assert_pass(&run);
        for (check, want) in [
            ("vpa", "registered and deregistered a 640-byte VPA"),
            ("h-page-init", "copied a 4 KiB page and zeroed it"),
            ("h-set-sprg0", "read back"),
            ("rtas-time", "set back to itself"),
            ("nvram", "fetched the same"),
            ("term-input", "answers input polls"),
        ] {
            assert!(line(&run, check).contains(want), "{check}:\n{}", run.output);
        }
        let r = run.report();
        let random = r.check("h-random").expect("an h-random line");
        assert!(
            random.ok
                && random
                    .description
                    .contains("# SKIP not offered: H_RANDOM failed: H_FUNCTION"),
            "{}",
            run.output
        );
    }
    let mut q = Qemu::new(Boot::Bios, image_dir());
    q.extra = [
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "spapr-rng,rng=rng0",
    ]
    .map(String::from)
    .to_vec();
    let run = boot(q);
    assert_pass(&run);
    assert!(
        line(&run, "h-random").starts_with("h-random: 0x"),
        "{}",
        run.output
    );
}

/// QEMU's TCG pseries allows one thread per core: several vCPUs are several cores.
fn smp(q: Qemu, n: u32) -> Qemu {
    let mut q = q;
    q.extra
        .extend(["-smp".to_string(), format!("{n},cores={n},threads=1")]);
    q
}

/// Every vCPU under each entry path: each secondary started through RTAS, reported in (its
/// words, the shared atomic counter, timebase exchanges) and stopped again, confirmed by
/// query-cpu-stopped-state; one ceded and was woken by H_PROD; the decrementer fired into
/// vioboot's vector; the quick memory test ran.
#[test]
fn every_vcpu_under_every_entry_path() {
    for boot_path in [Boot::Bios, Boot::Slof, Boot::Vof] {
        let run = boot(smp(Qemu::new(boot_path, image_dir()), 4));
        assert_pass(&run);
        for cpu in ["cpu 0x1", "cpu 0x2", "cpu 0x3"] {
            let l = line(&run, cpu);
            assert!(
                l.contains("timebase within")
                    && l.contains("512 words written and read on both sides")
                    && l.contains("stopped (query-cpu-stopped-state)"),
                "{cpu} under {}:\n{}",
                boot_path.name(),
                run.output
            );
        }
        assert!(
            line(&run, "cpus").contains(
                "4 threads: boot 0x0 and 3 secondaries started, reported in and stopped; \
                 shared counter 20000 after 5000 atomic increments each"
            ),
            "{}",
            run.output
        );
        assert!(
            line(&run, "cede-prod").contains("thread 0x1 ceded and woke"),
            "{}",
            run.output
        );
        assert!(
            line(&run, "decrementer").contains("taken at vector 0x900"),
            "{}",
            run.output
        );
        assert!(
            line(&run, "memtest").starts_with("memtest: quick: 2048 KiB in 8 blocks"),
            "{}",
            run.output
        );
        assert_interrupts(&run, 4);
    }
}

/// The external-interrupt lines of a passing run with `n` vCPUs (QEMU's default v-scsi
/// adapter at 0x71000003, source 0x1103, raises the device interrupt with its answer to MAD
/// ADAPTER_INFO): XICS found, an IPI to
/// the boot thread itself, one to each secondary, the adapter's interrupt, and the counts.
fn assert_interrupts(run: &Run, n: u32) {
    let xics = line(run, "xics");
    assert!(
        xics.contains("interrupt-controller is XICS (no CAS")
            && xics.contains(&format!(
                "{n} servers in ibm,interrupt-server-ranges [(0, {n})]; boot thread 0x0"
            )),
        "{}",
        run.output
    );
    let own = line(run, "ipi-self");
    assert!(
        own.contains("taken at vector 0x500 after")
            && own.contains("XIRR 0xff000002 (source 2, IPI), MFRR cleared, H_EOI"),
        "{}",
        run.output
    );
    if n > 1 {
        assert!(
            line(run, "ipi").starts_with(&format!(
                "ipi: {0} of {0} secondaries took H_IPI from the boot thread 0x0 at vector 0x500 \
                 (XIRR source 2), cleared their MFRR and ended it with H_EOI",
                n - 1
            )),
            "{}",
            run.output
        );
    } else {
        let r = run.report();
        let ipi = r.check("ipi").expect("an ipi line");
        assert!(
            ipi.ok && ipi.description.contains("# SKIP a single vCPU"),
            "{}",
            run.output
        );
    }
    let vio = line(run, "vio-irq");
    assert!(
        vio.contains("v-scsi@71000003: source 0x1103 routed to server 0x0 at priority 5")
            && vio.contains("taken at vector 0x500 after")
            && vio.contains(
                "XIRR 0xff001103, H_EOI; MAD ADAPTER_INFO answered (partition \"qemu\", SRP \
                 version 16.a)"
            )
            && vio.contains("signalling off and the source masked"),
        "{}",
        run.output
    );
    assert!(
        line(run, "external-interrupts").starts_with(&format!(
            "external-interrupts: {} taken at vector 0x500 ({n} IPIs, 1 device interrupts); \
             0 spurious and 0 unknown accepts counted and ended with H_EOI; CPPR 0 and MFRR \
             cleared on every thread, sources masked",
            n + 1
        )),
        "{}",
        run.output
    );
}

/// External interrupts with one and with eight vCPUs under every entry path (four: above).
#[test]
fn external_interrupts_with_one_and_eight_vcpus_under_every_entry_path() {
    for boot_path in [Boot::Bios, Boot::Slof, Boot::Vof] {
        for n in [1, 8] {
            let run = boot(smp(Qemu::new(boot_path, image_dir()), n));
            assert_pass(&run);
            assert_interrupts(&run, n);
        }
    }
}

/// An IPI that never arrives (sent masked: `vioboot.inject=lost-ipi`) is a named failure
/// within the bound, the other secondaries still take theirs, and the run ends.
#[test]
fn an_ipi_that_never_arrives_is_a_named_failure() {
    let run = boot(smp(
        Qemu::new(Boot::Bios, image_dir()).append("vioboot.inject=lost-ipi"),
        3,
    ));
    assert_fail(&run, "ipi");
    assert!(
        line(&run, "ipi").contains(
            "1 of 2 secondaries took their IPI; thread 0x1: no IPI reached vector 0x500 within \
             1000 ms of H_IPI"
        ),
        "{}",
        run.output
    );
    // The device interrupt and the clean-up still ran.
    assert!(
        run.report().check("vio-irq").is_some_and(|l| l.ok),
        "{}",
        run.output
    );
    assert!(
        line(&run, "external-interrupts").contains("CPPR 0 and MFRR cleared on every thread"),
        "{}",
        run.output
    );
}

/// With XIVE as the machine's only controller (`ic-mode=xive`: the tree names
/// `ibm,power-ivpe` and no XICS) every external-interrupt check is a skip that says why.
#[test]
fn a_xive_only_machine_skips_the_external_interrupts() {
    let mut q = smp(Qemu::new(Boot::Bios, image_dir()), 2);
    // -machine options merge: this one joins the harness's `-M pseries`.
    q.extra
        .extend(["-M".to_string(), "ic-mode=xive".to_string()]);
    let run = boot(q);
    assert_pass(&run);
    let r = run.report();
    for name in ["xics", "ipi-self", "ipi", "vio-irq"] {
        let l = r
            .check(name)
            .unwrap_or_else(|| panic!("no {name} line:\n{}", run.output));
        assert!(
            l.ok && l
                .description
                .contains("# SKIP the interrupt controller is XIVE (ibm,power-ivpe"),
            "{}",
            run.output
        );
    }
}

/// Eight vCPUs without firmware: every one accounted for.
#[test]
fn eight_vcpus() {
    let run = boot(smp(Qemu::new(Boot::Bios, image_dir()), 8));
    assert_pass(&run);
    for n in 1..8 {
        assert!(
            line(&run, &format!("cpu {n:#x}")).contains("stopped (query-cpu-stopped-state)"),
            "{}",
            run.output
        );
    }
    assert!(
        line(&run, "cpus").contains(
            "8 threads: boot 0x0 and 7 secondaries started, reported in and stopped; \
             shared counter 40000"
        ),
        "{}",
        run.output
    );
}

/// One vCPU: nothing to start, and H_CEDE/H_PROD is a skip that says why.
#[test]
fn a_single_vcpu_has_no_secondaries_to_start() {
    let run = boot(Qemu::new(Boot::Bios, image_dir()));
    assert_pass(&run);
    assert!(
        line(&run, "cpus").contains("one thread (0x0"),
        "{}",
        run.output
    );
    let r = run.report();
    let cede = r.check("cede-prod").expect("a cede-prod line");
    assert!(
        cede.ok && cede.description.contains("# SKIP a single vCPU"),
        "{}",
        run.output
    );
}

/// A secondary that never reports in is a named failure within the arrival timeout, the
/// others are still checked, and the run ends (os-term, exit 1) instead of hanging.
#[test]
fn a_vcpu_that_never_comes_up_is_a_named_failure() {
    let run = boot(smp(
        Qemu::new(Boot::Bios, image_dir()).append("vioboot.inject=lost-cpu"),
        3,
    ));
    assert_fail(&run, "cpu 0x1");
    assert!(
        line(&run, "cpu 0x1").contains("thread 0x1 did not come up within"),
        "{}",
        run.output
    );
    assert!(
        line(&run, "cpu 0x2").contains("stopped (query-cpu-stopped-state)"),
        "{}",
        run.output
    );
    assert!(
        line(&run, "cpus").contains("1 of 2 secondaries failed: 0x1"),
        "{}",
        run.output
    );
    // The IPI check names the thread that is still running and still sends the other its IPI.
    assert!(
        line(&run, "ipi").contains(
            "1 of 2 secondaries took their IPI; thread 0x1 is not stopped \
             (query-cpu-stopped-state 2): no IPI sent"
        ),
        "{}",
        run.output
    );
}

/// vioboot.memtest: a size in MiB, the whole of free memory, or none.
#[test]
fn memtest_sizes() {
    let run = boot(Qemu::new(Boot::Bios, image_dir()).append("vioboot.memtest=8"));
    assert_pass(&run);
    assert!(
        line(&run, "memtest").starts_with("memtest: 8 MiB: 8192 KiB in 32 blocks"),
        "{}",
        run.output
    );
    let mut q = Qemu::new(Boot::Slof, image_dir()).append("vioboot.memtest=full");
    q.memory = "256M".into();
    let run = boot(q);
    assert_pass(&run);
    let l = line(&run, "memtest");
    assert!(l.starts_with("memtest: full: "), "{}", run.output);
    let run = boot(Qemu::new(Boot::Bios, image_dir()).append("vioboot.memtest=0"));
    assert_pass(&run);
    assert!(
        run.report()
            .check("memtest")
            .is_some_and(|l| l.description.contains("# SKIP vioboot.memtest=0")),
        "{}",
        run.output
    );
}

/// `vioboot.checks` chooses the groups that run: the others are one skip line each, and the
/// platform checks always run.
#[test]
fn checks_are_chosen_by_group() {
    let run = boot(smp(
        Qemu::new(Boot::Bios, image_dir()).append("vioboot.checks=cpus,memory"),
        2,
    ));
    assert_pass(&run);
    let r = run.report();
    for g in ["services", "interrupts", "devices"] {
        let l = r
            .check(g)
            .unwrap_or_else(|| panic!("no {g} line:\n{}", run.output));
        assert!(
            l.ok && l
                .description
                .ends_with("# SKIP not chosen by vioboot.checks"),
            "{}",
            l.description
        );
    }
    // The chosen groups ran; the platform checks ran; no device was opened.
    assert!(line(&run, "cpus").contains("2 threads"), "{}", run.output);
    assert!(r.check("memtest").is_some_and(|l| l.ok), "{}", run.output);
    assert!(r.check("rtas").is_some_and(|l| l.ok), "{}", run.output);
    assert!(r.check("vpa").is_none(), "{}", run.output);
    assert!(!run.output.contains("v-scsi@71000003:"), "{}", run.output);
    // A group that does not exist is a named option failure.
    let bad = boot(Qemu::new(Boot::Bios, image_dir()).append("vioboot.checks=cpu"));
    assert_fail(&bad, "options");
    assert!(
        line(&bad, "options").contains("option `vioboot.checks` has bad value `cpu`"),
        "{}",
        bad.output
    );
}
