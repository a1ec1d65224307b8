//! What every address source reports ([`crate::netlink`], [`crate::ifaddrs`]): the network
//! cards, and why the network configuration could not be read.

use zones::identity::MacAddress;

/// Why the network configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink request failed: {0}")]
    Request(String),
    #[error("cannot list the network interfaces (getifaddrs): {0}")]
    Interfaces(String),
    #[error("--watch netlink needs Linux; use --watch poll")]
    NoNetlink,
    #[error("no network interface named {0:?}")]
    NoSuchInterface(String),
    #[error("interface {0:?} has no MAC address")]
    NoMac(String),
    #[error(
        "no network interface with a MAC address was found; name one with --interface or give --mac"
    )]
    NoCard,
}

/// A network card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<MacAddress>,
    pub loopback: bool,
    /// Administratively up with a carrier.
    pub up: bool,
}
