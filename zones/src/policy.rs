//! The address policy: which addresses a terminal may publish, and how many.
//!
//! One policy for every path that writes addresses (an UPDATE, an import), so that nothing
//! reaches the zone that an UPDATE would have refused.
//!
//! - Unspecified (`0.0.0.0`, `::`), multicast and the IPv4 broadcast address are refused:
//!   no caller can connect to them.
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) follow the IPv4 rules, so the mapped
//!   form cannot smuggle in what the IPv4 form is refused for.
//! - At most `max_addresses_per_family` addresses per family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::Addresses;

/// Why addresses were refused; the message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0} cannot be a terminal's address")]
    Unusable(IpAddr),
    #[error("a terminal may have at most {max} addresses per family")]
    TooMany { max: usize },
}

/// Refuses an address no caller could connect to.
pub fn check_address(ip: IpAddr) -> Result<(), PolicyError> {
    let usable = match ip {
        IpAddr::V4(v4) => usable_v4(v4),
        IpAddr::V6(v6) => usable_v6(v6),
    };
    if usable {
        Ok(())
    } else {
        Err(PolicyError::Unusable(ip))
    }
}

fn usable_v4(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
}

fn usable_v6(ip: Ipv6Addr) -> bool {
    match ip.to_ipv4_mapped() {
        Some(v4) => usable_v4(v4),
        None => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

/// Refuses more than `max` addresses in either family.
pub fn check_counts(addresses: &Addresses, max: usize) -> Result<(), PolicyError> {
    if addresses.v4.addrs.len() > max || addresses.v6.addrs.len() > max {
        return Err(PolicyError::TooMany { max });
    }
    Ok(())
}

/// Every rule at once: what a complete set of addresses (an import) must satisfy.
pub fn check_addresses(addresses: &Addresses, max: usize) -> Result<(), PolicyError> {
    let v4 = addresses.v4.addrs.iter().map(|a| IpAddr::V4(*a));
    let v6 = addresses.v6.addrs.iter().map(|a| IpAddr::V6(*a));
    v4.chain(v6).try_for_each(check_address)?;
    check_counts(addresses, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        check_address(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn unusable_addresses_are_refused_in_both_families() {
        for ip in [
            "0.0.0.0",
            "224.0.0.1",
            "239.1.2.3",
            "255.255.255.255",
            "::",
            "ff02::1",
        ] {
            assert!(refused(ip), "{ip} accepted");
        }
        for ip in [
            "192.0.2.1",
            "127.0.0.1",
            "2001:db8::1",
            "::1",
            "::ffff:192.0.2.1",
        ] {
            assert!(!refused(ip), "{ip} refused");
        }
    }

    /// Regression: `::ffff:0.0.0.0` and `::ffff:224.0.0.1` passed the address policy.
    #[test]
    fn ipv4_mapped_ipv6_follows_the_ipv4_rules() {
        for ip in [
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            "::ffff:255.255.255.255",
        ] {
            assert!(refused(ip), "{ip} accepted");
        }
    }

    #[test]
    fn counts_are_capped_per_family() {
        let mut a = Addresses::default();
        a.v4.addrs = (1..=3).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
        assert!(check_counts(&a, 3).is_ok());
        assert_eq!(check_counts(&a, 2), Err(PolicyError::TooMany { max: 2 }));
    }
}
