//! Every vCPU: each secondary thread the tree lists (`ibm,ppc-interrupt-server#s` of each
//! `/cpus` node) is started through RTAS `start-cpu`, reports in (PIR, its own memory, a
//! shared atomic counter), exchanges timebase readings with the boot processor, and stops
//! itself (`stop-self`, confirmed with `query-cpu-stopped-state`), so that a kernel booted
//! next finds every secondary stopped, as on a fresh partition. One of them then cedes
//! (H_CEDE) and is woken by the boot processor's H_PROD. Nothing is printed while a
//! secondary runs: the lines come after every thread stopped (or was given up on).

use crate::report;
use crate::smp::{self, Arrival, Secondary, SmpError, Tokens, COUNTER, INCREMENTS, WORDS};
use crate::{arch, time};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use vioboot_core::inventory::Inventory;
use vioboot_core::options::Inject;

/// Most threads vioboot starts (more in the tree is a failure that names the count).
const MAX_THREADS: usize = 1024;
/// How long all secondaries together may take to come up.
const ARRIVAL_US: u64 = 5_000_000;
/// How long one command (a timebase request, a stop) may take.
const COMMAND_US: u64 = 1_000_000;
/// Timebase exchanges per secondary.
const EXCHANGES: usize = 4;
/// How long the boot processor lets a ceding secondary sit before prodding it.
const SETTLE_US: u64 = 2_000;

/// What one secondary showed, for its report line.
struct Seen {
    server: u32,
    result: Result<String, String>,
}

/// Runs the checks; `boot_cpuid` is the boot processor the tree's header names.
/// `vioboot.inject=lost-cpu` starts the first secondary on a loop that never reports in.
pub fn run(inv: &Inventory, boot_cpuid: u32, inject: Option<Inject>) {
    let servers: Vec<u32> = inv
        .cpus
        .iter()
        .flat_map(|c| c.servers.iter().copied())
        .collect();
    let unique: BTreeSet<u32> = servers.iter().copied().collect();
    if servers.is_empty() {
        report::fail(
            "cpus",
            "the device tree lists no processor under /cpus",
            &[],
        );
        return skip_cede("no processors listed");
    }
    if unique.len() != servers.len() {
        report::fail(
            "cpus",
            &format!(
                "interrupt server numbers repeat across /cpus: {}",
                hex_list(&servers)
            ),
            &[],
        );
        return skip_cede("the processors could not be told apart");
    }
    if servers.len() > MAX_THREADS {
        report::fail(
            "cpus",
            &format!(
                "{} threads listed, more than the {MAX_THREADS} vioboot starts",
                servers.len()
            ),
            &[],
        );
        return skip_cede("too many threads");
    }
    let token = |n| inv.rtas.as_ref().and_then(|r| r.token(n));
    let query = token("query-cpu-stopped-state");
    let boot = boot_thread(&servers, boot_cpuid, query);
    let own_pir = arch::pir();
    if servers.len() == 1 {
        report::pass(
            "cpus",
            format_args!(
                "one thread ({:#x}, PIR {own_pir:#x}): no secondaries to start",
                servers[0]
            ),
        );
        return skip_cede("a single vCPU: no other processor to prod");
    }
    let (Some(start_cpu), Some(stop_self)) = (token("start-cpu"), token("stop-self")) else {
        report::skip("cpus", "/rtas has no start-cpu or stop-self");
        return skip_cede("no secondaries were started");
    };
    let tokens = Tokens {
        start_cpu,
        stop_self,
        query_stopped: query,
    };
    let Some(boot) = boot else {
        report::fail(
            "cpus",
            &format!(
                "cannot tell the boot thread: boot_cpuid_phys {boot_cpuid:#x} is not listed and \
                 query-cpu-stopped-state names no single running thread among {}",
                hex_list(&servers)
            ),
            &[],
        );
        return skip_cede("the boot thread is unknown");
    };

    // Start every secondary, add the boot processor's share to the counter meanwhile, and
    // take each one's arrival.
    COUNTER.store(0, Ordering::SeqCst);
    smp::REPRODS.store(0, Ordering::SeqCst);
    smp::STOP_REWAKES.store(0, Ordering::SeqCst);
    let mut seen: Vec<Seen> = Vec::new();
    let mut running: Vec<(Secondary, Arrival)> = Vec::new();
    let mut started = Vec::new();
    let mut lost = inject == Some(Inject::LostCpu);
    let idle_cede = arch::owns_vectors();
    for &server in servers.iter().filter(|&&s| s != boot) {
        let r = smp::start(server, tokens, lost, idle_cede);
        lost = false;
        match r {
            Ok(s) => started.push(s),
            Err(e) => seen.push(Seen {
                server,
                result: Err(format!("{e}")),
            }),
        }
    }
    for _ in 0..INCREMENTS {
        COUNTER.fetch_add(1, Ordering::Relaxed);
    }
    let deadline = time::now_us() + ARRIVAL_US;
    for s in started {
        let left = deadline.saturating_sub(time::now_us());
        match s.arrival(left) {
            Ok(a) => running.push((s, a)),
            // A thread that never came up keeps its slot and stack (dropped: leaked).
            Err(e) => seen.push(Seen {
                server: s.server,
                result: Err(format!("{e}")),
            }),
        }
    }
    let all_up = seen.is_empty();
    let counter = COUNTER.load(Ordering::SeqCst);
    let expected = INCREMENTS * (1 + running.len() as u64);

    // Timebases, then a cede and prod with the first secondary, then stop them all.
    let mut tb_results = Vec::new();
    for (s, _) in running.iter_mut() {
        tb_results.push(timebase(s));
    }
    let cede = running.first_mut().map(|(s, _)| (s.server, cede_check(s)));
    let mut pirs = BTreeSet::new();
    pirs.insert(own_pir);
    for ((s, a), tb) in running.into_iter().zip(tb_results) {
        let server = s.server;
        pirs.insert(a.pir);
        let stop = s.stop(query, COMMAND_US);
        seen.push(Seen {
            server,
            result: secondary_line(&a, tb, stop, query.is_some()),
        });
    }
    seen.sort_by_key(|s| s.server);

    for s in &seen {
        let name = format!("cpu {:#x}", s.server);
        match &s.result {
            Ok(d) => report::pass(&name, format_args!("{d}")),
            Err(e) => report::fail(&name, e, &[]),
        }
    }
    let arrived_ok = seen.iter().all(|s| s.result.is_ok());
    // PAPR does not tie PIR to the interrupt server number (QEMU's TCG leaves it 0 in every
    // thread): it is reported, not judged.
    let summary = format!(
        "{} threads: boot {boot:#x} and {} secondaries started, reported in and stopped; \
         shared counter {counter} after {INCREMENTS} atomic increments each; {} distinct PIR(s); \
         {} H_PROD(s) repeated for a thread idle in H_CEDE that did not wake within 10 ms{}",
        servers.len(),
        servers.len() - 1,
        pirs.len(),
        smp::REPRODS.load(Ordering::Relaxed),
        match smp::STOP_REWAKES.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!("; {n} stop-self call(s) woken by such an H_PROD and made again"),
        }
    );
    if all_up && counter != expected {
        report::fail(
            "cpus",
            &format!(
                "the shared counter reads {counter}, not {expected}: an atomic increment was lost"
            ),
            &[],
        );
    } else if !arrived_ok {
        let bad: Vec<String> = seen
            .iter()
            .filter(|s| s.result.is_err())
            .map(|s| format!("{:#x}", s.server))
            .collect();
        report::fail(
            "cpus",
            &format!(
                "{} of {} secondaries failed: {}",
                bad.len(),
                servers.len() - 1,
                bad.join(", ")
            ),
            &[],
        );
    } else {
        report::pass("cpus", format_args!("{summary}"));
    }
    match cede {
        None => report::skip(
            "cede-prod",
            "no secondary came up to cede",
        ),
        Some((_, Err(Skip(reason)))) => report::skip("cede-prod", &reason),
        Some((server, Ok(r))) => match r {
            Ok(c) => report::pass(
                "cede-prod",
                format_args!(
                    "thread {server:#x} ceded and woke {} us after H_PROD ({} early H_CEDE returns)",
                    c.wake_us, c.returns_before_prod
                ),
            ),
            Err(e) => report::fail("cede-prod", &format!("thread {server:#x}: {e}"), &[]),
        },
    }
}

fn hex_list(v: &[u32]) -> String {
    let v: Vec<String> = v.iter().map(|x| format!("{x:#x}")).collect();
    v.join(", ")
}

fn skip_cede(reason: &str) {
    report::skip("cede-prod", reason);
}

/// A reason the cede check does not apply.
struct Skip(String);

fn cede_check(s: &mut Secondary) -> Result<Result<smp::Cede, smp::CedeError>, Skip> {
    if !arch::owns_vectors() {
        return Err(Skip(
            "vioboot's vectors are not live with little-endian interrupts: H_CEDE's MSR[EE] \
             would let an interrupt reach code that is not vioboot's"
                .into(),
        ));
    }
    match s.cede_and_prod(SETTLE_US, COMMAND_US) {
        Err(smp::CedeError::Cede(st)) if st == papr::status::H_FUNCTION => {
            Err(Skip("H_CEDE is not offered (H_FUNCTION)".into()))
        }
        r => Ok(r),
    }
}

/// The boot thread: with `query-cpu-stopped-state`, the thread it says is running, the
/// header's `boot_cpuid_phys` when several are (a tree flattened from an OF walk may carry 0
/// there); without it, `boot_cpuid_phys` when the tree lists it.
pub(crate) fn boot_thread(servers: &[u32], boot_cpuid: u32, query: Option<u32>) -> Option<u32> {
    let Some(query) = query else {
        return servers.contains(&boot_cpuid).then_some(boot_cpuid);
    };
    let running: Vec<u32> = servers
        .iter()
        .copied()
        .filter(|&s| smp::query_stopped(query, s).is_ok_and(|st| st == 2))
        .collect();
    match running[..] {
        [one] => Some(one),
        _ if running.contains(&boot_cpuid) => Some(boot_cpuid),
        _ => None,
    }
}

/// Timebase exchanges with one secondary: the tightest bound on the difference, or the
/// exchange that showed the clocks apart.
fn timebase(s: &mut Secondary) -> Result<u64, String> {
    let mut best = u64::MAX;
    for _ in 0..EXCHANGES {
        let (before, theirs, after) = s
            .timebase_exchange(COMMAND_US)
            .map_err(|e| format!("{e}"))?;
        if theirs < before || theirs > after {
            let skew = if theirs < before {
                format!("{} ticks behind", before - theirs)
            } else {
                format!("{} ticks ahead", theirs - after)
            };
            return Err(format!(
                "its timebase {theirs:#x} lies outside the boot processor's {before:#x}..{after:#x} ({skew})"
            ));
        }
        best = best.min(after - before);
    }
    Ok(best)
}

fn secondary_line(
    a: &Arrival,
    tb: Result<u64, String>,
    stop: Result<(), SmpError>,
    confirmed: bool,
) -> Result<String, String> {
    let mut problems = Vec::new();
    if !a.words_ok {
        problems.push(format!("its {WORDS} words did not hold what it wrote"));
    }
    if !a.words_seen {
        problems.push(format!(
            "the boot processor does not read the {WORDS} words it wrote"
        ));
    }
    let tb = match tb {
        Ok(t) => format!(
            "timebase within {} us of the boot processor's ({EXCHANGES} exchanges)",
            time::ticks_to_us(t).max(1)
        ),
        Err(e) => {
            problems.push(e);
            String::new()
        }
    };
    if let Err(e) = stop {
        problems.push(format!("{e}"));
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(format!(
        "PIR {:#x}, {tb}, {WORDS} words written and read on both sides, stopped{}",
        a.pir,
        if confirmed {
            " (query-cpu-stopped-state)"
        } else {
            " (no query-cpu-stopped-state to confirm)"
        }
    ))
}
