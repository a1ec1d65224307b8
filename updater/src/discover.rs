//! Which addresses a terminal publishes: the sources and the filter.
//!
//! With `--address auto` the updater combines, for IPv4 and IPv6 independently and in this
//! order (duplicates dropped):
//!
//! 1. fixed `--address IP` values, as given (never filtered);
//! 2. what the directory sees: `whoami.<zone>` asked over IPv4 and over IPv6, the global
//!    address after any NAT;
//! 3. the interface's own addresses.
//!
//! Discovered addresses (2 and 3) pass [`usable`]: no loopback, link-local, unspecified,
//! multicast or broadcast ever; no private (RFC 1918, ULA) or shared (RFC 6598) ranges unless
//! `--allow-private` (a lab or a company network); and no IPv6 address that the interface
//! marks temporary (privacy), deprecated, tentative or failed DAD, even when whoami reports
//! it as the source it saw. A family with nothing usable is published empty.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address configured on an interface, with the flags that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub ip: IpAddr,
    /// IPv6 privacy address (RFC 8981).
    pub temporary: bool,
    /// Deprecated, tentative or failed duplicate detection: not to be published.
    pub unusable: bool,
}

/// The addresses to publish, per family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressSet {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

impl AddressSet {
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    fn push(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) if !self.v4.contains(&v4) => self.v4.push(v4),
            IpAddr::V6(v6) if !self.v6.contains(&v6) => self.v6.push(v6),
            _ => {}
        }
    }

    /// Same addresses, in any order.
    pub fn same_as(&self, other: &Self) -> bool {
        let mut a = self.clone();
        let mut b = other.clone();
        a.v4.sort();
        a.v6.sort();
        b.v4.sort();
        b.v6.sort();
        a == b
    }

    /// `192.0.2.1 2001:db8::1`, or `none`.
    pub fn describe(&self) -> String {
        let all: Vec<String> = self
            .v4
            .iter()
            .map(ToString::to_string)
            .chain(self.v6.iter().map(ToString::to_string))
            .collect();
        if all.is_empty() {
            "none".into()
        } else {
            all.join(" ")
        }
    }
}

/// True if a discovered address may be published.
pub fn usable(ip: IpAddr, allow_private: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => usable_v4(v4, allow_private),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => usable_v4(v4, allow_private),
            None => usable_v6(v6, allow_private),
        },
    }
}

fn usable_v4(ip: Ipv4Addr, allow_private: bool) -> bool {
    let never = ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast();
    let shared = ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64;
    !never && (allow_private || !(ip.is_private() || shared))
}

fn usable_v6(ip: Ipv6Addr, allow_private: bool) -> bool {
    let seg0 = ip.segments()[0];
    let link_local = seg0 & 0xffc0 == 0xfe80;
    let unique_local = seg0 & 0xfe00 == 0xfc00;
    let never = ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || link_local;
    !never && (allow_private || !unique_local)
}

/// Combines the sources in the documented order.
pub fn combine(
    fixed: &[IpAddr],
    whoami: &[IpAddr],
    interface: &[InterfaceAddress],
    allow_private: bool,
) -> AddressSet {
    let mut set = AddressSet::default();
    for ip in fixed {
        set.push(*ip);
    }
    let excluded = |ip: &IpAddr| {
        interface
            .iter()
            .any(|a| a.ip == *ip && (a.temporary || a.unusable))
    };
    for ip in whoami.iter().filter(|ip| !excluded(ip)) {
        if usable(*ip, allow_private) {
            set.push(*ip);
        }
    }
    for a in interface.iter().filter(|a| !a.temporary && !a.unusable) {
        if usable(a.ip, allow_private) {
            set.push(a.ip);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn iface(s: &str) -> InterfaceAddress {
        InterfaceAddress {
            ip: ip(s),
            temporary: false,
            unusable: false,
        }
    }

    #[test]
    fn filters_addresses_that_cannot_be_reached_from_outside() {
        for never in [
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "::",
            "ff02::1",
        ] {
            assert!(!usable(ip(never), true), "{never}");
        }
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(!usable(ip(private), false), "{private}");
            assert!(usable(ip(private), true), "{private} with --allow-private");
        }
        for public in ["192.0.2.1", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(usable(ip(public), false), "{public}");
        }
        assert!(!usable(ip("::ffff:127.0.0.1"), true), "v4-mapped loopback");
    }

    #[test]
    fn combines_fixed_whoami_and_interface_in_order_without_duplicates() {
        let set = combine(
            &[ip("198.51.100.7")],
            &[ip("203.0.113.5"), ip("2001:db8::5")],
            &[
                iface("192.168.1.10"),
                iface("2001:db8::5"),
                iface("2001:db8::6"),
            ],
            false,
        );
        assert_eq!(
            set.v4,
            vec![
                "198.51.100.7".parse::<Ipv4Addr>().unwrap(),
                "203.0.113.5".parse().unwrap()
            ]
        );
        assert_eq!(
            set.v6,
            vec![
                "2001:db8::5".parse::<Ipv6Addr>().unwrap(),
                "2001:db8::6".parse().unwrap()
            ]
        );
    }

    #[test]
    fn temporary_and_deprecated_ipv6_addresses_are_skipped_even_from_whoami() {
        let temporary = InterfaceAddress {
            temporary: true,
            ..iface("2001:db8::aaaa")
        };
        let deprecated = InterfaceAddress {
            unusable: true,
            ..iface("2001:db8::bbbb")
        };
        let set = combine(
            &[],
            &[ip("2001:db8::aaaa")],
            &[temporary, deprecated, iface("2001:db8::1")],
            false,
        );
        assert_eq!(set.v6, vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
    }

    #[test]
    fn families_are_independent() {
        let only_v6 = combine(&[], &[], &[iface("2001:db8::1")], false);
        assert!(only_v6.v4.is_empty());
        assert_eq!(only_v6.v6.len(), 1);
    }

    #[test]
    fn comparison_ignores_order() {
        let a = combine(&[ip("192.0.2.1"), ip("192.0.2.2")], &[], &[], false);
        let b = combine(&[ip("192.0.2.2"), ip("192.0.2.1")], &[], &[], false);
        assert!(a.same_as(&b));
        assert!(!a.same_as(&AddressSet::default()));
    }
}
