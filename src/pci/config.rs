//! Config space through RTAS `ibm,read-pci-config` / `ibm,write-pci-config`, addressed by the
//! host bridge's BUID (the plain `read-pci-config` calls send no BUID and fail on QEMU).

use crate::rtas::{self, RtasError};
use ::pci::{Bdf, ConfigSpace};

/// RTAS's "hardware error" status: QEMU's answer for a function that is not there.
const RTAS_HARDWARE_ERROR: i32 = -1;

/// One host bridge's config space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtasConfig {
    pub buid: u64,
    /// Tokens of `ibm,read-pci-config` and `ibm,write-pci-config`.
    pub read: u32,
    pub write: u32,
}

impl RtasConfig {
    fn address(&self, at: Bdf, reg: u16, service: &'static str) -> Result<u32, RtasError> {
        at.rtas_config_address(reg).ok_or(RtasError::Status {
            service,
            status: -3,
        })
    }
}

impl ConfigSpace for RtasConfig {
    type Error = RtasError;

    /// A read of the vendor id of an absent function, which RTAS refuses with a hardware
    /// error, reads as all ones, as on real PCI; any other refusal is an error.
    fn read(&mut self, at: Bdf, reg: u16, size: u8) -> Result<u32, RtasError> {
        let service = "ibm,read-pci-config";
        let addr = self.address(at, reg, service)?;
        let args = [
            addr,
            (self.buid >> 32) as u32,
            self.buid as u32,
            size.into(),
        ];
        match rtas::call(service, self.read, &args, 2) {
            Ok(r) => Ok(r[0]),
            Err(RtasError::Status { status, .. })
                if status == RTAS_HARDWARE_ERROR && reg == ::pci::config::VENDOR_ID =>
            {
                Ok(u32::MAX)
            }
            Err(e) => Err(e),
        }
    }

    fn write(&mut self, at: Bdf, reg: u16, size: u8, value: u32) -> Result<(), RtasError> {
        let service = "ibm,write-pci-config";
        let addr = self.address(at, reg, service)?;
        let args = [
            addr,
            (self.buid >> 32) as u32,
            self.buid as u32,
            size.into(),
            value,
        ];
        rtas::call(service, self.write, &args, 1).map(|_| ())
    }
}
