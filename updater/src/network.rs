//! The terminal's network cards, their addresses, and wake-ups when they change, from one of
//! two sources chosen with `--watch`:
//!
//! - `netlink` (Linux, the default there): [`crate::netlink`], the kernel's own interface
//!   and its change events, including IPv6 address flags (temporary, deprecated, tentative).
//! - `poll` (everywhere; the only one off Linux): [`crate::ifaddrs`], `getifaddrs(3)` (Linux,
//!   macOS, the BSDs), read again every [`POLL_INTERVAL`]; a change wakes the daemon. It does
//!   not see IPv6 address flags, so temporary addresses count as stable ones.
//!
//! Either way the daemon reads the addresses afresh after a wake-up, so a lost or merged
//! event costs nothing.

use std::time::Duration;

use tokio::sync::mpsc;
use zones::identity::MacAddress;

use crate::discover::InterfaceAddress;
pub use crate::interface::{Interface, NetworkError};

/// How often the portable source looks for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Where addresses and changes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Watch {
    /// The kernel's netlink interface and its events (Linux).
    Netlink,
    /// `getifaddrs(3)`, read again every second (Linux, macOS, the BSDs).
    Poll,
}

impl Watch {
    /// Netlink on Linux, polling elsewhere.
    pub const fn platform_default() -> Self {
        if cfg!(target_os = "linux") {
            Self::Netlink
        } else {
            Self::Poll
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Netlink => "netlink",
            Self::Poll => "poll",
        }
    }
}

/// The source in use.
#[derive(Debug)]
pub enum Network {
    #[cfg(target_os = "linux")]
    Netlink(rtnetlink::Handle),
    Poll,
}

impl Network {
    /// Opens the source `watch` names (its background task runs on the current runtime).
    pub fn open(watch: Watch) -> Result<Self, NetworkError> {
        match watch {
            #[cfg(target_os = "linux")]
            Watch::Netlink => Ok(Self::Netlink(crate::netlink::connect()?)),
            #[cfg(not(target_os = "linux"))]
            Watch::Netlink => Err(NetworkError::NoNetlink),
            Watch::Poll => Ok(Self::Poll),
        }
    }

    /// Every interface, in the kernel's order.
    pub async fn interfaces(&self) -> Result<Vec<Interface>, NetworkError> {
        match self {
            #[cfg(target_os = "linux")]
            Self::Netlink(handle) => crate::netlink::interfaces(handle).await,
            Self::Poll => crate::ifaddrs::interfaces(),
        }
    }

    /// The named interface; else the first card (non-loopback, with a MAC) that is up; else
    /// the first card.
    pub async fn find_card(&self, name: Option<&str>) -> Result<Interface, NetworkError> {
        let all = self.interfaces().await?;
        match name {
            Some(name) => all
                .into_iter()
                .find(|i| i.name == name)
                .ok_or_else(|| NetworkError::NoSuchInterface(name.to_owned())),
            None => {
                let cards: Vec<Interface> = all
                    .into_iter()
                    .filter(|i| !i.loopback && i.mac.is_some())
                    .collect();
                let up = cards.iter().find(|i| i.up).cloned();
                up.or_else(|| cards.into_iter().next())
                    .ok_or(NetworkError::NoCard)
            }
        }
    }

    /// The MAC address of the named interface (or of the first card).
    pub async fn card_mac(&self, name: Option<&str>) -> Result<(String, MacAddress), NetworkError> {
        let card = self.find_card(name).await?;
        let mac = card
            .mac
            .ok_or_else(|| NetworkError::NoMac(card.name.clone()))?;
        Ok((card.name, mac))
    }

    /// The addresses of one interface (which must exist), or of every non-loopback
    /// interface.
    pub async fn addresses(
        &self,
        interface: Option<&str>,
    ) -> Result<Vec<InterfaceAddress>, NetworkError> {
        match self {
            #[cfg(target_os = "linux")]
            Self::Netlink(handle) => crate::netlink::addresses(handle, interface).await,
            Self::Poll => crate::ifaddrs::addresses(interface),
        }
    }

    /// A receiver woken on every change of cards or addresses.
    pub fn watch(&self) -> Result<mpsc::Receiver<()>, NetworkError> {
        match self {
            #[cfg(target_os = "linux")]
            Self::Netlink(_) => crate::netlink::watch(),
            Self::Poll => Ok(crate::ifaddrs::watch(POLL_INTERVAL)),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn sorted(mut addresses: Vec<InterfaceAddress>) -> Vec<std::net::IpAddr> {
        addresses.sort_by_key(|a| a.ip);
        addresses.into_iter().map(|a| a.ip).collect()
    }

    /// The portable source sees what netlink sees on this machine: the same cards with the
    /// same MACs, and the same addresses.
    #[tokio::test]
    async fn the_portable_source_sees_what_netlink_sees() {
        let netlink = Network::open(Watch::Netlink).unwrap();
        let portable = Network::open(Watch::Poll).unwrap();
        let mut cards = netlink.interfaces().await.unwrap();
        let mut seen = portable.interfaces().await.unwrap();
        cards.sort_by(|a, b| a.name.cmp(&b.name));
        seen.sort_by(|a, b| a.name.cmp(&b.name));
        // getifaddrs lists a card only once it has an address or a link layer.
        let listed: Vec<&Interface> = cards
            .iter()
            .filter(|c| seen.iter().any(|s| s.name == c.name))
            .collect();
        assert!(
            !listed.is_empty(),
            "no card in common: {cards:?} / {seen:?}"
        );
        for card in listed {
            let other = seen.iter().find(|s| s.name == card.name).unwrap();
            assert_eq!(
                (card.mac, card.loopback),
                (other.mac, other.loopback),
                "{}",
                card.name
            );
            assert_eq!(
                sorted(netlink.addresses(Some(&card.name)).await.unwrap()),
                sorted(portable.addresses(Some(&card.name)).await.unwrap()),
                "{}",
                card.name
            );
        }
        assert_eq!(
            sorted(netlink.addresses(None).await.unwrap()),
            sorted(portable.addresses(None).await.unwrap())
        );
    }
}
