//! XICS, the interrupt controller PAPR describes for H_XIRR/H_EOI/H_CPPR/H_IPI (PAPR 2.x,
//! "Interrupt Presentation"; Linux `arch/powerpc/sysdev/xics`): the values of the XIRR word and
//! the priorities, as the guest side and a simulated controller both use them.

/// The XIRR's low 24 bits: the source (XISR) of the interrupt accepted.
pub const XISR_MASK: u32 = 0x00ff_ffff;
/// The XIRR's top byte: the CPPR before the accept (what H_EOI puts back).
pub const CPPR_SHIFT: u32 = 24;
/// XISR 0: nothing was pending (a spurious accept).
pub const XISR_NONE: u32 = 0;
/// XISR 2: the inter-processor interrupt (the MFRR that H_IPI set).
pub const XISR_IPI: u32 = 2;
/// Priority 0xff: least favoured. As a CPPR it lets every priority in; as a source's or the
/// MFRR's priority it means masked (no interrupt).
pub const PRIORITY_MASKED: u8 = 0xff;
/// CPPR 0: most favoured, nothing is presented (the state a kernel expects at entry).
pub const CPPR_NONE: u8 = 0;

/// The source of an XIRR.
pub fn xisr(xirr: u32) -> u32 {
    xirr & XISR_MASK
}

/// The CPPR saved in an XIRR.
pub fn cppr(xirr: u32) -> u8 {
    (xirr >> CPPR_SHIFT) as u8
}

/// What an accepted XIRR names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// XISR 0: nothing pending.
    Spurious,
    /// XISR 2: an IPI.
    Ipi,
    /// Any other source number (a device's interrupt, as `interrupts` in the tree names it).
    Device(u32),
}

impl Source {
    pub fn of(xirr: u32) -> Source {
        match xisr(xirr) {
            XISR_NONE => Source::Spurious,
            XISR_IPI => Source::Ipi,
            n => Source::Device(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xirr_fields() {
        assert_eq!(Source::of(0xff00_0002), Source::Ipi);
        assert_eq!(cppr(0xff00_0002), 0xff);
        assert_eq!(Source::of(0x0500_1103), Source::Device(0x1103));
        assert_eq!(Source::of(0xff00_0000), Source::Spurious);
        assert_eq!(xisr(0xffff_ffff), 0x00ff_ffff);
    }
}
