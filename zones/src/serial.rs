//! SOA serial numbers and their arithmetic (RFC 1982, SERIAL_BITS = 32).

/// A zone's SOA serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Serial(pub u32);

impl Serial {
    /// The serial that follows this one after a change (RFC 1982 §3.1 addition of 1).
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }

    /// RFC 1982 §3.2: `self` is greater than `other`.
    /// (Undefined pairs, exactly 2^31 apart, compare as neither greater nor less.)
    pub fn is_newer_than(self, other: Self) -> bool {
        let (i1, i2) = (self.0, other.0);
        (i1 < i2 && i2 - i1 > 1 << 31) || (i1 > i2 && i1 - i2 < 1 << 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_wraps_at_2_pow_32() {
        assert_eq!(Serial(u32::MAX).next(), Serial(0));
        assert_eq!(Serial(41).next(), Serial(42));
    }

    #[test]
    fn comparison_follows_rfc_1982() {
        assert!(Serial(1).is_newer_than(Serial(0)));
        assert!(!Serial(0).is_newer_than(Serial(1)));
        assert!(
            Serial(0).is_newer_than(Serial(u32::MAX)),
            "wrapped serial is newer"
        );
        assert!(Serial(5).is_newer_than(Serial(u32::MAX - 5)));
        assert!(!Serial(7).is_newer_than(Serial(7)));
        // Exactly 2^31 apart: undefined, neither is newer.
        assert!(!Serial(1 << 31).is_newer_than(Serial(0)));
        assert!(!Serial(0).is_newer_than(Serial(1 << 31)));
    }
}
