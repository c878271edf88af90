//! One disk reached over several paths (adapters of one VIO server or of several, v-scsi or
//! virtio-vio): the block devices whose [`BlockDevice::unique_id`], capacity, block size and
//! first block agree are joined as one, as Linux's dm-multipath joins them by WWID. Requests
//! go to the active path; when it fails as a path (no answer, the transport gone, the logical
//! unit no longer there) the request is sent again, whole, on the next path that is up, and
//! the failover is said on the console and in the report. A request is synchronous and a
//! failed path's command was aborted or its partner is gone before the request moves, so a
//! write is never applied by a path after a newer one. A path that failed is tried again at
//! most every [`REJOIN_US`] (`vioboot.path-probe`): a device its transport gave up is set up
//! again first (a virtio-vio server that came back: a new session, the device reset, new
//! queues, so nothing its old rings held is performed); it rejoins when it is still the same
//! disk (identifier, capacity, block size, block 0 as another path reads it) and answers. A
//! path that comes back as another disk stays out for good, named.

use super::{BlockDevice, Device, DeviceError as Error, TransportStats};
use crate::time;
use crate::vio::vscsi::Failure;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// How long a failed path rests before it is tried again, unless `vioboot.path-probe` says.
pub const REJOIN_US: u64 = 10_000_000;

/// SCSI sense: LOGICAL UNIT NOT SUPPORTED (the LUN is no longer behind this path).
const ASC_LUN_NOT_SUPPORTED: u8 = 0x25;

/// Whether `e` may be the path's rather than the request's: a SCSI ILLEGAL REQUEST or NOT
/// READY (QEMU's v-scsi answers a LUN removed from its bus with ILLEGAL REQUEST, INVALID FIELD
/// IN CDB). The path is then probed: if it cannot read block 0 either, the path failed.
pub fn may_be_path_failure(e: &Error) -> bool {
    match e {
        Error::Vscsi(v) => matches!(
            v.failure,
            Failure::CheckCondition(s)
                if s.key == srp::sense::ILLEGAL_REQUEST || s.key == srp::sense::NOT_READY
        ),
        _ => false,
    }
}

/// Whether `e` says the path failed rather than the disk: a request that failed this way may
/// succeed on another path. A medium error, a request out of range or a write-protected disk
/// would fail on every path and is returned as it is.
pub fn is_path_failure(e: &Error) -> bool {
    use crate::virtio::{QueueError, VioError};
    match e {
        Error::Vscsi(v) => match v.failure {
            Failure::Timeout { .. }
            | Failure::Transport(_)
            | Failure::Crq(_)
            | Failure::Tce(_)
            | Failure::EntryStatus(_)
            | Failure::NoCredit
            | Failure::ShutDown
            | Failure::UnknownTag { .. }
            | Failure::Malformed(_) => true,
            Failure::CheckCondition(s) => {
                s.key == srp::sense::ILLEGAL_REQUEST && s.asc == ASC_LUN_NOT_SUPPORTED
            }
            _ => false,
        },
        Error::Vio(
            VioError::Crq { .. }
            | VioError::Link { .. }
            | VioError::Tce { .. }
            | VioError::TooManyResets { .. }
            | VioError::GaveUp { .. },
        ) => true,
        // A virtio-blk request whose used entry never came, or came for a descriptor not in
        // flight: the path's device was given up (it is set up again when tried again).
        Error::Vio(VioError::Queue {
            error: QueueError::TooFewCompleted { .. } | QueueError::NotInFlight { .. },
            ..
        }) => true,
        _ => false,
    }
}

struct Path {
    dev: Box<dyn BlockDevice>,
    name: String,
    /// `None` while up; why and when it failed (or was last tried) otherwise.
    down: Option<(String, u64)>,
    /// It came back as another disk: it stays out for good.
    foreign: bool,
    /// What the last probe of it answered, when it did not rejoin.
    probe_said: Option<String>,
}

/// Why a failed path did not rejoin when tried.
enum Refused {
    /// It does not answer yet (its server not back, its device not set up again).
    Down(Error),
    /// It answers as another disk.
    Foreign(String),
}

/// A disk and its paths.
pub struct Multipath {
    name: String,
    /// The identifier its paths were joined by, its capacity and block size: what a path
    /// must still show to rejoin.
    id: Option<String>,
    capacity: u64,
    block_size: usize,
    /// How long a failed path rests before it is tried again ([`REJOIN_US`]).
    rejoin_us: u64,
    paths: Vec<Path>,
    active: usize,
    /// Failovers and rejoins, in order, for the report.
    events: Vec<String>,
    failovers: u32,
}

impl Multipath {
    /// Joins `paths` (two or more, already found to be one disk with the identifier `id`) as
    /// the disk `name`.
    pub fn new(name: String, id: Option<String>, paths: Vec<Box<dyn BlockDevice>>) -> Multipath {
        let paths: Vec<Path> = paths
            .into_iter()
            .map(|mut dev| Path {
                name: String::from(dev.as_device().name()),
                dev,
                down: None,
                foreign: false,
                probe_said: None,
            })
            .collect();
        let (capacity, block_size) = paths
            .first()
            .map_or((0, 0), |p| (p.dev.capacity(), p.dev.block_size()));
        Multipath {
            name,
            id,
            capacity,
            block_size,
            rejoin_us: REJOIN_US,
            paths,
            active: 0,
            events: Vec::new(),
            failovers: 0,
        }
    }

    /// Each path's name and state, and the failovers and rejoins so far, for the report.
    pub fn summary(&self) -> String {
        let paths: Vec<String> = self
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| match &p.down {
                None if i == self.active => format!("{} (active)", p.name),
                None => p.name.clone(),
                Some((why, _)) => format!("{} (failed: {why})", p.name),
            })
            .collect();
        format!(
            "{} paths: {}; {} failover(s){}{}",
            self.paths.len(),
            paths.join(", "),
            self.failovers,
            if self.events.is_empty() { "" } else { ": " },
            self.events.join("; ")
        )
    }

    pub fn failovers(&self) -> u32 {
        self.failovers
    }

    /// How long a failed path rests before it is tried again (`vioboot.path-probe`).
    pub fn probe_every(mut self, us: u64) -> Multipath {
        self.rejoin_us = us;
        self
    }

    /// The names of its paths, in order.
    pub fn path_names(&self) -> Vec<&str> {
        self.paths.iter().map(|p| p.name.as_str()).collect()
    }

    /// Tries paths that failed long enough ago: each is set up again where its transport
    /// gave it up, checked to be the same disk, and rejoins when it reads block 0.
    fn rejoin(&mut self) {
        let now = time::now_us();
        for i in 0..self.paths.len() {
            let p = &self.paths[i];
            let Some((why, at)) = &p.down else { continue };
            if p.foreign || now.saturating_sub(*at) < self.rejoin_us {
                continue;
            }
            let why = why.clone();
            let name = p.name.clone();
            match self.try_path(i) {
                Ok(reconnected) => {
                    self.paths[i].down = None;
                    self.paths[i].probe_said = None;
                    let e = if reconnected {
                        format!("{name} set up again (new session, device reset, new queue) and rejoined")
                    } else {
                        format!("{name} rejoined")
                    };
                    crate::cprintln!("# multipath {}: {e}", self.name);
                    self.events.push(e);
                }
                Err(Refused::Down(e)) => {
                    // Said once for each answer, not at every probe.
                    let said = format!("{e}");
                    if self.paths[i].probe_said.as_deref() != Some(said.as_str()) {
                        log::info!("multipath {}: {name} not back yet: {said}", self.name);
                        self.paths[i].probe_said = Some(said);
                    }
                    self.paths[i].down = Some((why, time::now_us()));
                }
                Err(Refused::Foreign(what)) => {
                    let e =
                        format!("{name} answers again but is another disk ({what}): it stays out");
                    crate::cprintln!("# multipath {}: {e}", self.name);
                    self.events.push(e);
                    let p = &mut self.paths[i];
                    p.foreign = true;
                    p.down = Some((format!("another disk: {what}"), now));
                }
            }
        }
    }

    /// Path `i`, failed, set up again if its transport gave it up (whether it was is the
    /// answer), then checked to be this disk: the same identifier, capacity and block size,
    /// and block 0 as it reads it the same as through a path that is up.
    fn try_path(&mut self, i: usize) -> Result<bool, Refused> {
        let reconnected = self.paths[i].dev.reconnect().map_err(Refused::Down)?;
        let d = &mut self.paths[i].dev;
        let mut mine = vec![0u8; d.block_size()];
        d.read(0, &mut mine).map_err(Refused::Down)?;
        if d.capacity() != self.capacity || d.block_size() != self.block_size {
            return Err(Refused::Foreign(format!(
                "{} blocks of {} bytes, the disk has {} of {}",
                d.capacity(),
                d.block_size(),
                self.capacity,
                self.block_size
            )));
        }
        let id = d.unique_id();
        if id != self.id {
            return Err(Refused::Foreign(format!(
                "identifier {}, the disk's is {}",
                id.as_deref().unwrap_or("none"),
                self.id.as_deref().unwrap_or("none")
            )));
        }
        let other = (0..self.paths.len()).find(|&j| j != i && self.paths[j].down.is_none());
        if let Some(j) = other {
            let mut theirs = vec![0u8; self.block_size];
            if self.paths[j].dev.read(0, &mut theirs).is_ok() && theirs != mine {
                return Err(Refused::Foreign(format!(
                    "its block 0 differs from what {} reads",
                    self.paths[j].name
                )));
            }
        }
        Ok(reconnected)
    }

    /// Whether path `i` reads block 0.
    fn answers(&mut self, i: usize) -> bool {
        let d = &mut self.paths[i].dev;
        let mut block = vec![0u8; d.block_size()];
        d.read(0, &mut block).is_ok()
    }

    /// Runs `op` on the active path, failing over to the next path that is up while the
    /// failure is a path's.
    fn each_path(
        &mut self,
        mut op: impl FnMut(&mut dyn BlockDevice) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.paths.iter().any(|p| p.down.is_some()) {
            self.rejoin();
        }
        loop {
            let i = self.active;
            let r = op(self.paths[i].dev.as_mut());
            let e = match r {
                Err(e) if is_path_failure(&e) => e,
                Err(e) if may_be_path_failure(&e) && !self.answers(i) => e,
                r => return r,
            };
            self.paths[i].down = Some((format!("{e}"), time::now_us()));
            let n = self.paths.len();
            let Some(next) = (1..n)
                .map(|k| (i + k) % n)
                .find(|&j| self.paths[j].down.is_none())
            else {
                return Err(e);
            };
            self.failovers += 1;
            let ev = format!(
                "{} failed ({e}), I/O continues on {}",
                self.paths[i].name, self.paths[next].name
            );
            crate::cprintln!("# multipath {}: {ev}", self.name);
            self.events.push(ev);
            self.active = next;
        }
    }
}

impl Device for Multipath {
    fn name(&self) -> &str {
        &self.name
    }

    fn pages_left_mapped(&self) -> usize {
        self.paths.iter().map(|p| p.dev.pages_left_mapped()).sum()
    }

    fn stats(&self) -> TransportStats {
        let mut t = TransportStats::default();
        for p in &self.paths {
            let s = p.dev.stats();
            t.requests += s.requests;
            t.notifies += s.notifies;
            t.received += s.received;
            t.protocol_errors += s.protocol_errors;
            t.resets += s.resets;
            t.migrations += s.migrations;
        }
        t
    }

    /// Shuts every path down; the first failure is returned after all were tried.
    fn shut_down(&mut self) -> Result<(), Error> {
        let mut first = Ok(());
        for p in &mut self.paths {
            let r = p.dev.as_device().shut_down();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn shutdown_detail(&self) -> &'static str {
        "every path shut down"
    }
}

impl BlockDevice for Multipath {
    fn block_size(&self) -> usize {
        self.paths[0].dev.block_size()
    }

    fn capacity(&self) -> u64 {
        self.paths[0].dev.capacity()
    }

    fn read_only(&self) -> bool {
        self.paths.iter().any(|p| p.dev.read_only())
    }

    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.each_path(|d| d.read(block, buf))
    }

    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        self.each_path(|d| d.write(block, buf))
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.each_path(|d| d.flush())
    }

    fn flush_command(&self) -> &'static str {
        self.paths[0].dev.flush_command()
    }

    fn identity(&mut self) -> Result<String, Error> {
        let mut id = String::new();
        self.each_path(|d| {
            id = d.identity()?;
            Ok(())
        })?;
        Ok(id)
    }

    fn unique_id(&mut self) -> Option<String> {
        self.paths[0].dev.unique_id()
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}

/// What joining found: disks of several paths, and the devices left as they were (in order).
pub struct Joined<T> {
    /// Each disk, the index in the input of its first path (where it is reported), and the
    /// indexes of all its paths.
    pub disks: Vec<(usize, Multipath, Vec<usize>)>,
    /// The others, with their index in the input.
    pub rest: Vec<(usize, T)>,
    /// Devices that claim one identity but differ (size or block 0): not joined, named for a
    /// failing check.
    pub conflicts: Vec<String>,
}

/// Joins the block devices among `items` that are one disk: the same unique id, capacity,
/// block size and block 0 (read only where two devices claim one id). `block` gives an item's
/// block device when it is one; `into_block` takes it. A failed path of a disk is tried again
/// every `probe_us`.
pub fn join<T>(
    mut items: Vec<T>,
    probe_us: u64,
    block: impl Fn(&mut T) -> Option<&mut Box<dyn BlockDevice>>,
    into_block: impl Fn(T) -> Option<Box<dyn BlockDevice>>,
) -> Joined<T> {
    let ids: Vec<Option<String>> = items
        .iter_mut()
        .map(|it| block(it).and_then(|b| b.unique_id()))
        .collect();
    let mut group_of: Vec<Option<usize>> = vec![None; items.len()];
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    let mut conflicts = Vec::new();
    for i in 0..items.len() {
        let Some(id) = ids[i].clone() else { continue };
        if group_of[i].is_some() || !ids[i + 1..].contains(&ids[i]) {
            continue;
        }
        let fingerprint = |it: &mut T| {
            let b = block(it)?;
            let mut first = vec![0u8; b.block_size()];
            b.read(0, &mut first).ok()?;
            Some((b.capacity(), b.block_size(), first))
        };
        let Some(mine) = fingerprint(&mut items[i]) else {
            continue;
        };
        let mut g = vec![i];
        for j in i + 1..items.len() {
            if group_of[j].is_some() || ids[j] != ids[i] {
                continue;
            }
            if fingerprint(&mut items[j]).as_ref() == Some(&mine) {
                g.push(j);
            } else {
                conflicts.push(format!(
                    "{id}: two devices name this identity but differ in size or block 0: not joined as one disk"
                ));
            }
        }
        if g.len() > 1 {
            for &m in &g {
                group_of[m] = Some(groups.len());
            }
            groups.push((id, g));
        }
    }
    let mut members: Vec<Vec<Box<dyn BlockDevice>>> = groups.iter().map(|_| Vec::new()).collect();
    let mut rest = Vec::new();
    for (i, it) in items.into_iter().enumerate() {
        match group_of[i] {
            Some(g) => members[g].extend(into_block(it)),
            None => rest.push((i, it)),
        }
    }
    let disks = members
        .into_iter()
        .zip(groups)
        .map(|(paths, (id, g))| {
            let m = Multipath::new(format!("disk {id}"), Some(id), paths).probe_every(probe_us);
            (g[0], m, g)
        })
        .collect();
    Joined {
        disks,
        rest,
        conflicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vio::vscsi::{Recovery, VscsiError};
    use alloc::rc::Rc;
    use core::cell::{Cell, RefCell};
    use srp::sense::{Sense, ILLEGAL_REQUEST, MEDIUM_ERROR};

    const BS: usize = 512;

    /// What a fake path answers.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Works,
        /// No answer (a timeout, the command aborted).
        Silent,
        /// ILLEGAL REQUEST to everything (QEMU's answer for a LUN gone from its bus).
        Gone,
        /// MEDIUM ERROR: the disk's, on every path.
        Medium,
        /// ILLEGAL REQUEST to writes only (a command this disk refuses); reads work.
        RefusesWrites,
    }

    /// A path's transport as a test drives it: whether a failed request gives the device up
    /// (as virtio-vio's does: every later request fails until it is set up again), and
    /// whether setting it up again works now.
    #[derive(Default)]
    struct Life {
        gives_up: bool,
        broken: bool,
        revivable: bool,
        reconnects: usize,
    }

    /// A path to a disk shared with other paths; `after` requests in, it turns to `mode`.
    struct Fake {
        name: String,
        disk: Rc<RefCell<Vec<u8>>>,
        requests: Rc<Cell<usize>>,
        after: usize,
        mode: Rc<Cell<Mode>>,
        life: Rc<RefCell<Life>>,
        /// What it names itself (its unique id).
        ident: Rc<RefCell<String>>,
    }

    fn fake(name: &str, disk: &Rc<RefCell<Vec<u8>>>, after: usize, mode: Rc<Cell<Mode>>) -> Fake {
        Fake {
            name: name.into(),
            disk: disk.clone(),
            requests: Rc::new(Cell::new(0)),
            after,
            mode,
            life: Rc::default(),
            ident: Rc::new(RefCell::new("naa:01".into())),
        }
    }

    fn err(name: &str, f: Failure) -> Error {
        Error::Vscsi(VscsiError {
            device: name.into(),
            op: "READ(10)",
            failure: f,
        })
    }

    impl Fake {
        fn check(&self, write: bool) -> Result<(), Error> {
            let r = self.answer(write);
            let mut life = self.life.borrow_mut();
            if life.broken {
                return Err(Error::Vio(crate::virtio::VioError::GaveUp {
                    adapter: self.name.clone(),
                }));
            }
            if r.as_ref().is_err_and(is_path_failure) && life.gives_up {
                life.broken = true;
            }
            r
        }

        fn answer(&self, write: bool) -> Result<(), Error> {
            let n = self.requests.get() + 1;
            self.requests.set(n);
            match if n > self.after {
                self.mode.get()
            } else {
                Mode::Works
            } {
                Mode::Works => Ok(()),
                Mode::RefusesWrites if !write => Ok(()),
                Mode::Silent => Err(err(
                    &self.name,
                    Failure::Timeout {
                        waited_ms: 3000,
                        tag: n as u64,
                        after: Recovery::Aborted,
                    },
                )),
                Mode::Gone | Mode::RefusesWrites => Err(err(
                    &self.name,
                    Failure::CheckCondition(Sense {
                        key: ILLEGAL_REQUEST,
                        asc: 0x24,
                        ascq: 0,
                        descriptor: false,
                    }),
                )),
                Mode::Medium => Err(err(
                    &self.name,
                    Failure::CheckCondition(Sense {
                        key: MEDIUM_ERROR,
                        asc: 0x11,
                        ascq: 0,
                        descriptor: false,
                    }),
                )),
            }
        }
    }

    impl Device for Fake {
        fn name(&self) -> &str {
            &self.name
        }
        fn pages_left_mapped(&self) -> usize {
            0
        }
        fn stats(&self) -> TransportStats {
            TransportStats::default()
        }
        fn shut_down(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }

    impl BlockDevice for Fake {
        fn block_size(&self) -> usize {
            BS
        }
        fn capacity(&self) -> u64 {
            (self.disk.borrow().len() / BS) as u64
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
            self.check(false)?;
            let at = block as usize * BS;
            buf.copy_from_slice(&self.disk.borrow()[at..at + buf.len()]);
            Ok(())
        }
        fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
            self.check(true)?;
            let at = block as usize * BS;
            self.disk.borrow_mut()[at..at + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), Error> {
            self.check(true)
        }
        fn identity(&mut self) -> Result<String, Error> {
            Ok("FAKE".into())
        }
        fn unique_id(&mut self) -> Option<String> {
            Some(self.ident.borrow().clone())
        }
        fn reconnect(&mut self) -> Result<bool, Error> {
            let mut life = self.life.borrow_mut();
            if !life.broken {
                return Ok(false);
            }
            if !life.revivable {
                return Err(err(&self.name, Failure::ShutDown));
            }
            life.broken = false;
            life.reconnects += 1;
            Ok(true)
        }
        fn as_device(&mut self) -> &mut dyn Device {
            self
        }
    }

    /// Two paths to one 256 KiB disk; the first turns to `mode` after `after` requests.
    /// Returns the disk and the first path's mode switch.
    fn two_paths(after: usize, mode: Mode) -> (Multipath, Rc<Cell<Mode>>) {
        let disk = Rc::new(RefCell::new(vec![0u8; 256 << 10]));
        let first = Rc::new(Cell::new(mode));
        let path = |name: &str, after, mode: Rc<Cell<Mode>>| -> Box<dyn BlockDevice> {
            Box::new(fake(name, &disk, after, mode))
        };
        let m = Multipath::new(
            "disk naa:01".into(),
            Some("naa:01".into()),
            vec![
                path("a", after, first.clone()),
                path("b", 0, Rc::new(Cell::new(Mode::Works))),
            ],
        );
        (m, first)
    }

    /// Writes 64 blocks of a pattern in 8-block requests, reads them back and compares.
    fn write_and_verify(m: &mut Multipath) -> Result<(), Error> {
        for i in 0..8u64 {
            let buf: Vec<u8> = (0..8 * BS).map(|k| (i as usize * 31 + k) as u8).collect();
            m.write(i * 8, &buf)?;
        }
        for i in 0..8u64 {
            let mut buf = vec![0u8; 8 * BS];
            m.read(i * 8, &mut buf)?;
            let want: Vec<u8> = (0..8 * BS).map(|k| (i as usize * 31 + k) as u8).collect();
            assert!(buf == want, "blocks {}.. differ", i * 8);
        }
        Ok(())
    }

    #[test]
    fn a_silent_path_fails_over_mid_write_and_nothing_is_lost() {
        let (mut m, _) = two_paths(5, Mode::Silent);
        write_and_verify(&mut m).expect("every request completes on some path");
        assert_eq!(m.failovers(), 1);
        let s = m.summary();
        assert!(
            s.starts_with("2 paths: a (failed: a: READ(10): no answer within 3000 ms"),
            "{s}"
        );
        assert!(s.contains("b (active); 1 failover(s): a failed ("), "{s}");
        assert!(s.ends_with("I/O continues on b"), "{s}");
    }

    #[test]
    fn a_lun_gone_from_a_path_fails_over_but_an_illegal_request_alone_does_not() {
        let (mut m, _) = two_paths(3, Mode::Gone);
        write_and_verify(&mut m).expect("fails over");
        assert_eq!(m.failovers(), 1);
        // ILLEGAL REQUEST on a path that still reads block 0: the request's fault, returned.
        let (mut m, first) = two_paths(0, Mode::Works);
        first.set(Mode::RefusesWrites);
        let e = m.write(0, &[0u8; BS]).unwrap_err();
        assert!(format!("{e}").contains("ILLEGAL REQUEST"), "{e}");
        assert_eq!(m.failovers(), 0);
    }

    #[test]
    fn a_disk_error_is_returned_not_failed_over() {
        let (mut m, _) = two_paths(2, Mode::Medium);
        let e = write_and_verify(&mut m).unwrap_err();
        assert!(format!("{e}").contains("MEDIUM ERROR"), "{e}");
        assert_eq!(m.failovers(), 0);
    }

    #[test]
    fn when_every_path_fails_the_last_error_is_returned() {
        let disk = Rc::new(RefCell::new(vec![0u8; 64 << 10]));
        let silent = |name: &str| -> Box<dyn BlockDevice> {
            Box::new(fake(name, &disk, 0, Rc::new(Cell::new(Mode::Silent))))
        };
        let mut m = Multipath::new(
            "disk naa:01".into(),
            Some("naa:01".into()),
            vec![silent("a"), silent("b")],
        );
        let mut buf = vec![0u8; BS];
        let e = m.read(0, &mut buf).unwrap_err();
        assert!(format!("{e}").starts_with("b: READ(10): no answer"), "{e}");
        assert_eq!(m.failovers(), 1);
    }

    #[test]
    fn a_failed_path_rejoins_when_it_answers_again() {
        let (mut m, first) = two_paths(2, Mode::Silent);
        m.rejoin_us = 0;
        let mut buf = vec![0u8; BS];
        for _ in 0..4 {
            m.read(0, &mut buf).unwrap();
        }
        assert_eq!(m.failovers(), 1);
        first.set(Mode::Works);
        m.read(0, &mut buf).unwrap();
        let s = m.summary();
        assert!(s.contains("a rejoined"), "{s}");
        assert!(!s.contains("(failed"), "{s}");
    }

    #[test]
    fn join_takes_one_disk_of_several_paths_and_leaves_the_rest() {
        let disk = Rc::new(RefCell::new(vec![7u8; 64 << 10]));
        let other = Rc::new(RefCell::new(vec![9u8; 64 << 10]));
        let fake = |name: &str, d: &Rc<RefCell<Vec<u8>>>| -> Option<Box<dyn BlockDevice>> {
            Some(Box::new(fake(
                name,
                d,
                usize::MAX,
                Rc::new(Cell::new(Mode::Works)),
            )))
        };
        // Two paths of one disk, a device claiming its id with other contents, and a
        // non-block item.
        let items = vec![fake("a", &disk), None, fake("b", &disk), fake("c", &other)];
        let j = join(items, REJOIN_US, |i| i.as_mut(), |i| i);
        assert_eq!(j.disks.len(), 1);
        assert_eq!(j.disks[0].0, 0);
        assert_eq!(j.disks[0].2, [0, 2]);
        assert!(j.disks[0]
            .1
            .summary()
            .starts_with("2 paths: a (active), b;"));
        assert_eq!(j.rest.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(j.conflicts.len(), 1, "{:?}", j.conflicts);
    }

    /// A disk, its first path's mode switch and life, the second's mode switch, the first
    /// path's identifier.
    type GivingUp = (
        Multipath,
        Rc<Cell<Mode>>,
        Rc<RefCell<Life>>,
        Rc<Cell<Mode>>,
        Rc<RefCell<String>>,
    );

    /// Two paths whose first gives its device up on a failure (as virtio-vio's transport
    /// does) after `after` requests; the first path's mode switch and life.
    fn two_paths_giving_up(after: usize) -> GivingUp {
        let disk = Rc::new(RefCell::new(vec![0u8; 256 << 10]));
        let first = Rc::new(Cell::new(Mode::Silent));
        let second = Rc::new(Cell::new(Mode::Works));
        let a = fake("a", &disk, after, first.clone());
        a.life.borrow_mut().gives_up = true;
        let (life, ident) = (a.life.clone(), a.ident.clone());
        let m = Multipath::new(
            "disk naa:01".into(),
            Some("naa:01".into()),
            vec![Box::new(a), Box::new(fake("b", &disk, 0, second.clone()))],
        )
        .probe_every(0);
        (m, first, life, second, ident)
    }

    #[test]
    fn a_path_given_up_is_set_up_again_rejoins_and_carries_the_disk() {
        let (mut m, first, life, second, _) = two_paths_giving_up(2);
        let mut buf = vec![0u8; BS];
        for _ in 0..4 {
            m.read(0, &mut buf).unwrap();
        }
        assert_eq!(m.failovers(), 1);
        // Its server is back but the device is still given up: reads alone would not do.
        first.set(Mode::Works);
        m.read(0, &mut buf).unwrap();
        assert!(m.summary().contains("a (failed: "), "{}", m.summary());
        assert_eq!(life.borrow().reconnects, 0);
        // Now it can be set up again: it is, and rejoins.
        life.borrow_mut().revivable = true;
        m.read(0, &mut buf).unwrap();
        let s = m.summary();
        assert!(
            s.contains("a set up again (new session, device reset, new queue) and rejoined"),
            "{s}"
        );
        assert!(!s.contains("(failed"), "{s}");
        assert_eq!(life.borrow().reconnects, 1);
        // The other path fails for good: the disk goes on through the first, intact.
        second.set(Mode::Silent);
        write_and_verify(&mut m).expect("the rejoined path carries the disk");
        assert_eq!(m.failovers(), 2);
        assert!(m.summary().contains("b failed ("), "{}", m.summary());
    }

    #[test]
    fn a_path_that_comes_back_as_another_disk_stays_out() {
        let (mut m, first, life, _, ident) = two_paths_giving_up(1);
        let mut buf = vec![0u8; BS];
        m.read(0, &mut buf).unwrap();
        m.read(0, &mut buf).unwrap();
        first.set(Mode::Works);
        life.borrow_mut().revivable = true;
        *ident.borrow_mut() = "naa:02".into();
        m.read(0, &mut buf).unwrap();
        let s = m.summary();
        assert!(
            s.contains("a answers again but is another disk (identifier naa:02, the disk's is naa:01): it stays out"),
            "{s}"
        );
        assert!(
            s.contains("a (failed: another disk: identifier naa:02"),
            "{s}"
        );
        // Even if it names the disk again later, it is not tried again.
        *ident.borrow_mut() = "naa:01".into();
        m.read(0, &mut buf).unwrap();
        assert!(!m.summary().contains("rejoined"), "{}", m.summary());
        assert_eq!(life.borrow().reconnects, 1);
    }
}
