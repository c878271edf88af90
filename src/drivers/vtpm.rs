//! The vTPM driver: opens the adapter's session (bypass off, CRQ, GET_VERSION,
//! GET_RTCE_BUFFER_SIZE) and offers it as a [`Tpm`]; what the TPM holds is for the checks and
//! the measured boot to ask, with the `tpm` crate's commands.

use super::{Bound, Unit};
use crate::dev::{AnyDevice, Device, DeviceError, Tpm, TransportStats};
use crate::time;
use crate::vio::vtpm::{Vtpm, VtpmError};
use crate::vio::Adapter;
use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

/// Opens `a` as a TPM.
pub fn bind(a: &Adapter, tce_bypass: Option<u32>, timeout_us: u64) -> Result<Bound, VtpmError> {
    let start = time::now_us();
    let v = Vtpm::open(a, tce_bypass, timeout_us)?;
    let summary = format!(
        "CRQ handshake, TPM {}.0, {}-byte command buffer in {} us: liobn {:#x} window {:#x}+{:#x}{}",
        v.version(),
        v.buffer_size(),
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
    Ok(Bound {
        summary,
        facts: Vec::new(),
        units: alloc::vec![Unit {
            name: None,
            device: Ok(AnyDevice::Tpm(Box::new(VtpmDevice(v)))),
        }],
        shared: None,
    })
}

/// A vTPM session as a [`Tpm`].
pub struct VtpmDevice(pub Vtpm);

impl Device for VtpmDevice {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn pages_left_mapped(&self) -> usize {
        self.0.pages_left_mapped()
    }
    fn stats(&self) -> TransportStats {
        let s = self.0.stats();
        TransportStats {
            requests: s.commands,
            notifies: 0,
            received: s.received,
            protocol_errors: s.protocol_errors,
            resets: s.resets,
            ..TransportStats::default()
        }
    }
    fn shut_down(&mut self) -> Result<(), DeviceError> {
        Ok(self.0.shut_down()?)
    }
}

impl Tpm for VtpmDevice {
    fn command(&mut self, op: &'static str, cmd: &[u8]) -> Result<Vec<u8>, DeviceError> {
        Ok(self.0.command(op, cmd)?)
    }
    fn buffer_size(&self) -> usize {
        self.0.buffer_size()
    }
    fn as_device(&mut self) -> &mut dyn Device {
        self
    }
}
