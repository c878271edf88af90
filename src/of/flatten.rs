//! Flattening Open Firmware's tree by walking it, for firmware without `fdt-fetch` (PowerVM, VOF).
//!
//! Visits nodes with `peer`/`child`, names them from `package-to-path`, copies every property
//! with `nextprop`/`getprop`, and adds a `phandle` property where OF has none so references
//! (`interrupt-parent`...) still resolve.

use super::{Of, OfError, Phandle, PROPNAME_BUF};
use alloc::vec;
use alloc::vec::Vec;
use core::ffi::CStr;
use core::fmt;
use vioboot_core::fdt_write::{FdtBuilder, FdtWriteError, MAX_DEPTH};

/// Largest property vioboot copies (a real tree's largest are a few KiB).
const MAX_PROPERTY: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlattenError {
    Of(OfError),
    Write {
        path: alloc::string::String,
        error: FdtWriteError,
    },
    /// A property OF reports larger than [`MAX_PROPERTY`], or that changed size while read.
    BadProperty {
        path: alloc::string::String,
        name: alloc::string::String,
        len: usize,
    },
    TooDeep,
}

impl From<OfError> for FlattenError {
    fn from(e: OfError) -> Self {
        FlattenError::Of(e)
    }
}

impl fmt::Display for FlattenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlattenError::Of(e) => write!(f, "{e}"),
            FlattenError::Write { path, error } => write!(f, "{path}: {error}"),
            FlattenError::BadProperty { path, name, len } => {
                write!(f, "{path}: property `{name}` has unusable length {len}")
            }
            FlattenError::TooDeep => write!(f, "tree nested deeper than {MAX_DEPTH}"),
        }
    }
}

/// Walks the whole tree from the root and returns it as a DTB blob.
pub fn flatten(of: &Of) -> Result<Vec<u8>, FlattenError> {
    let root = of
        .peer(Phandle(0))?
        .ok_or(OfError::Failed { service: "peer" })?;
    let mut b = FdtBuilder::new();
    let mut path = vec![0u8; 256];
    walk(of, root, "", &mut b, &mut path, 0)?;
    b.finish().map_err(|error| FlattenError::Write {
        path: "/".into(),
        error,
    })
}

fn walk(
    of: &Of,
    node: Phandle,
    name: &str,
    b: &mut FdtBuilder,
    path: &mut Vec<u8>,
    depth: usize,
) -> Result<(), FlattenError> {
    if depth > MAX_DEPTH {
        return Err(FlattenError::TooDeep);
    }
    let here = || alloc::string::String::from(if name.is_empty() { "/" } else { name });
    b.begin_node(name).map_err(|error| FlattenError::Write {
        path: here(),
        error,
    })?;

    let mut prev = [0u8; PROPNAME_BUF];
    let mut cur = [0u8; PROPNAME_BUF];
    let mut has_phandle = false;
    let mut value = Vec::new();
    loop {
        let prev_name = CStr::from_bytes_until_nul(&prev).unwrap_or(c"");
        if !of.nextprop(node, prev_name, &mut cur)? {
            break;
        }
        let pname = CStr::from_bytes_until_nul(&cur).map_err(|_| OfError::Failed {
            service: "nextprop",
        })?;
        let pname_str = pname.to_str().unwrap_or("?");
        let bad = |len| FlattenError::BadProperty {
            path: here(),
            name: pname_str.into(),
            len,
        };
        let len = of.getproplen(node, pname)?.unwrap_or(0);
        if len > MAX_PROPERTY {
            return Err(bad(len));
        }
        value.resize(len, 0);
        if len > 0 {
            let got = of.getprop(node, pname, &mut value)?.unwrap_or(0);
            if got != len {
                return Err(bad(got));
            }
        }
        has_phandle |= pname_str == "phandle";
        b.property(pname_str, &value)
            .map_err(|error| FlattenError::Write {
                path: here(),
                error,
            })?;
        prev = cur;
    }
    if !has_phandle {
        b.property_u32("phandle", node.0)
            .map_err(|error| FlattenError::Write {
                path: here(),
                error,
            })?;
    }

    let mut child = of.child(node)?;
    while let Some(c) = child {
        let n = of.package_to_path(c, path)?;
        if n >= path.len() {
            path.resize(n + 1, 0);
            of.package_to_path(c, path)?;
        }
        let full = core::str::from_utf8(&path[..n.min(path.len())]).unwrap_or("");
        let full = full.trim_end_matches('\0');
        let leaf = alloc::string::String::from(full.rsplit('/').next().unwrap_or(""));
        walk(of, c, &leaf, b, path, depth + 1)?;
        child = of.peer(c)?;
    }
    b.end_node().map_err(|error| FlattenError::Write {
        path: here(),
        error,
    })
}
