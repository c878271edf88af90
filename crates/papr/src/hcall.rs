//! The hcall opcodes vioboot uses (the value in r3 of `sc 1`).

/// Reads one TCE of a window.
pub const H_GET_TCE: u64 = 0x1C;
/// Writes one TCE of a window.
pub const H_PUT_TCE: u64 = 0x20;
/// Sets SPRG0 (for a guest that cannot write it in its mode).
pub const H_SET_SPRG0: u64 = 0x24;
/// Zeroes or copies a 4 KiB page.
pub const H_PAGE_INIT: u64 = 0x2C;
/// Loads 1, 2, 4 or 8 bytes from a cache-inhibited (device) address, as a big-endian load.
pub const H_LOGICAL_CI_LOAD: u64 = 0x3C;
/// Stores 1, 2, 4 or 8 bytes to a cache-inhibited (device) address, as a big-endian store.
pub const H_LOGICAL_CI_STORE: u64 = 0x40;
/// Gives up the calling processor until an interrupt or H_PROD (returns with MSR[EE] set).
pub const H_CEDE: u64 = 0xE0;
/// Wakes a processor in H_CEDE (or makes its next H_CEDE return at once).
pub const H_PROD: u64 = 0xE8;
/// Registers or deregisters a processor's VPA, SLB shadow or dispatch trace log.
pub const H_REGISTER_VPA: u64 = 0xDC;
/// A 64-bit random number from the platform (with an RNG device).
pub const H_RANDOM: u64 = 0x300;
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
/// XICS: signals the end of an interrupt's handling (the XIRR H_XIRR returned; restores the CPPR).
pub const H_EOI: u64 = 0x64;
/// XICS: sets the calling processor's current processor priority (0 masks all, 0xff none).
pub const H_CPPR: u64 = 0x68;
/// XICS: sets a processor's MFRR (an inter-processor interrupt at that priority; 0xff none).
pub const H_IPI: u64 = 0x6C;
/// XICS: reads a processor's XIRR and MFRR without accepting anything.
pub const H_IPOLL: u64 = 0x70;
/// XICS: accepts the most favoured pending interrupt: returns the XIRR (old CPPR, source).
pub const H_XIRR: u64 = 0x74;
/// QEMU's private hcall that runs an RTAS call (KVMPPC_H_RTAS); absent on PowerVM.
pub const H_RTAS: u64 = 0xF000;

/// H_REGISTER_VPA flags (the subfunction, bits 45..47): register the VPA.
pub const VPA_REGISTER: u64 = 1 << 45;
/// H_REGISTER_VPA flags: deregister the VPA.
pub const VPA_DEREGISTER: u64 = 5 << 45;
/// The smallest VPA the hypervisor accepts (its size is a big-endian u16 at byte 4).
pub const VPA_MIN_SIZE: u16 = 640;
/// The VPA byte whose bit [`VPA_SHARED_PROC`] the hypervisor sets on registration (the
/// shared-processor indicator Linux reads in its lppaca).
pub const VPA_SHARED_PROC_OFFSET: usize = 0x9;
pub const VPA_SHARED_PROC: u8 = 0x02;

/// H_PAGE_INIT flags: zero the destination page.
pub const PAGE_INIT_ZERO: u64 = 1 << (63 - 48);
/// H_PAGE_INIT flags: copy the source page into the destination.
pub const PAGE_INIT_COPY: u64 = 1 << (63 - 49);
