//! Fault injection: ways to make the server misbehave on purpose, so the guest driver's
//! defences can be tested. Set in tests, or with `--fault NAME[,NAME]` on the command line.

use std::fmt;

/// Which faults to inject. All off by default.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// `bad-used-id`: every used element names a descriptor id that was never available (the
    /// queue size, one past the last index).
    pub bad_used_id: bool,
    /// `bad-used-len`: every used element claims [`BAD_USED_LEN_EXTRA`] bytes more than the
    /// chain's device-writable buffers hold.
    pub bad_used_len: bool,
    /// `unknown-opcode`: a message with opcode [`UNKNOWN_OPCODE`] goes out before each USED.
    pub unknown_opcode: bool,
    /// `flood`: after the USED of a NOTIFY, up to [`FLOOD_COUNT`] extra USED notices for the
    /// same queue, stopping at the first refusal (H_DROPPED: the guest's CRQ is full).
    pub flood: bool,
    /// `die-mid-request`: on a NOTIFY with work, serve the first half of the chains (rounded
    /// up), then end the session without writing the used ring or sending USED (the binary
    /// exits; in process, the connection is dropped).
    pub die_mid_request: bool,
    /// `touch-unmapped`: before serving each chain, remote-read the page just past the chain's
    /// last buffer page; the guest should have it unmapped (H_DEST_PARM). The outcome is
    /// logged and the chain served as usual.
    pub touch_unmapped: bool,
}

/// The opcode `unknown-opcode` sends (no opcode of protocol version 1).
pub const UNKNOWN_OPCODE: u8 = 0x7e;
/// Extra USED notices `flood` sends at most per NOTIFY.
pub const FLOOD_COUNT: usize = 300;
/// How far beyond the buffers `bad-used-len` reports.
pub const BAD_USED_LEN_EXTRA: u32 = 0x0100_0000;

/// A fault name the server does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFault(pub String);

impl fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown fault {:?} (known: {})",
            self.0,
            Faults::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownFault {}

impl Faults {
    /// Every fault's command-line name.
    pub const NAMES: [&'static str; 6] = [
        "bad-used-id",
        "bad-used-len",
        "unknown-opcode",
        "flood",
        "die-mid-request",
        "touch-unmapped",
    ];

    /// Turns on every fault of a comma-separated list of names.
    pub fn enable(&mut self, list: &str) -> Result<(), UnknownFault> {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            *self
                .flag(name)
                .ok_or_else(|| UnknownFault(name.to_string()))? = true;
        }
        Ok(())
    }

    /// Faults parsed from a comma-separated list of names.
    pub fn parse(list: &str) -> Result<Faults, UnknownFault> {
        let mut f = Faults::default();
        f.enable(list)?;
        Ok(f)
    }

    /// Whether no fault is on.
    pub fn is_empty(&self) -> bool {
        *self == Faults::default()
    }

    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "bad-used-id" => &mut self.bad_used_id,
            "bad-used-len" => &mut self.bad_used_len,
            "unknown-opcode" => &mut self.unknown_opcode,
            "flood" => &mut self.flood,
            "die-mid-request" => &mut self.die_mid_request,
            "touch-unmapped" => &mut self.touch_unmapped,
            _ => return None,
        })
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut copy = *self;
        let on: Vec<&str> = Faults::NAMES
            .into_iter()
            .filter(|n| copy.flag(n).is_some_and(|b| *b))
            .collect();
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_rejects_unknown_names() {
        let f = Faults::parse("flood, bad-used-id").unwrap();
        assert!(f.flood && f.bad_used_id && !f.bad_used_len);
        assert_eq!(f.to_string(), "bad-used-id,flood");
        assert_eq!(Faults::parse("nope"), Err(UnknownFault("nope".into())));
        assert!(Faults::parse("").unwrap().is_empty());
        let all = Faults::parse(&Faults::NAMES.join(",")).unwrap();
        assert_eq!(all.to_string(), Faults::NAMES.join(","));
    }
}
