//! The portable source: cards and addresses from `getifaddrs(3)` (through nix), on Linux,
//! macOS and the BSDs, and changes found by reading it again at an interval.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use tokio::sync::mpsc;
use zones::identity::MacAddress;

use crate::discover::InterfaceAddress;
use crate::interface::{Interface, NetworkError};

/// One entry of `getifaddrs`: an interface and one of its addresses (IP or link layer).
struct Entry {
    name: String,
    flags: InterfaceFlags,
    ip: Option<IpAddr>,
    mac: Option<MacAddress>,
}

fn entries() -> Result<Vec<Entry>, NetworkError> {
    let all = getifaddrs().map_err(|e| NetworkError::Interfaces(e.to_string()))?;
    Ok(all
        .map(|ifa| {
            let address = ifa.address.as_ref();
            let ip = address.and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            });
            let mac = address
                .and_then(|a| a.as_link_addr())
                .and_then(|link| link.addr())
                .filter(|bytes| bytes.iter().any(|b| *b != 0))
                .map(MacAddress);
            Entry {
                name: ifa.interface_name,
                flags: ifa.flags,
                ip,
                mac,
            }
        })
        .collect())
}

/// Every interface, in the order `getifaddrs` first lists it.
pub fn interfaces() -> Result<Vec<Interface>, NetworkError> {
    let mut out: Vec<Interface> = Vec::new();
    for entry in entries()? {
        let index = match out.iter().position(|i| i.name == entry.name) {
            Some(index) => index,
            None => {
                out.push(Interface {
                    name: entry.name.clone(),
                    mac: None,
                    loopback: entry.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                    up: entry
                        .flags
                        .contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING),
                });
                out.len() - 1
            }
        };
        if entry.mac.is_some() {
            out[index].mac = entry.mac;
        }
    }
    Ok(out)
}

/// The addresses of one interface, or of every non-loopback interface. `getifaddrs` carries
/// no IPv6 address flags: none is marked temporary or unusable.
pub fn addresses(interface: Option<&str>) -> Result<Vec<InterfaceAddress>, NetworkError> {
    let entries = entries()?;
    if let Some(name) = interface {
        if !entries.iter().any(|e| e.name == name) {
            return Err(NetworkError::NoSuchInterface(name.to_owned()));
        }
    }
    Ok(entries
        .into_iter()
        .filter(|e| match interface {
            Some(name) => e.name == name,
            None => !e.flags.contains(InterfaceFlags::IFF_LOOPBACK),
        })
        .filter_map(|e| e.ip)
        .map(|ip| InterfaceAddress {
            ip,
            temporary: false,
            unusable: false,
        })
        .collect())
}

/// One interface's name, flags, MAC and one of its addresses.
type Reading = (String, u32, Option<[u8; 6]>, Option<IpAddr>);

/// What a change would alter: every interface's name, state, MAC and addresses.
fn snapshot() -> BTreeSet<Reading> {
    entries()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.flags.bits() as u32, e.mac.map(|m| m.0), e.ip))
        .collect()
}

/// Wakes the receiver whenever a reading every `every` differs from the one before.
pub fn watch(every: Duration) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut before = snapshot();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = snapshot();
            if now != before {
                before = now;
                if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            }
        }
    });
    rx
}
