//! Live reload: `nameserver reload` (control socket) and SIGHUP read the config file and the
//! zone file again and put in force what changed, while queries go on being answered.
//!
//! ```text
//!  SIGHUP ─┐
//!  control `reload` ─▶ Reloads::ask ─▶ serve (one at a time) ─▶ Reloader::reload
//!     Settings::resolve (config, zone file, key files: all read and checked first)
//!     ─▶ zones::Directory::reload_zone (new serial, durable, as at a restart)
//!     ─▶ Pipeline::reload (lookup mode, transfer keys, rate limits, denial: swapped, never
//!        locked)
//!     ─▶ notify::Notifier::restart (secondaries, NOTIFY key, notify delay)
//! ```
//!
//! A file that cannot be read or loaded (a config that does not parse, a zone file without
//! an SOA, a missing key file, another zone origin) refuses the whole reload with the
//! reason, and every old setting stays. What is bound when the server starts (listen
//! addresses, data directory, metrics address, DNS over TLS, TCP limits, update and lease limits) is not
//! changed by a reload: the answer names those that differ, as needing a restart.

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zones::Directory;

use crate::config::{ServeFlags, Settings};
use crate::notify::Notifier;
use crate::pipeline::{Pipeline, Policy};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// Settings now in force that differ from before.
    pub changed: Vec<String>,
    /// Settings that differ in the files but take a restart.
    pub needs_restart: Vec<String>,
    /// The zone's serial after the reload.
    pub serial: u32,
}

/// One request for a reload, and where its outcome goes.
type Ask = oneshot::Sender<Result<Reloaded, String>>;

/// Asks the running server for a reload; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reloads(mpsc::Sender<Ask>);

impl Reloads {
    /// Reloads and waits for the outcome.
    pub async fn ask(&self) -> Result<Reloaded, String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| "the server is shutting down".to_owned())?;
        rx.await
            .map_err(|_| "the server is shutting down".to_owned())?
    }
}

/// The requests' channel: [`Reloads`] for those who ask, the receiver for [`serve`].
pub fn channel() -> (Reloads, mpsc::Receiver<Ask>) {
    let (tx, rx) = mpsc::channel(8);
    (Reloads(tx), rx)
}

/// Everything a reload touches.
#[derive(Debug)]
pub struct Reloader {
    /// The flags the server started with: the config file is read again through them (a
    /// flag still overrides the file). `None`: settings given in-process, nothing to read.
    pub flags: Option<ServeFlags>,
    /// The settings in force.
    pub current: Settings,
    pub pipeline: Pipeline,
    pub directory: Directory,
    pub notifier: Notifier,
}

impl Reloader {
    /// Reads the files again and puts in force what changed; on any error, nothing changes.
    pub async fn reload(&mut self) -> Result<Reloaded, String> {
        let flags = self.flags.as_ref().ok_or(
            "this server's settings were not read from files; there is nothing to read again",
        )?;
        let new = Settings::resolve(flags).map_err(|e| e.to_string())?;
        let old = &self.current;
        if new.zone.origin() != old.zone.origin() {
            return Err(format!(
                "the zone is now {}, but this server serves {}; a new origin needs a restart",
                new.zone.origin(),
                old.zone.origin()
            ));
        }
        let (mut changed, needs_restart) = compare(old, &new);
        if let Some(serial) = self
            .directory
            .reload_zone(new.zone.clone(), zones::unix_now())
            .await
            .map_err(|e| e.to_string())?
        {
            changed.insert(0, format!("zone (serial {serial})"));
        }
        // The fast path holds the zone's SOA: rebuilt on every reload.
        self.pipeline.reload(Policy::from(&new));
        let notify_key = |s: &Settings| s.transfer_keys.first().cloned();
        if notify_key(&new) != notify_key(old) || changed.iter().any(|c| c == "secondaries") {
            self.notifier
                .restart(new.secondaries.clone(), notify_key(&new), new.notify_delay)
                .await;
        }
        // What takes a restart stays as it was, so a later reload names it again.
        self.current = Settings {
            zone: new.zone,
            lookups: new.lookups,
            secondaries: new.secondaries,
            transfer_keys: new.transfer_keys,
            notify_delay: new.notify_delay,
            rate_limit: new.rate_limit,
            rate_limit_slip: new.rate_limit_slip,
            update_rate_limit: new.update_rate_limit,
            denial: new.denial,
            ..self.current.clone()
        };
        let serial = self.directory.view().serial();
        Ok(Reloaded {
            changed,
            needs_restart,
            serial,
        })
    }
}

/// Whether a cluster's settings differ (the key by name and secret, never shown).
fn cluster_changed(
    old: &Option<crate::config::ClusterSettings>,
    new: &Option<crate::config::ClusterSettings>,
) -> bool {
    match (old, new) {
        (None, None) => false,
        (Some(a), Some(b)) => {
            (a.node, a.listen, &a.peers, &a.key.name, a.snapshot_every)
                != (b.node, b.listen, &b.peers, &b.key.name, b.snapshot_every)
                || a.key.secret.as_bytes() != b.key.secret.as_bytes()
        }
        _ => true,
    }
}

/// Which settings differ between `old` and `new`: those a reload puts in force (the zone
/// apart), and those that take a restart. Every setting is in one list or the other: the
/// pattern names each field, so a new one does not compile until it is placed.
fn compare(old: &Settings, new: &Settings) -> (Vec<String>, Vec<String>) {
    let Settings {
        zone: _,
        listen,
        data,
        lookups,
        limits,
        tcp,
        secondaries,
        transfer_keys,
        notify_delay,
        rate_limit,
        rate_limit_slip,
        update_rate_limit,
        metrics,
        tls_listen,
        tls_cert,
        tls_key,
        dnssec,
        dnssec_propagation_delay,
        denial,
        cluster,
    } = new;
    let live = [
        ("lookups", lookups != &old.lookups),
        ("transfer_keys", transfer_keys != &old.transfer_keys),
        ("rate_limit", rate_limit != &old.rate_limit),
        ("rate_limit_slip", rate_limit_slip != &old.rate_limit_slip),
        (
            "update_rate_limit",
            update_rate_limit != &old.update_rate_limit,
        ),
        (
            "secondaries",
            secondaries != &old.secondaries || notify_delay != &old.notify_delay,
        ),
        // Answers with DO switch at once; compact denial is not transferred.
        ("denial", denial != &old.denial),
    ];
    let restart = [
        ("listen", listen != &old.listen),
        ("data", data != &old.data),
        ("metrics", metrics != &old.metrics),
        (
            "tls (listen, certificate, key)",
            tls_listen != &old.tls_listen || tls_cert != &old.tls_cert || tls_key != &old.tls_key,
        ),
        ("dnssec", dnssec != &old.dnssec),
        (
            "dnssec_propagation_delay",
            dnssec_propagation_delay != &old.dnssec_propagation_delay,
        ),
        ("tcp limits", tcp != &old.tcp),
        ("cluster", cluster_changed(&old.cluster, cluster)),
        (
            "update limits (ttl, addresses, fudge, leases, ixfr_history)",
            limits != &old.limits,
        ),
    ];
    let names = |list: &[(&str, bool)]| -> Vec<String> {
        list.iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| (*name).to_owned())
            .collect()
    };
    (names(&live), names(&restart))
}

/// Runs reloads one at a time until `shutdown`.
pub async fn serve(
    mut reloader: Reloader,
    mut asks: mpsc::Receiver<Ask>,
    shutdown: CancellationToken,
) {
    loop {
        let ask = tokio::select! {
            _ = shutdown.cancelled() => break,
            ask = asks.recv() => match ask {
                Some(ask) => ask,
                None => break,
            },
        };
        let outcome = reloader.reload().await;
        match &outcome {
            Ok(done) => info!(
                changed = ?done.changed,
                needs_restart = ?done.needs_restart,
                serial = done.serial,
                "reloaded"
            ),
            Err(reason) => warn!(%reason, "reload refused; the settings in force are unchanged"),
        }
        let _ = ask.send(outcome);
    }
    reloader.notifier.stop().await;
}

/// SIGHUP asks for a reload, as with BIND, NSD and Knot.
/// `hangup` is taken when the sockets are bound, before the server says it listens, so a
/// SIGHUP from then on never meets the signal's default action (which ends the process).
pub async fn on_sighup(
    hangup: Option<tokio::signal::unix::Signal>,
    reloads: Reloads,
    shutdown: CancellationToken,
) {
    let Some(mut hangup) = hangup else {
        warn!("cannot listen for SIGHUP; reload with `nameserver reload`");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = hangup.recv() => if received.is_none() { return },
        }
        info!("SIGHUP: reloading");
        // The outcome is logged by `serve`.
        let _ = reloads.ask().await;
    }
}
