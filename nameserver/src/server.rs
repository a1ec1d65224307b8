//! Binding the sockets and running the server until shutdown.
//!
//! [`bind`] opens every socket first, so errors (port in use, data directory locked) come
//! before anything runs and tests can bind port 0. [`run`] serves DNS on the UDP and TCP
//! listeners and the control socket until the shutdown token is cancelled, then drains
//! them and flushes the store.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use zones::Directory;
use zones::directory::{Signatures, SignedStart};
use zones::store::StoreError;

use crate::config::{ServeFlags, Settings, control_socket};
use crate::control;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::pipeline::{Pipeline, Policy};
use crate::reload::Reloader;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Cluster(String),
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "data directory {path} is writable by group or others, and the store in it holds every terminal's TSIG secret; check its contents, then run `chmod 700 {path}`"
    )]
    DataDirPermissions { path: String },
    #[error(
        "data directory {path} is in use by another nameserver process (its store is locked); stop it or use another --data"
    )]
    DataDirLocked { path: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot create the control socket {path}: {source}")]
    Control {
        path: String,
        source: std::io::Error,
    },
}

/// Every socket the server serves on, already bound.
#[derive(Debug)]
pub struct Listeners {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    /// DNS over TLS: its listeners, and the certificate they present.
    pub tls: Vec<TcpListener>,
    pub tls_config: Option<crate::tls::Tls>,
    pub control: UnixListener,
    pub control_path: PathBuf,
    /// The metrics endpoint, when `--metrics` asks for one.
    pub metrics: Option<TcpListener>,
    /// SIGHUP (a reload), caught from the moment the sockets are bound.
    pub hangup: Option<tokio::signal::unix::Signal>,
}

impl Listeners {
    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The DNS over TLS addresses actually bound.
    pub fn tls_local_addrs(&self) -> Vec<SocketAddr> {
        self.tls
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

/// Opens the data directory and the store, and binds every socket. A signed zone's
/// signatures are put in force on a thread of their own from then on (see
/// [`zones::directory::SignedStart`]): answers without DO are served meanwhile.
pub async fn bind(settings: &Settings) -> Result<(Directory, Listeners), ServeError> {
    prepare_data_dir(&settings.data)?;
    let (directory, signed_start) = open_directory(settings)?;
    let listeners = bind_sockets(settings).await?;
    if let Some(start) = signed_start {
        std::thread::Builder::new()
            .name("signed-start".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                if start.finish().is_ok() {
                    info!(
                        seconds = started.elapsed().as_secs_f64(),
                        "the zone's signatures are in force"
                    );
                }
            })
            .map_err(|e| {
                ServeError::Store(StoreError::Io(format!("cannot start a thread: {e}")))
            })?;
    }
    Ok((directory, listeners))
}

/// Binds every socket the settings name (DNS, control, metrics) and catches SIGHUP.
pub async fn bind_sockets(settings: &Settings) -> Result<Listeners, ServeError> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for addr in &settings.listen {
        let (u, t) = bind_pair(*addr).await?;
        udp.push(u);
        tcp.push(t);
    }
    let mut tls = Vec::new();
    for &addr in &settings.tls_listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr,
                proto: "dns over tls, tcp",
                source,
            })?;
        tls.push(listener);
    }
    let tls_config = match tls.is_empty() {
        true => None,
        false => Some(crate::tls::load(
            settings.tls_cert.as_deref(),
            settings.tls_key.as_deref(),
            &settings.data,
        )?),
    };
    let control_path = control_socket(&settings.data);
    let control = control::bind(&control_path).map_err(|source| ServeError::Control {
        path: control_path.display().to_string(),
        source,
    })?;
    let metrics = match settings.metrics {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr,
                    proto: "metrics, tcp",
                    source,
                })?,
        ),
        None => None,
    };
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    Ok(Listeners {
        udp,
        tcp,
        tls,
        tls_config,
        control,
        control_path,
        metrics,
        hangup,
    })
}

/// Creates the data directory owner-only (0700), or checks an existing one. The store in it
/// holds every terminal's TSIG secret:
/// - writable by group or others: refused, since someone else may have put files there;
/// - only readable or searchable by them (a plain `mkdir` under umask 022): made 0700, with
///   a warning.
fn prepare_data_dir(path: &Path) -> Result<(), ServeError> {
    let shown = path.display().to_string();
    let failed = |source| ServeError::DataDir {
        path: shown.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(failed)?;
    let mode = std::fs::metadata(path)
        .map_err(failed)?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(ServeError::DataDirPermissions { path: shown });
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
        warn!(path = %shown, "data directory was readable by others; made it owner-only (0700)");
    }
    Ok(())
}

fn open_directory(settings: &Settings) -> Result<(Directory, Option<SignedStart>), ServeError> {
    let store_dir = settings.data.join("store");
    let (zone, limits) = (settings.zone.clone(), settings.limits.clone());
    let opened = if settings.dnssec {
        Directory::open_signing(&store_dir, zone, limits, zones::unix_now()).map(
            |(directory, start)| match settings.cluster {
                // Its signatures are the leader's, replicated: it stores none of its own.
                Some(_) => (directory, Some(start.following_a_log())),
                None => (directory, Some(start)),
            },
        )
    } else {
        Directory::open(&store_dir, zone, limits).map(|directory| (directory, None))
    };
    opened.map_err(|e| match e {
        StoreError::Locked { .. } => ServeError::DataDirLocked {
            path: settings.data.display().to_string(),
        },
        e => ServeError::Store(e),
    })
}

/// Binds UDP and TCP on the same address. With port 0, both get the same free port.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), ServeError> {
    let bind_err = |proto, source| ServeError::Bind {
        addr,
        proto,
        source,
    };
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| bind_err("udp", e))?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_err("tcp", e))?;
        return Ok((udp, tcp));
    }
    let mut last = None;
    for _ in 0..32 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| bind_err("udp", e))?;
        let port = udp.local_addr().map_err(|e| bind_err("udp", e))?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(bind_err(
        "tcp",
        last.unwrap_or_else(|| std::io::Error::other("no free port")),
    ))
}

/// What [`run`] needs besides the sockets: the settings, and the flags to read them again
/// from on a reload.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub settings: Settings,
    /// `None`: the settings were made in-process, and a reload is refused.
    pub flags: Option<ServeFlags>,
}

impl From<&Settings> for RunOptions {
    fn from(s: &Settings) -> Self {
        Self {
            settings: s.clone(),
            flags: None,
        }
    }
}

/// Serves until `shutdown` is cancelled, then drains the listeners and flushes the store.
pub async fn run(
    directory: Directory,
    listeners: Listeners,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let metrics = listeners
        .metrics
        .is_some()
        .then(|| Arc::new(Metrics::new(workers)));
    let settings = &options.settings;
    let pipeline =
        Pipeline::new(directory.clone(), Policy::from(settings)).with_metrics(metrics.clone());
    let cluster = match &settings.cluster {
        Some(cluster) => {
            // The log's changes move the signed zone: it must be in force first.
            directory
                .signatures_ready()
                .await
                .map_err(ServeError::Store)?;
            let (node, listener) = crate::cluster::Cluster::start(
                cluster,
                directory.clone(),
                &settings.data.join("store"),
                shutdown.clone(),
            )
            .await
            .map_err(|e| ServeError::Cluster(e.to_string()))?;
            info!(node = cluster.node, listen = %cluster.listen, "cluster node");
            let serving = crate::cluster::listener::Serving {
                pipeline: pipeline.clone(),
                metrics: metrics.clone(),
            };
            listener_tasks_cluster(node.clone(), listener, serving, shutdown.clone());
            Some(node)
        }
        None => None,
    };
    let relay = cluster.clone().map(|c| c as Arc<dyn crate::relay::Relay>);
    let pipeline = pipeline.with_relay(relay.clone());
    let mut listener_tasks = tokio::task::JoinSet::new();
    if let (Some(listener), Some(metrics)) = (listeners.metrics, &metrics) {
        let observed = cluster
            .clone()
            .map(|c| c as Arc<dyn crate::metrics::ClusterObserved>);
        let registry = crate::metrics::registry(metrics.clone(), directory.clone(), observed);
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "metrics at http://{addr}/metrics");
        }
        listener_tasks.spawn(crate::scrape::serve(
            listener,
            Arc::new(registry),
            shutdown.clone(),
        ));
    }
    for udp in listeners.udp {
        listener_tasks.spawn(crate::udp::serve(
            udp,
            pipeline.clone(),
            workers,
            shutdown.clone(),
        ));
    }
    for tcp in listeners.tcp {
        listener_tasks.spawn(crate::tcp::serve(
            tcp,
            pipeline.clone(),
            settings.tcp,
            None,
            shutdown.clone(),
        ));
    }
    if let Some(tls) = &listeners.tls_config {
        for listener in listeners.tls {
            if let Ok(addr) = listener.local_addr() {
                // As Knot logs it: what a pinning client (kdig +tls-pin=) checks.
                info!(%addr, pin = %tls.pin, "DNS over TLS, certificate public key pin");
            }
            listener_tasks.spawn(crate::tcp::serve(
                listener,
                pipeline.clone(),
                settings.tcp,
                Some(tls.acceptor.clone()),
                shutdown.clone(),
            ));
        }
    }
    let (reloads, asks) = crate::reload::channel();
    let control = tokio::spawn(control::serve(
        listeners.control,
        directory.clone(),
        reloads.clone(),
        metrics.clone(),
        relay.clone(),
        shutdown.clone(),
    ));
    let hangup = tokio::spawn(crate::reload::on_sighup(
        listeners.hangup,
        reloads,
        shutdown.clone(),
    ));
    let expiry = tokio::spawn(expire_leases(
        directory.clone(),
        metrics.clone(),
        relay.clone(),
        shutdown.clone(),
    ));
    let refresh = directory.is_signed().then(|| {
        tokio::spawn(refresh_signatures(
            directory.clone(),
            settings.dnssec_propagation_delay,
            relay.clone(),
            shutdown.clone(),
        ))
    });
    let notifier = Notifier::start(
        directory.clone(),
        settings.secondaries.clone(),
        settings.transfer_keys.first().cloned(),
        settings.notify_delay,
        metrics.clone(),
        shutdown.clone(),
    );
    let reloader = Reloader {
        flags: options.flags.clone(),
        current: options.settings.clone(),
        pipeline,
        directory: directory.clone(),
        notifier,
    };
    let reloading = tokio::spawn(crate::reload::serve(reloader, asks, shutdown.clone()));
    let ready = tokio::spawn(announce_ready(directory.clone(), shutdown.clone()));
    shutdown.cancelled().await;
    let _ = ready.await;
    while listener_tasks.join_next().await.is_some() {}
    let _ = control.await;
    let _ = hangup.await;
    let _ = expiry.await;
    if let Some(refresh) = refresh {
        let _ = refresh.await;
    }
    let _ = reloading.await;
    let _ = std::fs::remove_file(&listeners.control_path);
    if let Err(e) = directory.keep_signatures().await {
        warn!(error = %e, "cannot keep the signatures: the next start reads them from the store and moves the serial on");
    }
    directory.flush().await?;
    info!("stopped; store flushed");
    match directory.signatures() {
        Signatures::Failed(e) => Err(ServeError::Store(StoreError::Signing(e))),
        _ => Ok(()),
    }
}

/// Serves a cluster's peers until shutdown.
fn listener_tasks_cluster(
    node: Arc<crate::cluster::Cluster>,
    listener: tokio::net::TcpListener,
    serving: crate::cluster::listener::Serving,
    shutdown: CancellationToken,
) {
    tokio::spawn(crate::cluster::listener::serve(
        node, listener, serving, shutdown,
    ));
}

/// Logs `ready` once everything is served (a signed zone: once its signatures are in
/// force); stops the server when a signed start failed.
async fn announce_ready(directory: Directory, shutdown: CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        ready = directory.signatures_ready() => match ready {
            Ok(()) => info!(signed = directory.is_signed(), "ready"),
            Err(e) => {
                error!(error = %e, "the signed zone cannot be served; stopping");
                shutdown.cancel();
            }
        },
    }
}

/// Terminals whose signatures one refresh signs again at most: about 15 ms of signing for
/// 300 in a release build (up to three signatures each, of 16 µs), done without the writer
/// lock, and a second apart, a million terminals are all signed again within an hour, far
/// inside the week left.
const REFRESH_BATCH: usize = 300;

/// Runs `job` once a second (a tick missed is not made up) until shutdown.
async fn each_second<F: std::future::Future<Output = ()>>(
    shutdown: CancellationToken,
    mut job: impl FnMut() -> F,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        job().await;
    }
}

/// Once a second, in a signed zone: moves a key rollover on when its wait is over, and
/// signs again what expires within the refresh window (or what a new key must sign). In a
/// cluster, only the leader signs (each refresh is a log entry).
async fn refresh_signatures(
    directory: Directory,
    propagation: u64,
    relay: Option<Arc<dyn crate::relay::Relay>>,
    shutdown: CancellationToken,
) {
    each_second(shutdown, || {
        let leads = relay.as_ref().is_none_or(|r| r.is_leader());
        let directory = directory.clone();
        async move {
            if leads {
                refresh_once(directory, propagation).await;
            }
        }
    })
    .await;
}

async fn refresh_once(directory: Directory, propagation: u64) {
    match directory.advance_keys(zones::unix_now(), propagation).await {
        Ok(None) => {}
        Ok(Some(event)) => info!(?event, "dnssec rollover"),
        Err(e) => warn!(error = %e, "cannot move the key rollover on"),
    }
    match directory
        .refresh_signatures(zones::unix_now(), REFRESH_BATCH)
        .await
    {
        Ok(0) => {}
        Ok(count) => info!(count, "signatures refreshed"),
        Err(e) => warn!(error = %e, "cannot refresh signatures"),
    }
}

/// Once a second, takes offline the terminals whose lease ran out (RFC 9664).
/// In a cluster, only the leader expires leases (each expiry is a log entry).
async fn expire_leases(
    directory: Directory,
    metrics: Option<Arc<Metrics>>,
    relay: Option<Arc<dyn crate::relay::Relay>>,
    shutdown: CancellationToken,
) {
    each_second(shutdown, || {
        let leads = relay.as_ref().is_none_or(|r| r.is_leader());
        let (directory, metrics) = (directory.clone(), metrics.clone());
        async move {
            if leads {
                expire_once(directory, metrics).await;
            }
        }
    })
    .await;
}

async fn expire_once(directory: Directory, metrics: Option<Arc<Metrics>>) {
    match directory.expire(zones::unix_now()).await {
        Ok(codes) => {
            if let Some(m) = &metrics {
                m.leases_expired(codes.len());
            }
            for code in codes {
                info!(%code, outcome = "offline", reason = "lease expired", "lease");
            }
        }
        Err(e) => warn!(error = %e, "cannot expire leases"),
    }
}
