//! The waiting registration (M1): keep the directory's entry for this terminal right.
//!
//! ```text
//! start ─ check the key is bound to this card's MID ─ random delay (0-1 s)
//!   loop: wait for the first of
//!           a netlink event (address, link or route change; debounced 200 ms)
//!           the recheck timer (default 60 s: a NAT's address changes silently)
//!           the lease refresh (80-85% of the granted lease)
//!           the backoff after a failure (1 s doubling to 5 min, jittered)
//!           SIGTERM / SIGINT
//!         sync: discover the addresses, ask the directory what it answers now, and send
//!               one signed UPDATE replacing A and AAAA if they differ or the lease is due
//! exit: withdraw the addresses (unless --keep-on-exit), so callers see "offline" at once
//! ```
//!
//! Comparing with what the directory answers, not with a local cache, heals the entry when
//! it was changed or lost elsewhere.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use zones::identity::{MacAddress, Mid};
use zones::key::TerminalKeyName;

use crate::backoff::{self, Backoff};
use crate::client::{ClientError, DirectoryClient};
use crate::config::Settings;
use crate::discover::{self, AddressSet};
use crate::netlink::{self, NetlinkError};

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the key {key} is not a terminal key (expected <code>.<mid>.<kid>.key.<zone>)")]
    NotATerminalKey { key: String },
    #[error("the key is for calling code {key_code}, not {code}; use the key issued for {code}")]
    WrongCode { key_code: String, code: String },
    #[error(
        "the key is bound to machine {key_mid}, but this machine's MID is {ours} (card {card}, MAC {mac}); use the key issued for this machine, or name the right card with --interface"
    )]
    WrongMachine {
        key_mid: String,
        ours: String,
        card: String,
        mac: String,
    },
}

/// Refuses a key bound to another machine: the key's MID must be this card's.
pub fn check_binding(
    settings: &Settings,
    card: &str,
    mac: &MacAddress,
) -> Result<TerminalKeyName, DaemonError> {
    let bound =
        TerminalKeyName::parse(&settings.key.name).ok_or_else(|| DaemonError::NotATerminalKey {
            key: settings.key.name.clone(),
        })?;
    if bound.code != settings.code {
        return Err(DaemonError::WrongCode {
            key_code: bound.code.to_string(),
            code: settings.code.to_string(),
        });
    }
    let ours = if bound.mid.as_str().len() == Mid::RAW_LEN {
        Mid::raw(mac)
    } else {
        Mid::derive(&bound.kid, mac)
    };
    if ours != bound.mid {
        return Err(DaemonError::WrongMachine {
            key_mid: bound.mid.to_string(),
            ours: ours.to_string(),
            card: card.to_owned(),
            mac: mac.to_string(),
        });
    }
    Ok(bound)
}

/// The terminal side: settings, the directory, and the network.
pub struct Terminal {
    settings: Settings,
    client: DirectoryClient,
    netlink: rtnetlink::Handle,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("code", &self.settings.code)
            .finish_non_exhaustive()
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The directory already answered our addresses and the lease was not due.
    Unchanged,
    /// An UPDATE was sent and accepted; the lease granted (seconds), if any.
    Published {
        addresses: AddressSet,
        lease: Option<u32>,
    },
}

impl Terminal {
    /// Checks the key against this machine's card and prepares the client.
    pub async fn new(settings: Settings) -> Result<Self, DaemonError> {
        let netlink = netlink::connect()?;
        let (card, mac) = netlink::card_mac(&netlink, settings.interface.as_deref()).await?;
        let bound = check_binding(&settings, &card, &mac)?;
        info!(code = %settings.code, mid = %bound.mid, %card, "key is bound to this machine");
        let client = DirectoryClient {
            servers: settings.servers.clone(),
            zone: settings.zone.clone(),
            code: settings.code.clone(),
            key: settings.key.clone(),
            timeout: settings.timeout,
        };
        Ok(Self {
            settings,
            client,
            netlink,
        })
    }

    /// The addresses to publish now, from the configured sources.
    pub async fn discover(&self) -> Result<AddressSet, DaemonError> {
        let s = &self.settings;
        if !s.auto {
            return Ok(discover::combine(&s.fixed, &[], &[], s.allow_private));
        }
        let whoami = self.client.whoami().await;
        let interface = netlink::addresses(&self.netlink, s.interface.as_deref()).await?;
        Ok(discover::combine(
            &s.fixed,
            &whoami,
            &interface,
            s.allow_private,
        ))
    }

    /// Discovers, compares with the directory, and publishes if needed (or if `force`).
    pub async fn sync(&self, force: bool) -> Result<Synced, DaemonError> {
        let wanted = self.discover().await?;
        let published = self.client.published().await?;
        if !force && wanted.same_as(&published) {
            return Ok(Synced::Unchanged);
        }
        if !wanted.same_as(&published) {
            info!(directory = %published.describe(), terminal = %wanted.describe(), "addresses differ");
        }
        let lease = self
            .client
            .publish(&wanted, self.settings.ttl, Some(self.settings.lease))
            .await?;
        let shown = lease.map_or_else(|| "none".to_owned(), |l| format!("{l}s"));
        info!(addresses = %wanted.describe(), lease = %shown, "published");
        Ok(Synced::Published {
            addresses: wanted,
            lease,
        })
    }

    /// Removes this terminal's addresses from the directory.
    pub async fn withdraw(&self) -> Result<(), DaemonError> {
        self.client.withdraw().await?;
        info!(code = %self.settings.code, "addresses withdrawn: the terminal is offline");
        Ok(())
    }

    /// Runs until `shutdown`; then withdraws the addresses unless `--keep-on-exit`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let mut events = netlink::watch()?;
        let start_delay = Duration::from_secs_f64(backoff::jitter());
        let mut wake_at = Instant::now() + start_delay;
        let mut refresh_at: Option<Instant> = None;
        let mut published_once = false;
        let mut backoff = Backoff::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.recv() => {
                    if event.is_none() {
                        warn!("netlink events stopped; relying on the recheck timer");
                        events = netlink::watch()?;
                    }
                    // Let a burst of changes (address removed, address added) settle.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while events.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep_until(wake_at) => {}
            }
            let due = match refresh_at {
                Some(t) => Instant::now() >= t,
                None => !published_once,
            };
            let wait = match self.sync(due).await {
                Ok(synced) => {
                    backoff.reset();
                    if let Synced::Published { lease, .. } = synced {
                        published_once = true;
                        refresh_at = lease.map(|l| {
                            Instant::now() + zones::lease::refresh_after(l, backoff::jitter())
                        });
                    }
                    let until_refresh =
                        refresh_at.map_or(self.settings.recheck, |t| t - Instant::now());
                    self.settings.recheck.min(until_refresh)
                }
                Err(e) if needs_a_person(&e) => {
                    error!(error = %e, "cannot keep the directory entry; retrying in an hour");
                    backoff::AFTER_AUTH_FAILURE
                }
                Err(e) => {
                    let d = backoff.next_delay(backoff::jitter());
                    warn!(error = %e, "update failed; retrying in {:.1}s", d.as_secs_f64());
                    d
                }
            };
            wake_at = Instant::now() + wait;
        }
        if self.settings.keep_on_exit {
            info!("stopping; addresses left in the directory (--keep-on-exit)");
            return Ok(());
        }
        self.withdraw().await
    }
}

fn needs_a_person(e: &DaemonError) -> bool {
    match e {
        DaemonError::Client(c) => c.needs_a_person(),
        DaemonError::Netlink(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn settings(key_name: &str) -> Settings {
        Settings {
            servers: vec!["127.0.0.1:5353".parse().unwrap()],
            zone: hickory_proto::rr::Name::from_ascii("dial.example.").unwrap(),
            code: "5551234".parse().unwrap(),
            key: zones::key::TsigKey {
                name: key_name.into(),
                algorithm: zones::key::Algorithm::HmacSha256,
                secret: zones::key::Secret::from_bytes(vec![1; 32]),
            },
            interface: None,
            auto: true,
            fixed: Vec::new(),
            ttl: 60,
            lease: 3600,
            allow_private: false,
            keep_on_exit: false,
            recheck: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn keys_bound_to_this_card_pass() {
        let mac: MacAddress = "3c:22:fb:01:02:03".parse().unwrap();
        // The derived MID of acme-0042 over this MAC (see zones::identity's fixed vector).
        let derived = settings("5551234.34d6aaa6266856e4.acme-0042.key.dial.example.");
        assert!(check_binding(&derived, "eth0", &mac).is_ok());
        let raw = settings("5551234.3c22fb010203.acme-0042.key.dial.example.");
        assert!(check_binding(&raw, "eth0", &mac).is_ok());
    }

    #[test]
    fn keys_of_other_machines_or_codes_are_refused() {
        let mac: MacAddress = "3c:22:fb:01:02:04".parse().unwrap();
        let other = settings("5551234.34d6aaa6266856e4.acme-0042.key.dial.example.");
        let err = check_binding(&other, "eth0", &mac).unwrap_err();
        assert!(matches!(err, DaemonError::WrongMachine { .. }), "{err}");
        assert!(err.to_string().contains("3c:22:fb:01:02:04"));
        let wrong_code = settings("5559999.3c22fb010204.acme-0042.key.dial.example.");
        assert!(matches!(
            check_binding(&wrong_code, "eth0", &mac),
            Err(DaemonError::WrongCode { .. })
        ));
        let not_terminal = settings("xfer-key.");
        assert!(matches!(
            check_binding(&not_terminal, "eth0", &mac),
            Err(DaemonError::NotATerminalKey { .. })
        ));
    }
}
