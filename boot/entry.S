# vioboot entry code: the image's first bytes.
#
# Entered from any of the ways vioboot is booted:
#   offset 0x000  Open Firmware (SLOF, VOF) with -kernel: big-endian, 32-bit, r5 = client interface
#   offset 0x100  QEMU -bios (no firmware): big-endian, r3 = flattened device tree, r5 = 0
# at any 64 KiB-aligned address. Both entries switch to little-endian (FIXUP_ENDIAN), then
# entry_le switches to 64-bit mode, enables FP/VMX/VSX, applies the image's own R_PPC64_RELATIVE
# relocations for the address it runs at, clears BSS, sets the stack and TOC and calls
# vioboot_entry(r3, r4, r5, load_base, msr_at_entry) in Rust.
#
# Constants from Rust (global_asm! operands): MSR_SF_BIT, MSR_FPVEC_HI, MSR_FP, R_PPC64_RELATIVE,
# VECTOR_TARGET and DEC_COUNT (two 8-byte slots at the end of the vector block), MSR_EE.

# Big-endian entry into little-endian code, in either endianness (Linux's FIXUP_ENDIAN idea).
# Read big-endian, the first word is `b .+8` into a byte-swapped trampoline that flips MSR[LE]
# and returns to label 191 by rfid; read little-endian it is a no-op trap and the trampoline is
# skipped. The .long words are big-endian instructions stored byte-swapped:
#   mfmsr r11; xori r11,r11,1; li r10,0; mtmsrd r10,1; bcl 20,31,$+4; mflr r10;
#   addi r10,r10,20; mtsrr0 r10; mtsrr1 r11; rfid
.macro FIXUP_ENDIAN
    tdi 0, 0, 0x48
    b 191f
    .long 0xa600607d
    .long 0x01006b69
    .long 0x00004039
    .long 0x6401417d
    .long 0x05009f42
    .long 0xa602487d
    .long 0x14004a39
    .long 0xa6035a7d
    .long 0xa6037b7d
    .long 0x2400004c
191:
.endm

# rX = address of `sym`, PC-relative to label 1 whose address is in rB.
.macro ADDR rX, rB, sym
    addis \rX, \rB, (\sym - 1b)@ha
    addi \rX, \rX, (\sym - 1b)@l
.endm

    .section .head.text, "ax"
    .globl _start
    .p2align 2
_start:
    FIXUP_ENDIAN
    b entry_le

    .org 0x100
entry_0x100:
    FIXUP_ENDIAN
    b entry_le

    # 0x200..0x1800: exception vectors, live when vioboot runs at 0 (-bios), and copied to
    # physical 0x200 while it runs at any other address (src/arch/ppc64.rs, own_vectors); with
    # little-endian interrupts (H_SET_MODE). Each passes its vector number to vector_far, which
    # is position independent: it jumps to the absolute address kept at VECTOR_TARGET.
    .org 0x200
    li 3, 0x200
    b vector_far
    .org 0x300
    li 3, 0x300
    b vector_far
    .org 0x380
    li 3, 0x380
    b vector_far
    .org 0x400
    li 3, 0x400
    b vector_far
    .org 0x480
    li 3, 0x480
    b vector_far
    .org 0x500
    # An external interrupt (the XICS presentation controller's, src/xics.rs): back to the
    # interrupted code with MSR[EE] off (cleared in SRR1) and every register as it was (r12
    # waits in SPRG1). The interrupt stays pending in the controller: the code that opened
    # MSR[EE] sees it closed and accepts the interrupt with H_XIRR. Entered only where vioboot
    # opens MSR[EE] on purpose (bounded windows, H_CEDE).
    mtspr 273, 12
    mfsrr1 12
    ori 12, 12, {MSR_EE}
    xori 12, 12, {MSR_EE}
    mtsrr1 12
    mfspr 12, 273
    rfid
    .org 0x600
    li 3, 0x600
    b vector_far
    .org 0x700
    li 3, 0x700
    b vector_far
    .org 0x800
    li 3, 0x800
    b vector_far
    .org 0x900
    # The decrementer: counted at DEC_COUNT and dismissed (DEC set to its largest positive
    # value), then back to the interrupted code with every register as it was (r11 and r12
    # wait in SPRG1 and SPRG2, which are per processor). Entered only where vioboot opens
    # MSR[EE] on purpose: the decrementer check, and H_CEDE, which returns with it set.
    mtspr 273, 12
    mtspr 274, 11
    lis 12, 0x7fff
    ori 12, 12, 0xffff
    mtspr 22, 12
    ld 11, {DEC_COUNT}(0)
    addi 11, 11, 1
    std 11, {DEC_COUNT}(0)
    mfspr 11, 274
    mfspr 12, 273
    rfid
    .org 0x980
    li 3, 0x980
    b vector_far
    .org 0xa00
    li 3, 0xa00
    b vector_far
    .org 0xb00
    li 3, 0xb00
    b vector_far
    .org 0xc00
    li 3, 0xc00
    b vector_far
    .org 0xd00
    li 3, 0xd00
    b vector_far
    .org 0xe00
    li 3, 0xe00
    b vector_far
    .org 0xe20
    li 3, 0xe20
    b vector_far
    .org 0xe40
    li 3, 0xe40
    b vector_far
    .org 0xe60
    li 3, 0xe60
    b vector_far
    .org 0xe80
    li 3, 0xe80
    b vector_far
    .org 0xea0
    li 3, 0xea0
    b vector_far
    .org 0xf00
    li 3, 0xf00
    b vector_far
    .org 0xf20
    li 3, 0xf20
    b vector_far
    .org 0xf40
    li 3, 0xf40
    b vector_far
    .org 0xf60
    li 3, 0xf60
    b vector_far
    .org 0xf80
    li 3, 0xf80
    b vector_far
    .org 0x1000
    li 3, 0x1000
    b vector_far
    .org 0x1100
    li 3, 0x1100
    b vector_far
    .org 0x1200
    li 3, 0x1200
    b vector_far
    .org 0x1300
    li 3, 0x1300
    b vector_far
    .org 0x1400
    li 3, 0x1400
    b vector_far
    .org 0x1500
    li 3, 0x1500
    b vector_far
    .org 0x1600
    li 3, 0x1600
    b vector_far
    .org 0x1700
    li 3, 0x1700
    b vector_far
    .org 0x1800
    li 3, 0x1800
    b vector_far

    .org 0x1900
# From a vector (in the image, or in its copy at physical 0): on to exception_common wherever
# the image is, through the address own_vectors wrote at VECTOR_TARGET. r3 holds the vector.
vector_far:
    ld 12, {VECTOR_TARGET}(0)
    mtctr 12
    bctr

    .org {DEC_COUNT}
    .quad 0
    .quad 0

# An unexpected interrupt: on a stack of its own, call vioboot_exception(vector, SRR0, SRR1, DAR),
# which reports it and terminates. Never returns.
    .globl exception_common
exception_common:
    mfsrr0 4
    mfsrr1 5
    mfdar 6
    # Interrupts clear MSR[FP|VEC|VSX]; the Rust handler needs them back.
    mfmsr 11
    oris 11, 11, {MSR_FPVEC_HI}
    ori 11, 11, {MSR_FP}
    mtmsrd 11
    isync
    bcl 20, 31, 1f
1:  mflr 31
    ADDR 1, 31, __exception_stack_top
    li 0, 0
    stdu 0, -64(1)
    ADDR 2, 31, .TOC.
    bl vioboot_exception
    nop
8:  b 8b

entry_le:
    mr 27, 3
    mr 28, 4
    mr 29, 5
    mfmsr 26
    # 64-bit mode, floating point, VMX and VSX: LLVM uses vector registers for copies.
    li 11, 1
    rldicr 11, 11, {MSR_SF_BIT}, 0
    oris 11, 11, {MSR_FPVEC_HI}
    ori 11, 11, {MSR_FP}
    or 11, 11, 26
    mtmsrd 11
    isync
    bcl 20, 31, 1f
1:  mflr 31
    ADDR 30, 31, _start

    # Relocate: *(base + r_offset) = base + r_addend for every R_PPC64_RELATIVE entry.
    ADDR 6, 31, __rela_dyn_start
    ADDR 7, 31, __rela_dyn_end
2:  cmpld 6, 7
    bge 4f
    ld 8, 8(6)
    clrldi 8, 8, 32
    cmpldi 8, {R_PPC64_RELATIVE}
    bne 9f
    ld 9, 0(6)
    ld 10, 16(6)
    add 10, 10, 30
    stdx 10, 9, 30
    addi 6, 6, 24
    b 2b

    # Clear BSS (the raw image does not carry it; the stack lives there).
4:  ADDR 6, 31, __bss_start
    ADDR 7, 31, __bss_end
    li 0, 0
5:  cmpld 6, 7
    bge 6f
    std 0, 0(6)
    addi 6, 6, 8
    b 5b

    # Stack with a null back chain, FPSCR cleared, TOC.
6:  ADDR 1, 31, __stack_top
    li 0, 0
    stdu 0, -64(1)
    std 0, 8(1)
    lfd 0, 8(1)
    mtfsf 0xff, 0
    ADDR 2, 31, .TOC.
    mr 3, 27
    mr 4, 28
    mr 5, 29
    mr 6, 30
    mr 7, 26
    bl vioboot_entry
    nop
    # vioboot_entry never returns; a relocation the build did not expect also ends here.
9:  b 9b

# A secondary thread's first instruction, as RTAS start-cpu leaves it (PAPR; QEMU's
# rtas_start_cpu): real mode, 64-bit, big-endian (MSR = SF | ME), r3 = the value the boot
# processor passed: the address of the thread's slot, whose first two doublewords are the top
# of its stack and the Rust function to run (src/smp.rs). Switches to little-endian, enables
# FP/VMX/VSX, sets the TOC and the stack, and calls that function with r3, which never returns.
    .section .text.vioboot_secondary_start, "ax"
    .globl vioboot_secondary_start
    .p2align 2
vioboot_secondary_start:
    FIXUP_ENDIAN
    mfmsr 11
    li 12, 1
    rldicr 12, 12, {MSR_SF_BIT}, 0
    or 11, 11, 12
    oris 11, 11, {MSR_FPVEC_HI}
    ori 11, 11, {MSR_FP}
    mtmsrd 11
    isync
    bcl 20, 31, 1f
1:  mflr 31
    ADDR 2, 31, .TOC.
    ld 1, 0(3)
    li 0, 0
    stdu 0, -64(1)
    std 0, 8(1)
    lfd 0, 8(1)
    mtfsf 0xff, 0
    ld 12, 8(3)
    mtctr 12
    bctrl
    nop
8:  b 8b

# Where vioboot.inject=lost-cpu starts a secondary: little-endian, then a loop that never
# reports in (a thread that never comes up, as the boot processor sees it).
    .globl vioboot_secondary_lost
    .p2align 2
vioboot_secondary_lost:
    FIXUP_ENDIAN
9:  b 9b

# i64 vioboot_call_be32(u64 r3, u64 entry, u64 r4)
# Calls big-endian 32-bit code (Open Firmware's client interface, an instantiated RTAS) at `entry`
# with r3 and r4, as Linux's enter_prom does: save what the callee may clobber (it runs 32-bit and
# loses the high halves), drop MSR[SF] and MSR[LE] by rfid, come back through FIXUP_ENDIAN,
# restore the MSR. Returns the callee's r3. The stack and all pointers must lie below 4 GiB.
    .section .text.vioboot_call_be32, "ax"
    .globl vioboot_call_be32
    .p2align 2
vioboot_call_be32:
    mflr 0
    std 0, 16(1)
    stdu 1, -256(1)
    std 2, 32(1)
    std 13, 40(1)
    std 14, 48(1)
    std 15, 56(1)
    std 16, 64(1)
    std 17, 72(1)
    std 18, 80(1)
    std 19, 88(1)
    std 20, 96(1)
    std 21, 104(1)
    std 22, 112(1)
    std 23, 120(1)
    std 24, 128(1)
    std 25, 136(1)
    std 26, 144(1)
    std 27, 152(1)
    std 28, 160(1)
    std 29, 168(1)
    std 30, 176(1)
    std 31, 184(1)
    mfcr 10
    std 10, 192(1)
    mfmsr 11
    std 11, 200(1)
    mtsrr0 4
    mr 4, 5
    bcl 20, 31, 1f
1:  mflr 12
    addi 12, 12, (2f - 1b)
    mtlr 12
    li 12, 1
    rldicr 12, 12, {MSR_SF_BIT}, 0
    ori 12, 12, 1
    andc 11, 11, 12
    mtsrr1 11
    rfid
2:  FIXUP_ENDIAN
    clrldi 1, 1, 32
    ld 0, 200(1)
    mtmsrd 0
    isync
    ld 2, 32(1)
    ld 13, 40(1)
    ld 14, 48(1)
    ld 15, 56(1)
    ld 16, 64(1)
    ld 17, 72(1)
    ld 18, 80(1)
    ld 19, 88(1)
    ld 20, 96(1)
    ld 21, 104(1)
    ld 22, 112(1)
    ld 23, 120(1)
    ld 24, 128(1)
    ld 25, 136(1)
    ld 26, 144(1)
    ld 27, 152(1)
    ld 28, 160(1)
    ld 29, 168(1)
    ld 30, 176(1)
    ld 31, 184(1)
    ld 4, 192(1)
    mtcr 4
    addi 1, 1, 256
    ld 0, 16(1)
    mtlr 0
    blr
