//! The v-scsi driver: opens an adapter's SRP session (bypass off, CRQ, ADAPTER_INFO, login),
//! lists its LUNs (REPORT LUNS on LUN 0, each entry used verbatim as the SRP LUN), asks each
//! what it is (INQUIRY; no device at peripheral qualifier 3), and makes a [`BlockDevice`] of
//! every disk or CD with a medium: TEST UNIT READY (UNIT ATTENTION retried), READ CAPACITY(10)
//! then (16) when the capacity needs it, the serial from VPD page 0x80 where offered, the
//! write-protect bit from MODE SENSE(6). The LUNs share the session; the adapter itself
//! ([`VscsiAdapter`]) is shut down after them.

use super::{Bound, Unit};
use crate::dev::{AnyDevice, BlockDevice, Device, DeviceError as Error, TransportStats};
use crate::time;
use crate::vio::vscsi::{self, Failure, Session, VscsiError};
use crate::vio::Adapter;
use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use srp::cdb;
use srp::data::{self, Inquiry, TYPE_CDROM, TYPE_DISK};
use srp::sense::{ASC_MEDIUM_NOT_PRESENT, NOT_READY};

/// The LUN every target answers REPORT LUNS on.
const LUN0: [u8; 8] = [0; 8];
/// Bytes of REPORT LUNS data asked for: room for 511 LUNs.
const REPORT_LUNS_LEN: usize = 4096;
/// Bytes per READ/WRITE command when the adapter names no maximum transfer.
const DEFAULT_MAX_TRANSFER: u32 = 128 << 10;
/// Largest READ/WRITE vioboot sends: 1 MiB (the adapter's maximum, and what the session's
/// descriptors can describe, if smaller, win). A command of more than 128 KiB is described by
/// indirect descriptors of 128 KiB each (see `vio::vscsi::SEGMENT` for why); where the target
/// takes only direct descriptors, commands are 128 KiB, as Linux's ibmvscsi sends them.
const MAX_TRANSFER: u32 = 1 << 20;

type Shared = Rc<RefCell<Session>>;

/// Opens `a`, logs in and makes a device of every usable LUN.
pub fn bind(a: &Adapter, tce_bypass: Option<u32>, timeout_us: u64) -> Result<Bound, VscsiError> {
    let start = time::now_us();
    let mut s = Session::open(a, tce_bypass, timeout_us)?;
    let r = adapter_facts(&mut s);
    let (info, granted, luns) = match r {
        Ok(x) => x,
        Err(e) => {
            let _ = s.shut_down();
            return Err(e);
        }
    };
    let summary = format!(
        "CRQ handshake, ADAPTER_INFO and SRP login in {} us: liobn {:#x} window {:#x}+{:#x}{}",
        time::now_us() - start,
        a.window.liobn,
        a.window.ioba,
        a.window.size,
        if tce_bypass.is_some() {
            ", TCE bypass off"
        } else {
            ""
        }
    );
    let max_transfer = match info.max_transfer {
        0 => DEFAULT_MAX_TRANSFER,
        n => n.min(MAX_TRANSFER),
    }
    .min(s.max_command_bytes());
    let mut facts = alloc::vec![
        (
            "adapter",
            format!(
                "partition \"{}\" (number {}), SRP version {}, MAD version {}, max transfer {} KiB; commands of up to {} KiB{}",
                info.partition_name,
                info.partition_number,
                info.srp_version,
                info.mad_version,
                info.max_transfer >> 10,
                max_transfer >> 10,
                if max_transfer > vscsi::SEGMENT {
                    " (indirect descriptors)"
                } else {
                    ""
                }
            ),
        ),
        (
            "login",
            format!(
                "request limit {}, IU length {}/{}, buffer formats {:#x}",
                granted.request_limit,
                granted.max_it_iu_len,
                granted.max_ti_iu_len,
                granted.buf_formats
            ),
        ),
    ];
    let shared: Shared = Rc::new(RefCell::new(s));
    let mut units = Vec::new();
    let mut listed = Vec::new();
    let mut order = luns.luns.clone();
    order.sort_unstable();
    for lun in &order {
        let id = data::lun_name(lun);
        let name = format!("{} {id}", a.name);
        match probe(&shared, &name, *lun, max_transfer) {
            Ok(Probe::Disk(d)) => {
                listed.push(format!(
                    "{id} {} \"{}\" {} x {}{}",
                    data::type_name(d.device_type),
                    d.model,
                    d.blocks,
                    d.block_len,
                    if d.read_only { " ro" } else { "" }
                ));
                units.push(Unit {
                    name: Some(name),
                    device: Ok(AnyDevice::Block(Box::new(d))),
                });
            }
            Ok(Probe::Listed(what)) => listed.push(format!("{id} {what}")),
            Err(e) => {
                listed.push(format!("{id} failed"));
                units.push(Unit {
                    name: Some(name),
                    device: Err(("lun", e.into())),
                });
            }
        }
    }
    facts.push((
        "luns",
        format!(
            "{} LUN(s){}: {}",
            luns.luns.len(),
            if luns.missing > 0 {
                format!(" ({} more did not fit)", luns.missing)
            } else {
                String::new()
            },
            listed.join(", ")
        ),
    ));
    Ok(Bound {
        summary,
        facts,
        units,
        shared: Some(Box::new(VscsiAdapter {
            name: a.name.clone(),
            session: shared,
        })),
    })
}

/// ADAPTER_INFO, login, REPORT LUNS.
fn adapter_facts(
    s: &mut Session,
) -> Result<(srp::mad::AdapterInfo, srp::login::Granted, data::LunList), VscsiError> {
    let info = s.adapter_info()?;
    let granted = s.login()?;
    let name = String::from(s.name());
    let bytes = s.data_in(
        &name,
        LUN0,
        cdb::report_luns(REPORT_LUNS_LEN as u32),
        REPORT_LUNS_LEN,
    )?;
    let luns = data::report_luns(&bytes).map_err(|e| VscsiError {
        device: name.clone(),
        op: "REPORT LUNS",
        failure: Failure::Malformed(e),
    })?;
    Ok((info, granted, luns))
}

/// What a LUN turned out to be.
enum Probe {
    Disk(VscsiDisk),
    /// Not a block device vioboot opens: what it is.
    Listed(String),
}

fn malformed<'a>(name: &'a str, op: &'static str) -> impl Fn(srp::SrpError) -> VscsiError + 'a {
    move |e| VscsiError {
        device: name.into(),
        op,
        failure: Failure::Malformed(e),
    }
}

fn probe(
    shared: &Shared,
    name: &str,
    lun: [u8; 8],
    max_transfer: u32,
) -> Result<Probe, VscsiError> {
    let mut s = shared.borrow_mut();
    let bytes = s.data_in(name, lun, cdb::inquiry(None, 96), 96)?;
    let inq = Inquiry::parse(&bytes).map_err(malformed(name, "INQUIRY"))?;
    if !inq.present() {
        return Ok(Probe::Listed("no device".into()));
    }
    let model = format!("{} {}", inq.vendor, inq.product);
    if inq.device_type != TYPE_DISK && inq.device_type != TYPE_CDROM {
        return Ok(Probe::Listed(format!(
            "{} \"{model}\" (not opened)",
            data::type_name(inq.device_type)
        )));
    }
    match s.no_data(name, lun, cdb::test_unit_ready()) {
        Err(e)
            if e.sense()
                .is_some_and(|k| k.is(NOT_READY, ASC_MEDIUM_NOT_PRESENT)) =>
        {
            return Ok(Probe::Listed(format!(
                "{} \"{model}\" (no medium)",
                data::type_name(inq.device_type)
            )));
        }
        r => r?,
    }
    let c10 = s.data_in(name, lun, cdb::read_capacity_10(), 8)?;
    let cap = match data::capacity_10(&c10).map_err(malformed(name, "READ CAPACITY(10)"))? {
        Some(c) => c,
        None => {
            let c16 = s.data_in(
                name,
                lun,
                cdb::read_capacity_16(),
                cdb::READ_CAPACITY_16_LEN as usize,
            )?;
            data::capacity_16(&c16).map_err(malformed(name, "READ CAPACITY(16)"))?
        }
    };
    if !matches!(cap.block_len, 512 | 2048 | 4096) {
        return Err(VscsiError {
            device: name.into(),
            op: "READ CAPACITY",
            failure: Failure::BlockSize(cap.block_len),
        });
    }
    // The serial, if the LUN offers VPD page 0x80.
    let pages = s
        .data_in(name, lun, cdb::inquiry(Some(cdb::VPD_SUPPORTED), 255), 255)
        .ok()
        .and_then(|b| data::vpd(&b, cdb::VPD_SUPPORTED).ok().map(<[u8]>::to_vec))
        .unwrap_or_default();
    let serial = if pages.contains(&cdb::VPD_SERIAL) {
        let b = s.data_in(name, lun, cdb::inquiry(Some(cdb::VPD_SERIAL), 255), 255)?;
        Some(data::serial(&b).map_err(malformed(name, "INQUIRY VPD 0x80"))?)
    } else {
        None
    };
    // The logical unit's own designator, if the LUN offers VPD page 0x83: what names the
    // disk on every path.
    let unique = if pages.contains(&cdb::VPD_DEVICE_ID) {
        s.data_in(name, lun, cdb::inquiry(Some(cdb::VPD_DEVICE_ID), 255), 255)
            .ok()
            .and_then(|b| data::designators(&b).ok())
            .and_then(|d| data::unique_id(&d))
    } else {
        None
    };
    let read_only = inq.device_type == TYPE_CDROM
        || match s.data_in(name, lun, cdb::mode_sense_6(192), 192) {
            Ok(b) => data::write_protected(&b).map_err(malformed(name, "MODE SENSE(6)"))?,
            // A LUN without MODE SENSE is taken as writable; writes fail if it is not.
            Err(_) => false,
        };
    let per = (max_transfer / cap.block_len).max(1);
    Ok(Probe::Disk(VscsiDisk {
        session: shared.clone(),
        name: name.into(),
        lun,
        device_type: inq.device_type,
        model: model.clone(),
        identity: match serial {
            Some(sn) if !sn.is_empty() => format!("{model}, serial {sn}"),
            _ => model,
        },
        blocks: cap.blocks,
        block_len: cap.block_len,
        blocks_per_command: per,
        unique,
        read_only,
        closed: false,
    }))
}

/// The adapter's own part: its session, shut down (CRQ freed, TCEs cleared) after its LUNs.
pub struct VscsiAdapter {
    name: String,
    session: Shared,
}

fn stats(s: &Session) -> TransportStats {
    let t = s.stats();
    TransportStats {
        requests: t.requests,
        notifies: 0,
        received: t.received,
        protocol_errors: t.protocol_errors,
        resets: t.resets,
        ..TransportStats::default()
    }
}

impl Device for VscsiAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn pages_left_mapped(&self) -> usize {
        self.session.borrow().pages_left_mapped()
    }

    fn stats(&self) -> TransportStats {
        stats(&self.session.borrow())
    }

    /// Frees the CRQ and clears every TCE.
    fn shut_down(&mut self) -> Result<(), Error> {
        Ok(self.session.borrow_mut().shut_down()?)
    }
}

/// One LUN of a v-scsi adapter as a block device.
pub struct VscsiDisk {
    session: Shared,
    /// `v-scsi@2000 0:1:0`.
    name: String,
    lun: [u8; 8],
    device_type: u8,
    /// INQUIRY vendor and product.
    model: String,
    identity: String,
    blocks: u64,
    block_len: u32,
    blocks_per_command: u32,
    /// The logical unit's NAA, EUI-64 or SCSI name designator (VPD page 0x83).
    unique: Option<String>,
    read_only: bool,
    closed: bool,
}

impl VscsiDisk {
    fn error(&self, op: &'static str, failure: Failure) -> Error {
        VscsiError {
            device: self.name.clone(),
            op,
            failure,
        }
        .into()
    }

    /// The blocks `len` bytes from `block` cover, if they are whole and on the LUN.
    fn span(&self, op: &'static str, block: u64, len: usize) -> Result<u64, Error> {
        if self.closed {
            return Err(self.error(op, Failure::ShutDown));
        }
        let bl = self.block_len as usize;
        if !len.is_multiple_of(bl) {
            return Err(self.error(
                op,
                Failure::BadLength {
                    len,
                    block: self.block_len,
                },
            ));
        }
        let count = (len / bl) as u64;
        if block.checked_add(count).is_none_or(|end| end > self.blocks) {
            return Err(self.error(
                op,
                Failure::OutOfRange {
                    block,
                    count,
                    capacity: self.blocks,
                },
            ));
        }
        Ok(count)
    }

    fn chunk_bytes(&self) -> usize {
        (self.blocks_per_command * self.block_len) as usize
    }
}

impl Device for VscsiDisk {
    fn name(&self) -> &str {
        &self.name
    }

    fn pages_left_mapped(&self) -> usize {
        self.session.borrow().pages_left_mapped()
    }

    fn stats(&self) -> TransportStats {
        stats(&self.session.borrow())
    }

    /// Ends this LUN's use; the adapter ([`VscsiAdapter`]) frees the CRQ and TCEs.
    fn shut_down(&mut self) -> Result<(), Error> {
        self.closed = true;
        Ok(())
    }
}

impl BlockDevice for VscsiDisk {
    fn block_size(&self) -> usize {
        self.block_len as usize
    }

    fn capacity(&self) -> u64 {
        self.blocks
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    /// READ(10), or READ(16) past 2 TiB, in chunks of the adapter's maximum transfer.
    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.span("READ", block, buf.len())?;
        let per = self.chunk_bytes();
        let mut s = self.session.borrow_mut();
        for (i, c) in buf.chunks_mut(per).enumerate() {
            let lba = block + (i * per / self.block_len as usize) as u64;
            let n = (c.len() / self.block_len as usize) as u32;
            s.read(&self.name, self.lun, cdb::read(lba, n), c)?;
        }
        Ok(())
    }

    /// WRITE(10), or WRITE(16) past 2 TiB.
    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Error> {
        self.span("WRITE", block, buf.len())?;
        if self.read_only {
            return Err(self.error("WRITE", Failure::ReadOnly));
        }
        let per = self.chunk_bytes();
        let mut s = self.session.borrow_mut();
        for (i, c) in buf.chunks(per).enumerate() {
            let lba = block + (i * per / self.block_len as usize) as u64;
            let n = (c.len() / self.block_len as usize) as u32;
            s.write(&self.name, self.lun, cdb::write(lba, n), c)?;
        }
        Ok(())
    }

    /// SYNCHRONIZE CACHE(10) of the whole LUN.
    fn flush(&mut self) -> Result<(), Error> {
        if self.closed {
            return Err(self.error("SYNCHRONIZE CACHE(10)", Failure::ShutDown));
        }
        Ok(self
            .session
            .borrow_mut()
            .no_data(&self.name, self.lun, cdb::synchronize_cache_10())?)
    }

    fn flush_command(&self) -> &'static str {
        "SYNCHRONIZE CACHE(10)"
    }

    /// INQUIRY vendor and product, and the VPD serial where offered.
    fn identity(&mut self) -> Result<String, Error> {
        Ok(self.identity.clone())
    }

    fn unique_id(&mut self) -> Option<String> {
        self.unique.clone()
    }

    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}
