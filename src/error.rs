//! The one error the report prints: each module's own error, wrapped as it was given.
//!
//! Module errors carry their data (the hcall and its status, the adapter and queue, the path,
//! the digest wanted and got); none is relabelled as another kind on the way up.

use crate::dev::DeviceError;
use crate::firmware::FirmwareError;
use crate::hcall::HcallError;
use crate::loader::{HandoffError, LoadError};
use crate::of::OfError;
use crate::rtas::RtasError;
use crate::virtio::VioError;
use alloc::boxed::Box;
use core::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Hcall(HcallError),
    Of(OfError),
    Rtas(RtasError),
    Firmware(FirmwareError),
    Vio(VioError),
    Device(DeviceError),
    /// A file system operation (boxed: it is large, and rare).
    Fs(Box<crate::dev::fs::FsError>),
    Load(LoadError),
    Handoff(HandoffError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Hcall(e) => e.fmt(f),
            Error::Of(e) => e.fmt(f),
            Error::Rtas(e) => e.fmt(f),
            Error::Firmware(e) => e.fmt(f),
            Error::Vio(e) => e.fmt(f),
            Error::Device(e) => e.fmt(f),
            Error::Fs(e) => e.fmt(f),
            Error::Load(e) => e.fmt(f),
            Error::Handoff(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for Error {}

macro_rules! from {
    ($($variant:ident($t:ty)),* $(,)?) => {
        $(impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$variant(e)
            }
        })*
    };
}

from!(
    Hcall(HcallError),
    Of(OfError),
    Rtas(RtasError),
    Firmware(FirmwareError),
    Vio(VioError),
    Device(DeviceError),
    Load(LoadError),
    Handoff(HandoffError),
);

impl From<crate::dev::fs::FsError> for Error {
    fn from(e: crate::dev::fs::FsError) -> Self {
        Error::Fs(Box::new(e))
    }
}
