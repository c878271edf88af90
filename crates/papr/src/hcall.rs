//! The hcall opcodes vioboot uses (the value in r3 of `sc 1`).

/// Reads one TCE of a window.
pub const H_GET_TCE: u64 = 0x1C;
/// Writes one TCE of a window.
pub const H_PUT_TCE: u64 = 0x20;
/// Reads up to 16 bytes from a virtual terminal.
pub const H_GET_TERM_CHAR: u64 = 0x54;
/// Writes up to 16 bytes to a virtual terminal.
pub const H_PUT_TERM_CHAR: u64 = 0x58;
/// Registers a CRQ for a VIO adapter.
pub const H_REG_CRQ: u64 = 0xFC;
/// Deregisters an adapter's CRQ.
pub const H_FREE_CRQ: u64 = 0x100;
/// Enables or disables an adapter's interrupts.
pub const H_VIO_SIGNAL: u64 = 0x104;
/// Sends one 16-byte entry to the partner's CRQ.
pub const H_SEND_CRQ: u64 = 0x108;
/// Writes one TCE value into a run of TCEs.
pub const H_STUFF_TCE: u64 = 0x138;
/// Writes up to [`TCE_INDIRECT_MAX`](crate::tce::TCE_INDIRECT_MAX) TCEs from a list in memory.
pub const H_PUT_TCE_INDIRECT: u64 = 0x13C;
/// Re-enables a CRQ after the partition migrated.
pub const H_ENABLE_CRQ: u64 = 0x2B0;
/// Sets a processor mode, e.g. the endianness of interrupts.
pub const H_SET_MODE: u64 = 0x31C;
/// QEMU's private hcall that runs an RTAS call (KVMPPC_H_RTAS); absent on PowerVM.
pub const H_RTAS: u64 = 0xF000;
