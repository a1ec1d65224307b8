//! Update leases (RFC 9664, the EDNS(0) Update Lease option, code 2).
//!
//! A client asks for a lease (seconds) in its UPDATE; the server grants one within its
//! bounds and returns it in the response's OPT record. When a terminal's lease runs out
//! without a refresh, the terminal is offline: its addresses are no longer answered.
//! The option's data is LEASE (u32) optionally followed by KEY-LEASE (u32), which this
//! directory does not use (keys live until rotated or unregistered).

/// EDNS option code of the Update Lease option.
pub const OPTION_CODE: u16 = 2;

/// The server's lease policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeasePolicy {
    /// Shortest lease granted.
    pub min: u32,
    /// Longest lease granted.
    pub max: u32,
    /// Lease of updates without the option (plain nsupdate); `None`: no expiry.
    pub default: Option<u32>,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self {
            min: 60,
            max: 86_400,
            default: None,
        }
    }
}

impl LeasePolicy {
    /// The lease granted for a request asking `requested` seconds (or none).
    pub fn grant(&self, requested: Option<u32>) -> Option<u32> {
        match requested {
            Some(asked) => Some(asked.clamp(self.min, self.max.max(self.min))),
            None => self.default,
        }
    }
}

/// The option data for a lease.
pub fn encode(lease: u32) -> Vec<u8> {
    lease.to_be_bytes().to_vec()
}

/// The LEASE of an option's data: 4 bytes, or 8 with KEY-LEASE. Anything else is malformed.
pub fn decode(data: &[u8]) -> Option<u32> {
    match data.len() {
        4 | 8 => Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]])),
        _ => None,
    }
}

/// When to refresh a granted lease: at 80% of it plus `jitter` (0.0 to 1.0) of a further 5%.
pub fn refresh_after(granted: u32, jitter: f64) -> std::time::Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    let seconds = f64::from(granted) * (0.80 + 0.05 * jitter);
    std::time::Duration::from_secs_f64(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_within_bounds() {
        let p = LeasePolicy {
            min: 60,
            max: 7200,
            default: None,
        };
        assert_eq!(p.grant(Some(3600)), Some(3600));
        assert_eq!(p.grant(Some(5)), Some(60));
        assert_eq!(p.grant(Some(u32::MAX)), Some(7200));
        assert_eq!(p.grant(None), None);
        let with_default = LeasePolicy {
            default: Some(600),
            ..p
        };
        assert_eq!(with_default.grant(None), Some(600));
    }

    #[test]
    fn option_data_round_trips_and_rejects_bad_lengths() {
        assert_eq!(decode(&encode(3600)), Some(3600));
        assert_eq!(
            decode(&[0, 0, 14, 16, 0, 0, 0, 1]),
            Some(3600),
            "with KEY-LEASE"
        );
        assert_eq!(decode(&[0, 0, 14]), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn refresh_is_between_80_and_85_percent() {
        assert_eq!(refresh_after(3600, 0.0).as_secs(), 2880);
        assert_eq!(refresh_after(3600, 1.0).as_secs(), 3060);
        assert_eq!(
            refresh_after(3600, 7.0).as_secs(),
            3060,
            "jitter is clamped"
        );
    }
}
