//! PAPR hypervisor-call status codes: names and long-busy delays.
//!
//! A status is the value an hcall leaves in r3: 0 success, positive "not done yet", negative an
//! error. The constants are the ones vioboot, the VIO server or the test hypervisor return or
//! test for; [`name`] knows every status of Linux's `hvcall.h`.

/// The call did what was asked.
pub const H_SUCCESS: i64 = 0;
/// Try again at once.
pub const H_BUSY: i64 = 1;
/// The partner's end of a CRQ is not open (H_SEND_CRQ with no partner CRQ registered).
pub const H_CLOSED: i64 = 2;
/// The hypervisor does not implement the call.
pub const H_FUNCTION: i64 = -2;
/// A parameter is out of range (e.g. an H_SEND_CRQ entry without its valid bit).
pub const H_PARAMETER: i64 = -4;
/// The partner's CRQ is full.
pub const H_DROPPED: i64 = -12;
/// An IOBA is outside the window or its TCE lacks the needed permission.
pub const H_DEST_PARM: i64 = -14;
/// The resource is in use, e.g. a CRQ is already registered.
pub const H_RESOURCE: i64 = -16;
/// The first long-busy status: wait about 1 ms, then call again.
pub const H_LONG_BUSY_ORDER_1_MSEC: i64 = 9900;
/// The last long-busy status: wait about 100 s, then call again.
pub const H_LONG_BUSY_ORDER_100_SEC: i64 = 9905;

const NAMES: &[(i64, &str)] = &[
    (0, "H_SUCCESS"),
    (1, "H_BUSY"),
    (2, "H_CLOSED"),
    (3, "H_NOT_AVAILABLE"),
    (4, "H_CONSTRAINED"),
    (5, "H_PARTIAL"),
    (14, "H_IN_PROGRESS"),
    (15, "H_PAGE_REGISTERED"),
    (16, "H_PARTIAL_STORE"),
    (17, "H_PENDING"),
    (18, "H_CONTINUE"),
    (9900, "H_LONG_BUSY_ORDER_1_MSEC"),
    (9901, "H_LONG_BUSY_ORDER_10_MSEC"),
    (9902, "H_LONG_BUSY_ORDER_100_MSEC"),
    (9903, "H_LONG_BUSY_ORDER_1_SEC"),
    (9904, "H_LONG_BUSY_ORDER_10_SEC"),
    (9905, "H_LONG_BUSY_ORDER_100_SEC"),
    (-1, "H_HARDWARE"),
    (-2, "H_FUNCTION"),
    (-3, "H_PRIVILEGE"),
    (-4, "H_PARAMETER"),
    (-5, "H_BAD_MODE"),
    (-6, "H_PTEG_FULL"),
    (-7, "H_NOT_FOUND"),
    (-8, "H_RESERVED_DABR"),
    (-9, "H_NO_MEM"),
    (-10, "H_AUTHORITY"),
    (-11, "H_PERMISSION"),
    (-12, "H_DROPPED"),
    (-13, "H_SOURCE_PARM"),
    (-14, "H_DEST_PARM"),
    (-15, "H_REMOTE_PARM"),
    (-16, "H_RESOURCE"),
    (-17, "H_ADAPTER_PARM"),
    (-18, "H_RH_PARM"),
    (-19, "H_RCQ_PARM"),
    (-20, "H_SCQ_PARM"),
    (-21, "H_EQ_PARM"),
    (-22, "H_RT_PARM"),
    (-23, "H_ST_PARM"),
    (-24, "H_SIGP_PARM"),
    (-25, "H_TOKEN_PARM"),
    (-27, "H_MLENGTH_PARM"),
    (-28, "H_MEM_PARM"),
    (-29, "H_MEM_ACCESS_PARM"),
    (-30, "H_ATTR_PARM"),
    (-31, "H_PORT_PARM"),
    (-32, "H_MCG_PARM"),
    (-33, "H_VL_PARM"),
    (-34, "H_TSIZE_PARM"),
    (-35, "H_TRACE_PARM"),
    (-37, "H_MASK_PARM"),
    (-38, "H_MCG_FULL"),
    (-39, "H_ALIAS_EXIST"),
    (-40, "H_P_COUNTER"),
    (-41, "H_TABLE_FULL"),
    (-42, "H_ALT_TABLE"),
    (-43, "H_MR_CONDITION"),
    (-44, "H_NOT_ENOUGH_RESOURCES"),
    (-45, "H_R_STATE"),
    (-46, "H_RESCINDED"),
    (-55, "H_P2"),
    (-56, "H_P3"),
    (-57, "H_P4"),
    (-58, "H_P5"),
    (-59, "H_P6"),
    (-60, "H_P7"),
    (-61, "H_P8"),
    (-62, "H_P9"),
    (-63, "H_NOOP"),
    (-64, "H_TOO_BIG"),
    (-67, "H_UNSUPPORTED"),
    (-68, "H_OVERLAP"),
    (-69, "H_INTERRUPT"),
    (-70, "H_BAD_DATA"),
    (-71, "H_NOT_ACTIVE"),
    (-72, "H_SG_LIST"),
    (-73, "H_OP_MODE"),
    (-74, "H_COP_HW"),
    (-75, "H_STATE"),
];

/// PAPR's name for a status, if it has one.
pub fn name(status: i64) -> Option<&'static str> {
    NAMES.iter().find(|(s, _)| *s == status).map(|(_, n)| *n)
}

/// For a long-busy status (9900..=9905), how long the hypervisor asks us to wait, in ms.
pub fn long_busy_ms(status: i64) -> Option<u64> {
    (H_LONG_BUSY_ORDER_1_MSEC..=H_LONG_BUSY_ORDER_100_SEC)
        .contains(&status)
        .then(|| 10u64.pow((status - H_LONG_BUSY_ORDER_1_MSEC) as u32))
}

/// Whether the call should simply be made again (H_BUSY or long busy).
pub fn is_busy(status: i64) -> bool {
    status == H_BUSY || long_busy_ms(status).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_delays() {
        assert_eq!(name(H_PARAMETER), Some("H_PARAMETER"));
        assert_eq!(name(-12), Some("H_DROPPED"));
        assert_eq!(name(12345), None);
        assert_eq!(long_busy_ms(9900), Some(1));
        assert_eq!(long_busy_ms(9905), Some(100_000));
        assert_eq!(long_busy_ms(9906), None);
        assert!(is_busy(H_BUSY) && is_busy(9903) && !is_busy(H_CLOSED));
    }

    #[test]
    fn constants_carry_their_names() {
        for (status, n) in [
            (H_SUCCESS, "H_SUCCESS"),
            (H_BUSY, "H_BUSY"),
            (H_CLOSED, "H_CLOSED"),
            (H_FUNCTION, "H_FUNCTION"),
            (H_PARAMETER, "H_PARAMETER"),
            (H_DROPPED, "H_DROPPED"),
            (H_DEST_PARM, "H_DEST_PARM"),
            (H_RESOURCE, "H_RESOURCE"),
            (H_LONG_BUSY_ORDER_1_MSEC, "H_LONG_BUSY_ORDER_1_MSEC"),
            (H_LONG_BUSY_ORDER_100_SEC, "H_LONG_BUSY_ORDER_100_SEC"),
        ] {
            assert_eq!(name(status), Some(n));
        }
    }
}
