//! The virtio-vio driver: opens an adapter's CRQ and transport (handshake, PROBE) and sets up
//! the device its server offers, virtio-blk or virtio-fs.

use super::virtio_blk::VirtioBlk;
use super::virtio_fs::{Share, VirtioFs};
use super::Bound;
use crate::dev::{AnyDevice, TransportStats};
use crate::time;
use crate::vio::Adapter;
use crate::virtio::{VioError, VioHandle, VioTransport};
use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use virtio_vio::device_id;

/// Opens `a` and makes a device of it.
pub fn bind(a: &Adapter, timeout_us: u64) -> Result<Bound, VioError> {
    let start = time::now_us();
    let t = VioTransport::open(a, timeout_us)?;
    let h = t.handle().header();
    let summary = format!(
        "CRQ handshake and PROBE in {} us: device id {}, {} queue(s), liobn {:#x} window {:#x}+{:#x}",
        time::now_us() - start,
        h.device_id,
        h.num_queues,
        a.window.liobn,
        a.window.ioba,
        a.window.size
    );
    let mut facts = Vec::new();
    let device = if h.device_id == device_id::FS {
        VirtioFs::over(a.name.clone(), t)
            .map(|d| AnyDevice::FileSystem(Box::new(Share::new(d))))
            .map_err(|e| ("fs", e.into()))
    } else {
        VirtioBlk::over(a.name.clone(), t)
            .map(|b| {
                let (accepted, offered) = b.features();
                facts.push((
                    "features",
                    format!("negotiated {accepted:#x} of offered {offered:#x}"),
                ));
                AnyDevice::Block(Box::new(b))
            })
            .map_err(|e| ("blk", e.into()))
    };
    Ok(Bound {
        summary,
        facts,
        device,
    })
}

/// The counters every device reports, from the link's and the CRQ's.
pub fn stats(h: &VioHandle) -> TransportStats {
    let (l, c) = h.counters();
    TransportStats {
        requests: l.requests,
        notifies: l.notifies,
        received: c.received,
        protocol_errors: l.protocol_errors,
        resets: l.resets,
    }
}
