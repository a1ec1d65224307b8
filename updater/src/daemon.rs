//! The waiting registration (M1): keep the directory's entry for this terminal right.
//!
//! ```text
//! start ─ check the key is bound to this card's MID ─ random delay (0-1 s)
//!   loop: wait for the first of
//!           a network event (netlink: address, link or route change; poll: a reading that
//!           differs from the last), debounced 200 ms
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
use crate::network::{Network, NetworkError};

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Network(#[from] NetworkError),
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
    network: Network,
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
        let network = Network::open(settings.watch)?;
        let (card, mac) = network.card_mac(settings.interface.as_deref()).await?;
        let bound = check_binding(&settings, &card, &mac)?;
        info!(code = %settings.code, mid = %bound.mid, %card, "key is bound to this machine");
        let client = DirectoryClient {
            servers: settings.servers.clone(),
            zone: settings.zone.clone(),
            code: settings.code.clone(),
            key: settings.key.clone(),
            timeout: settings.timeout,
            channel: settings.channel(),
        };
        Ok(Self {
            settings,
            client,
            network,
        })
    }

    /// The addresses to publish now, from the configured sources.
    pub async fn discover(&self) -> Result<AddressSet, DaemonError> {
        let s = &self.settings;
        if !s.auto {
            return Ok(discover::combine(&s.fixed, &[], &[], s.allow_private));
        }
        let whoami = self.client.whoami().await;
        let interface = self.network.addresses(s.interface.as_deref()).await?;
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
        let mut events = self.network.watch()?;
        let mut schedule = Schedule::new(self.settings.recheck, Instant::now());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.recv() => {
                    if event.is_none() {
                        warn!("network events stopped; watching again");
                        events = self.network.watch()?;
                    }
                    // Let a burst of changes (address removed, address added) settle.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while events.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep_until(schedule.wake_at()) => {}
            }
            match self.sync(schedule.refresh_due(Instant::now())).await {
                Ok(Synced::Published { lease, .. }) => {
                    schedule.published(Instant::now(), lease, backoff::jitter());
                }
                Ok(Synced::Unchanged) => schedule.checked(Instant::now()),
                Err(e) if needs_a_person(&e) => {
                    error!(error = %e, "cannot keep the directory entry; retrying in an hour");
                    schedule.failed_for_good(Instant::now());
                }
                Err(e) => {
                    let d = schedule.failed(Instant::now(), backoff::jitter());
                    warn!(error = %e, "update failed; retrying in {:.1}s", d.as_secs_f64());
                }
            }
        }
        if self.settings.keep_on_exit {
            info!("stopping; addresses left in the directory (--keep-on-exit)");
            return Ok(());
        }
        self.withdraw().await
    }
}

/// When the daemon next wakes, and whether a lease refresh is due then.
#[derive(Debug)]
pub struct Schedule {
    recheck: Duration,
    wake_at: Instant,
    refresh_at: Option<Instant>,
    published_once: bool,
    backoff: Backoff,
}

impl Schedule {
    /// The first sync comes after a random delay of up to a second, so terminals that
    /// boot together do not all update at once.
    pub fn new(recheck: Duration, now: Instant) -> Self {
        Self {
            recheck,
            wake_at: now + Duration::from_secs_f64(backoff::jitter()),
            refresh_at: None,
            published_once: false,
            backoff: Backoff::default(),
        }
    }

    pub fn wake_at(&self) -> Instant {
        self.wake_at
    }

    /// True before the first publication and once the lease's refresh time has come.
    pub fn refresh_due(&self, now: Instant) -> bool {
        match self.refresh_at {
            Some(t) => now >= t,
            None => !self.published_once,
        }
    }

    /// After an accepted UPDATE: refresh at 80-85% of the lease, recheck meanwhile.
    pub fn published(&mut self, now: Instant, lease: Option<u32>, jitter: f64) {
        self.published_once = true;
        self.refresh_at = lease.map(|l| now + zones::lease::refresh_after(l, jitter));
        self.checked(now);
    }

    /// After a successful check: wake for the next recheck or the refresh, whichever first.
    pub fn checked(&mut self, now: Instant) {
        self.backoff.reset();
        let until_refresh = self
            .refresh_at
            .map_or(self.recheck, |t| t.saturating_duration_since(now));
        self.wake_at = now + self.recheck.min(until_refresh);
    }

    /// After a failure that may pass: back off; returns the wait.
    pub fn failed(&mut self, now: Instant, jitter: f64) -> Duration {
        let wait = self.backoff.next_delay(jitter);
        self.wake_at = now + wait;
        wait
    }

    /// After a failure a person must fix: wait long (a network event still wakes us).
    pub fn failed_for_good(&mut self, now: Instant) {
        self.wake_at = now + backoff::AFTER_AUTH_FAILURE;
    }
}

fn needs_a_person(e: &DaemonError) -> bool {
    match e {
        DaemonError::Client(c) => c.needs_a_person(),
        DaemonError::Network(_) => false,
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
            watch: crate::network::Watch::Netlink,
            timeout: Duration::from_secs(1),
            tls_pin: None,
        }
    }

    /// Timers under a paused tokio clock: lease refresh, rechecks and backoff.
    #[tokio::test(start_paused = true)]
    async fn schedule_refreshes_leases_rechecks_and_backs_off() {
        let recheck = Duration::from_secs(60);
        let start = Instant::now();
        let mut s = Schedule::new(recheck, start);
        assert!(
            s.wake_at() <= start + Duration::from_secs(1),
            "first sync within a second"
        );
        assert!(s.refresh_due(start), "nothing published yet");

        // A 100 s lease: refresh at 80-85 s, so the 60 s recheck comes first.
        s.published(start, Some(100), 0.0);
        assert_eq!(s.wake_at(), start + recheck);
        assert!(!s.refresh_due(start + recheck));
        tokio::time::advance(recheck).await;
        s.checked(Instant::now());
        assert_eq!(
            s.wake_at(),
            start + Duration::from_secs(80),
            "then the refresh"
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(s.refresh_due(Instant::now()));

        // Failures back off 1, 2, 4 s (full jitter), and a success resets it.
        let waits: Vec<u64> = (0..3)
            .map(|_| s.failed(Instant::now(), 1.0).as_secs())
            .collect();
        assert_eq!(waits, vec![1, 2, 4]);
        s.published(Instant::now(), None, 0.0);
        assert!(
            !s.refresh_due(Instant::now() + Duration::from_secs(86_400)),
            "no lease: no refresh"
        );
        assert_eq!(s.failed(Instant::now(), 1.0).as_secs(), 1);
        s.failed_for_good(Instant::now());
        assert_eq!(s.wake_at(), Instant::now() + backoff::AFTER_AUTH_FAILURE);
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
