//! Linux netlink (rtnetlink): network cards, their addresses, and change events (the
//! `netlink` source of [`crate::network`]).
//!
//! [`watch`] subscribes to the kernel's link, address and route groups and turns every
//! event into a wake-up; the daemon then reads the addresses afresh, so a lost or merged
//! event costs nothing.

use futures_util::stream::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::mpsc;
use zones::identity::MacAddress;

use crate::discover::InterfaceAddress;
use crate::interface::{Interface, NetworkError};

/// A connection for requests (its background task is spawned on the current runtime).
pub fn connect() -> Result<Handle, NetworkError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// A card with the kernel's index for it.
struct Link {
    index: u32,
    interface: Interface,
}

fn link_of(msg: &LinkMessage) -> Link {
    let mut name = String::new();
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name.clone_from(n),
            LinkAttribute::Address(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice())
                    .ok()
                    .filter(|b| b.iter().any(|x| *x != 0))
                    .map(MacAddress);
            }
            _ => {}
        }
    }
    Link {
        index: msg.header.index,
        interface: Interface {
            name,
            mac,
            loopback: msg.header.flags.contains(LinkFlags::Loopback),
            up: msg
                .header
                .flags
                .contains(LinkFlags::Up | LinkFlags::LowerUp),
        },
    }
}

async fn links(handle: &Handle) -> Result<Vec<Link>, NetworkError> {
    let messages: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| NetworkError::Request(e.to_string()))?;
    let mut all: Vec<Link> = messages.iter().map(link_of).collect();
    all.sort_by_key(|l| l.index);
    Ok(all)
}

/// Every interface, in index order.
pub async fn interfaces(handle: &Handle) -> Result<Vec<Interface>, NetworkError> {
    Ok(links(handle)
        .await?
        .into_iter()
        .map(|l| l.interface)
        .collect())
}

/// The addresses of one interface, or of every non-loopback interface.
pub async fn addresses(
    handle: &Handle,
    interface: Option<&str>,
) -> Result<Vec<InterfaceAddress>, NetworkError> {
    let all = links(handle).await?;
    let wanted: Vec<u32> = match interface {
        Some(name) => {
            let card = all
                .iter()
                .find(|l| l.interface.name == name)
                .ok_or_else(|| NetworkError::NoSuchInterface(name.to_owned()))?;
            vec![card.index]
        }
        None => all
            .iter()
            .filter(|l| !l.interface.loopback)
            .map(|l| l.index)
            .collect(),
    };
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| NetworkError::Request(e.to_string()))?;
    Ok(messages
        .iter()
        .filter(|m| wanted.contains(&m.header.index))
        .filter_map(address_of)
        .collect())
}

fn address_of(msg: &AddressMessage) -> Option<InterfaceAddress> {
    let mut address = None;
    let mut local = None;
    let mut flags = AddressFlags::from_bits_truncate(u32::from(msg.header.flags.bits()));
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    // IPv4: IFA_LOCAL is our address (IFA_ADDRESS is the peer on point-to-point links).
    let ip = match msg.header.family {
        AddressFamily::Inet => local.or(address)?,
        _ => address.or(local)?,
    };
    let v6 = ip.is_ipv6();
    Some(InterfaceAddress {
        ip,
        // IFA_F_TEMPORARY has the value of IFA_F_SECONDARY and only means it for IPv6.
        temporary: v6 && flags.contains(AddressFlags::Secondary),
        unusable: flags.intersects(
            AddressFlags::Deprecated | AddressFlags::Tentative | AddressFlags::Dadfailed,
        ),
    })
}

/// Wakes the receiver on every link, address or route change the kernel reports.
pub fn watch() -> Result<mpsc::Receiver<()>, NetworkError> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ];
    let (connection, handle, mut messages) =
        rtnetlink::new_multicast_connection(&groups).map_err(NetworkError::Socket)?;
    tokio::spawn(connection);
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        // The connection lives as long as a handle to it does.
        let _handle = handle;
        while messages.next().await.is_some() {
            // A full channel already holds a wake-up; this event adds nothing.
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                return;
            }
        }
    });
    Ok(rx)
}
