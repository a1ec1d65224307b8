//! The control socket: how the admin commands talk to the running server.
//!
//! Only one process may open the store, so `register`, `list`, `unregister` and
//! `rotate-key` never open it: they send one JSON line to `<data>/control.sock` and read
//! one JSON line back (as `rndc` and `knotc` talk to their daemons). An import streams:
//! `import-batch` lines, each answered with its keys, then `import-commit`; a connection
//! that ends before the commit, or a refused batch, aborts the whole import. The socket is created
//! mode 0600 and the server also refuses peers whose uid is neither its own nor root's.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zones::Directory;

use crate::reload::Reloads;
use zones::directory::{Addresses, Entry, Import, Registration, Terminal};
use zones::identity::{CallingCode, Kid, Mid};
use zones::key::Algorithm;

/// The longest request line accepted, per request: a streamed import's session sends any
/// number of them (an import batch of 10,000 terminals is about 1 MiB).
const MAX_REQUEST_BYTES: u64 = 64 * 1024 * 1024;

/// A request from an admin command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum ControlRequest {
    Register {
        code: CallingCode,
        kid: Kid,
        mid: Mid,
        algorithm: Algorithm,
    },
    Unregister {
        code: CallingCode,
    },
    RotateKey {
        code: CallingCode,
    },
    /// Every terminal, one line each (`list-start`, `listed` ..., `list-end`), streamed.
    List,
    /// Register many terminals at once, all or none.
    Import {
        entries: Vec<ImportEntry>,
        algorithm: Algorithm,
    },
    /// One batch of a streamed import, staged until `import-commit` on the same connection.
    ImportBatch {
        entries: Vec<ImportEntry>,
        algorithm: Algorithm,
    },
    /// Commits the streamed import of this connection: all its batches, or none.
    ImportCommit,
    /// The zone as an RFC 1035 zone file.
    Export,
    /// A consistent snapshot of everything, keys included (`backup-header`,
    /// `backup-record` ..., `backup-end`), streamed.
    Backup,
    /// Read the config and zone files again and put in force what changed.
    Reload,
    /// The DS records of the zone's keys, for the parent zone.
    DnssecDs,
    /// The zone's DNSSEC keys and their state.
    DnssecKeys,
    /// Start rolling the zone-signing key (pre-publication).
    DnssecRollover,
    /// Enrollment: tokens, approval, customers ([`crate::customers`]).
    Customers(crate::customers::CustomerRequest),
    /// A cluster's members: their roles and positions in the log.
    ClusterStatus,
    /// Adds or removes a member of the cluster.
    ClusterChange(crate::relay::ClusterChange),
}

impl ControlRequest {
    /// Whether the request changes the directory, and is therefore made by a cluster's
    /// leader (relayed there by a follower).
    fn changes(&self) -> bool {
        matches!(
            self,
            Self::Register { .. }
                | Self::Unregister { .. }
                | Self::RotateKey { .. }
                | Self::Import { .. }
                | Self::Customers(_)
                | Self::DnssecRollover
        )
    }
}

/// One line of an import file: `CODE KID MID [ADDRESS ...]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportEntry {
    pub code: CallingCode,
    pub kid: Kid,
    pub mid: Mid,
    pub addresses: Vec<IpAddr>,
}

/// One terminal as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TerminalInfo {
    pub code: CallingCode,
    pub kid: Kid,
    pub mid: Mid,
    pub key_name: String,
    pub addresses: Vec<String>,
    pub registered_at: u64,
    pub updated_at: Option<u64>,
    /// When the lease runs out (Unix seconds); `None`: no expiry.
    pub lease_expires: Option<u64>,
}

impl TerminalInfo {
    fn of(entry: &Entry) -> Self {
        let t = &entry.terminal;
        let a = &entry.presence.addresses;
        let v4 = a.v4.addrs.iter().map(ToString::to_string);
        let v6 = a.v6.addrs.iter().map(ToString::to_string);
        Self {
            code: t.code.clone(),
            kid: t.kid.clone(),
            mid: t.mid.clone(),
            key_name: t.key.name.clone(),
            addresses: v4.chain(v6).collect(),
            registered_at: t.registered_at,
            updated_at: entry.presence.updated_at,
            lease_expires: entry.presence.lease_expires,
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ControlReply {
    /// A new key (register, rotate-key), in BIND's key-file format.
    Key {
        code: CallingCode,
        key_file: String,
    },
    Removed {
        code: CallingCode,
    },
    /// The keys of imported terminals, in BIND's key-file format.
    Keys {
        keys: Vec<(CallingCode, String)>,
    },
    Zone {
        text: String,
    },
    /// A streamed import committed.
    Imported {
        count: usize,
    },
    /// A streamed list begins: `count` `listed` lines follow, then `list-end`.
    ListStart {
        zone: String,
        serial: u32,
        count: usize,
    },
    Listed {
        terminal: TerminalInfo,
    },
    ListEnd,
    /// A streamed backup begins: the backup file's first line.
    BackupHeader {
        header: zones::backup::Header,
    },
    /// One line of a streamed backup after the header.
    BackupRecord {
        record: zones::backup::Record,
    },
    /// A streamed backup ended with every record the header announced.
    BackupEnd,
    /// A reload is done.
    Reloaded {
        outcome: crate::reload::Reloaded,
    },
    /// Lines to print as they are (DNSSEC records and keys).
    Text {
        text: String,
    },
}

/// What the server sends back: the reply or one sentence saying what is wrong.
pub type ControlResponse = Result<ControlReply, String>;

/// Why an admin command could not reach the server.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "no nameserver is running with data directory {data} (no control socket at {socket}); start one with `nameserver serve --data {data}`"
    )]
    NotRunning { data: String, socket: String },
    #[error("cannot talk to the nameserver at {socket}: {source}")]
    Io {
        socket: String,
        source: std::io::Error,
    },
    #[error("the nameserver's answer is not understood: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
}

/// Binds the control socket, owner-only. A stale socket from a killed server is replaced:
/// the caller already holds the store's lock, so no other server is using this directory.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin requests until `shutdown`.
pub async fn serve(
    listener: UnixListener,
    directory: Directory,
    reloads: Reloads,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    relay: Option<std::sync::Arc<dyn crate::relay::Relay>>,
    shutdown: CancellationToken,
) {
    let owner = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().and_then(|p| std::fs::metadata(p).ok()))
        .map(|m| m.uid());
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    continue;
                }
            },
        };
        if !peer_allowed(&stream, owner) {
            warn!("control connection refused: peer is not the socket's owner or root");
            continue;
        }
        let (directory, reloads, metrics) = (directory.clone(), reloads.clone(), metrics.clone());
        let relay = relay.clone();
        connections.spawn(async move {
            let metrics = metrics.as_deref();
            let context = Context {
                directory: &directory,
                reloads: &reloads,
                metrics,
                relay: relay.as_deref(),
            };
            if let Err(e) = serve_connection(stream, &context).await {
                debug!(error = %e, "control connection ended");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

fn peer_allowed(stream: &UnixStream, owner: Option<u32>) -> bool {
    match stream.peer_cred() {
        Ok(cred) => cred.uid() == 0 || Some(cred.uid()) == owner,
        Err(_) => false,
    }
}

/// What a control connection is served with.
struct Context<'a> {
    directory: &'a Directory,
    reloads: &'a Reloads,
    metrics: Option<&'a crate::metrics::Metrics>,
    /// A cluster: changes go to its leader. `None`: a single server.
    relay: Option<&'a dyn crate::relay::Relay>,
}

/// One connection: one request and its answer, or a streamed import.
async fn serve_connection(stream: UnixStream, context: &Context<'_>) -> std::io::Result<()> {
    serve_capped(stream, context, MAX_REQUEST_BYTES).await
}

const NO_CLUSTER: &str = "this server is not a cluster node (its config has no [cluster] section)";

/// [`serve_connection`] with at most `cap` bytes a request (not a session).
async fn serve_capped(stream: UnixStream, context: &Context<'_>, cap: u64) -> std::io::Result<()> {
    let (directory, reloads, metrics) = (context.directory, context.reloads, context.metrics);
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(cap));
    let mut import = ImportSession::default();
    loop {
        let mut line = String::new();
        // Each request may be `cap` long, however many came before it (what the buffer
        // read ahead was counted already).
        lines.get_mut().set_limit(cap);
        if lines.read_line(&mut line).await? == 0 {
            break;
        }
        let parsed = serde_json::from_str::<ControlRequest>(&line);
        if let (Ok(request), Some(relay)) = (&parsed, context.relay) {
            if request.changes() && !relay.is_leader() {
                let reply = match relay.control(line.trim_end().to_owned()).await {
                    Ok(reply) => reply,
                    Err(e) => serde_json::to_string(&ControlResponse::Err(format!(
                        "the cluster's leader did not answer: {e}"
                    )))
                    .map_err(std::io::Error::other)?,
                };
                write.write_all(format!("{reply}\n").as_bytes()).await?;
                break;
            }
        }
        let (response, more) = match parsed {
            Ok(ControlRequest::ImportBatch { .. } | ControlRequest::ImportCommit)
                if context.relay.is_some() =>
            {
                let refused = "a streamed import (`nameserver import`) is not offered in a cluster in this release: send the fleet in one-transaction imports (the control socket's `import` request), or register terminals one by one";
                (Err(refused.to_owned()), false)
            }
            Ok(ControlRequest::ClusterStatus) => match context.relay {
                Some(relay) => (
                    relay.status().await.map(|text| ControlReply::Text { text }),
                    false,
                ),
                None => (Err(NO_CLUSTER.into()), false),
            },
            Ok(ControlRequest::ClusterChange(change)) => match context.relay {
                Some(relay) => (
                    relay
                        .change(change)
                        .await
                        .map(|text| ControlReply::Text { text }),
                    false,
                ),
                None => (Err(NO_CLUSTER.into()), false),
            },
            Ok(ControlRequest::ImportBatch { entries, algorithm }) => {
                let response = import.batch(directory, entries, algorithm).await;
                let more = response.is_ok();
                (response, more)
            }
            Ok(ControlRequest::ImportCommit) => (import.commit(directory).await, false),
            Ok(ControlRequest::List) => {
                stream_list(directory, &mut write).await?;
                break;
            }
            Ok(ControlRequest::Backup) => {
                stream_backup(directory, &mut write).await?;
                break;
            }
            Ok(ControlRequest::Reload) => {
                let outcome = reloads.ask().await;
                (
                    outcome.map(|outcome| ControlReply::Reloaded { outcome }),
                    false,
                )
            }
            Ok(ControlRequest::Customers(request)) => (
                crate::customers::execute(request, directory, metrics).await,
                false,
            ),
            Ok(request) => (execute(request, directory).await, false),
            Err(e) => (Err(format!("request not understood: {e}")), false),
        };
        write_line(&mut write, &response).await?;
        if !more {
            break;
        }
    }
    import.abort_if_open(directory).await;
    write.shutdown().await
}

/// Terminals read per chunk by the blocking scan of a streamed list.
const LIST_CHUNK: usize = 1000;

/// Writes every terminal as its own line, read from the store by a blocking scan through a
/// bounded channel: the server never holds the whole list.
async fn stream_list(
    directory: &Directory,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let (serial, count) = {
        let view = directory.view();
        (view.serial(), view.len())
    };
    let start = ControlReply::ListStart {
        zone: directory.zone().origin().to_ascii(),
        serial,
        count,
    };
    write_line(write, &Ok(start)).await?;
    let scan = {
        let directory = directory.clone();
        scan_in_chunks(move |each| directory.for_each_entry(|entry| each(TerminalInfo::of(&entry))))
    };
    stream_chunks(
        scan,
        write,
        |terminal| ControlReply::Listed { terminal },
        ControlReply::ListEnd,
    )
    .await?;
    Ok(())
}

/// What a blocking scan yields, in chunks through a bounded channel, and the scan itself.
type Chunked<T> = (
    tokio::sync::mpsc::Receiver<Vec<T>>,
    tokio::task::JoinHandle<Result<(), zones::store::StoreError>>,
);

/// Runs `scan` on the blocking pool; what it passes to its callback arrives in chunks of
/// [`LIST_CHUNK`] through a bounded channel, so the server never holds the whole of it. The
/// scan stops when the receiver is gone.
fn scan_in_chunks<T: Send + 'static>(
    scan: impl FnOnce(&mut dyn FnMut(T) -> bool) -> Result<(), zones::store::StoreError>
    + Send
    + 'static,
) -> Chunked<T> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<T>>(4);
    let handle = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(LIST_CHUNK);
        scan(&mut |item| {
            chunk.push(item);
            if chunk.len() < LIST_CHUNK {
                return true;
            }
            tx.blocking_send(std::mem::take(&mut chunk)).is_ok()
        })?;
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
        Ok(())
    });
    (rx, handle)
}

/// Writes every item of a chunked scan as its own line (`line`), then `end`, or the scan's
/// error; returns how many lines it wrote.
async fn stream_chunks<T>(
    (mut rx, scan): Chunked<T>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
    line: impl Fn(T) -> ControlReply,
    end: ControlReply,
) -> std::io::Result<usize> {
    let mut lines = 0;
    while let Some(chunk) = rx.recv().await {
        for item in chunk {
            write_line(write, &Ok(line(item))).await?;
            lines += 1;
        }
    }
    let end = match scan.await {
        Ok(Ok(())) => Ok(end),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    write_line(write, &end).await?;
    Ok(lines)
}

/// Writes a consistent snapshot of the store as backup lines: a blocking scan in one read
/// transaction (updates go on meanwhile) through a bounded channel, so the server never holds
/// the whole backup.
async fn stream_backup(
    directory: &Directory,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    use zones::backup::Line;
    let scan = {
        let directory = directory.clone();
        let zone = directory.zone().origin().to_ascii();
        scan_in_chunks(move |each| {
            directory.snapshot(false, |item| {
                each(match Line::of(item, &zone).0 {
                    Line::Header(header) => ControlReply::BackupHeader { header },
                    Line::Record(record) => ControlReply::BackupRecord { record },
                })
            })
        })
    };
    let lines = stream_chunks(scan, write, |reply| reply, ControlReply::BackupEnd).await?;
    info!(lines, "backup streamed");
    Ok(())
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &ControlResponse,
) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// A streamed import on one connection: its batches are staged, then committed or aborted.
#[derive(Default)]
struct ImportSession {
    /// Held from the first batch: one import at a time.
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    count: usize,
}

impl ImportSession {
    async fn batch(
        &mut self,
        directory: &Directory,
        entries: Vec<ImportEntry>,
        algorithm: Algorithm,
    ) -> ControlResponse {
        if self.guard.is_none() {
            let guard = directory
                .try_begin_import()
                .ok_or("another import is in progress; wait for it to finish")?;
            self.guard = Some(guard);
        }
        let ttl = directory.limits().max_ttl;
        let imports: Vec<Import> = entries
            .into_iter()
            .map(|e| import_of(e, algorithm, ttl))
            .collect();
        let terminals = directory
            .stage_import(imports, zones::unix_now())
            .await
            .map_err(|e| e.to_string())?;
        self.count += terminals.len();
        Ok(ControlReply::Keys {
            keys: terminals
                .iter()
                .map(|t| (t.code.clone(), t.key.to_key_file()))
                .collect(),
        })
    }

    async fn commit(&mut self, directory: &Directory) -> ControlResponse {
        if self.guard.is_none() {
            return Err("no import batch was sent before the commit".into());
        }
        let count = directory
            .commit_import(zones::unix_now())
            .await
            .map_err(|e| e.to_string())?;
        self.guard = None;
        info!(count, outcome = "accepted", "import");
        Ok(ControlReply::Imported { count })
    }

    /// An import left without its commit (refused batch, closed connection) is removed.
    async fn abort_if_open(&mut self, directory: &Directory) {
        if self.guard.take().is_some() {
            match directory.abort_import().await {
                Ok(removed) => {
                    warn!(removed, staged = self.count, outcome = "aborted", "import");
                }
                Err(e) => warn!(error = %e, "import: the staged terminals could not be removed"),
            }
        }
    }
}

/// A change request line relayed by a cluster's follower, carried out here (the leader):
/// its reply line.
pub async fn execute_line(
    line: &str,
    directory: &Directory,
    metrics: Option<&crate::metrics::Metrics>,
) -> String {
    let response = match serde_json::from_str::<ControlRequest>(line) {
        Ok(ControlRequest::Customers(request)) => {
            crate::customers::execute(request, directory, metrics).await
        }
        Ok(request) if request.changes() => execute(request, directory).await,
        Ok(_) => Err("only changes are relayed to the leader".into()),
        Err(e) => Err(format!("request not understood: {e}")),
    };
    serde_json::to_string(&response).unwrap_or_else(|e| format!("{{\"Err\":\"{e}\"}}"))
}

/// Carries out one admin request, logging registrations as they happen.
pub async fn execute(request: ControlRequest, directory: &Directory) -> ControlResponse {
    let now = zones::unix_now();
    match request {
        ControlRequest::Register {
            code,
            kid,
            mid,
            algorithm,
        } => {
            let registration = Registration {
                code,
                kid,
                mid,
                algorithm,
            };
            let terminal = directory
                .register(registration, now)
                .await
                .map_err(|e| e.to_string())?;
            log_key_change("register", &terminal);
            Ok(key_reply(&terminal))
        }
        ControlRequest::RotateKey { code } => {
            let terminal = directory
                .rotate_key(&code, now)
                .await
                .map_err(|e| e.to_string())?;
            log_key_change("rotate-key", &terminal);
            Ok(key_reply(&terminal))
        }
        ControlRequest::Unregister { code } => {
            let terminal = directory
                .unregister(&code, now)
                .await
                .map_err(|e| e.to_string())?;
            info!(code = %terminal.code, kid = %terminal.kid, mid = %terminal.mid, outcome = "removed", "unregister");
            Ok(ControlReply::Removed { code })
        }
        ControlRequest::Import { entries, algorithm } => {
            let count = entries.len();
            let ttl = directory.limits().max_ttl;
            let imports = entries
                .into_iter()
                .map(|e| import_of(e, algorithm, ttl))
                .collect();
            let terminals = directory
                .import(imports, now)
                .await
                .map_err(|e| e.to_string())?;
            info!(count, outcome = "accepted", "import");
            Ok(ControlReply::Keys {
                keys: terminals
                    .iter()
                    .map(|t| (t.code.clone(), t.key.to_key_file()))
                    .collect(),
            })
        }
        ControlRequest::ImportBatch { .. }
        | ControlRequest::ImportCommit
        | ControlRequest::List
        | ControlRequest::Backup
        | ControlRequest::Reload
        | ControlRequest::ClusterStatus
        | ControlRequest::ClusterChange(_)
        | ControlRequest::Customers(_) => {
            Err("this request is answered on its own connection (serve_connection)".into())
        }
        ControlRequest::Export => {
            let view = directory.view();
            Ok(ControlReply::Zone {
                text: crate::transfer::zone_file(&directory.zone(), &view),
            })
        }
        ControlRequest::DnssecRollover => {
            let tag = directory
                .start_rollover(now)
                .await
                .map_err(|e| e.to_string())?;
            info!(
                key_tag = tag,
                "dnssec rollover: new zone-signing key published"
            );
            Ok(ControlReply::Text {
                text: format!(
                    "key {tag}: a new zone-signing key is published; it signs once the DNSKEY TTL and the propagation delay have passed, and the old one leaves the DNSKEY RRset once every signature by it is replaced and the zone's largest TTL and the propagation delay have passed again (`nameserver dnssec keys` shows where it is)\n"
                ),
            })
        }
        ControlRequest::DnssecDs | ControlRequest::DnssecKeys => {
            if !directory.is_signed() {
                return Err("the zone is not signed: start the server with --dnssec (config `dnssec = true`)".into());
            }
            let keys = directory.zone_keys().map_err(|e| e.to_string())?;
            let origin = directory.zone().origin().clone();
            let text = match request {
                ControlRequest::DnssecDs => crate::key_text::ds_lines(&keys, &origin),
                _ => crate::key_text::key_lines(&keys, &origin),
            };
            text.map(|text| ControlReply::Text { text })
        }
    }
}

fn import_of(entry: ImportEntry, algorithm: Algorithm, ttl: u32) -> Import {
    let mut addresses = Addresses::default();
    for ip in entry.addresses {
        match ip {
            IpAddr::V4(v4) if !addresses.v4.addrs.contains(&v4) => addresses.v4.addrs.push(v4),
            IpAddr::V6(v6) if !addresses.v6.addrs.contains(&v6) => addresses.v6.addrs.push(v6),
            _ => {}
        }
    }
    addresses.v4.ttl = ttl;
    addresses.v6.ttl = ttl;
    Import {
        registration: Registration {
            code: entry.code,
            kid: entry.kid,
            mid: entry.mid,
            algorithm,
        },
        addresses,
    }
}

fn log_key_change(action: &str, t: &Terminal) {
    info!(code = %t.code, kid = %t.kid, mid = %t.mid, key = %t.key.name, outcome = "accepted", "{action}");
}

fn key_reply(t: &Terminal) -> ControlReply {
    ControlReply::Key {
        code: t.code.clone(),
        key_file: t.key.to_key_file(),
    }
}

/// A connection to the control socket that carries several requests (a streamed import).
#[derive(Debug)]
pub struct Session {
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
    shown: String,
}

impl Session {
    /// Connects to the server of data directory `data` (or at `socket`).
    pub async fn connect(data: &Path, socket: &Path) -> Result<Self, ControlError> {
        let shown = socket.display().to_string();
        let stream = match UnixStream::connect(socket).await {
            Ok(stream) => stream,
            Err(e) if is_not_running(&e) => {
                return Err(ControlError::NotRunning {
                    data: data.display().to_string(),
                    socket: shown,
                });
            }
            Err(source) => {
                return Err(ControlError::Io {
                    socket: shown,
                    source,
                });
            }
        };
        let (read, write) = stream.into_split();
        Ok(Self {
            read: BufReader::new(read),
            write,
            shown,
        })
    }

    /// Reads one more answer line (the lines of a streamed list).
    pub async fn next(&mut self) -> Result<ControlReply, ControlError> {
        let mut answer = String::new();
        let read = self
            .read
            .read_line(&mut answer)
            .await
            .map_err(|source| ControlError::Io {
                socket: self.shown.clone(),
                source,
            })?;
        if read == 0 {
            return Err(ControlError::Protocol(
                "the server closed the connection".into(),
            ));
        }
        let response: ControlResponse =
            serde_json::from_str(&answer).map_err(|e| ControlError::Protocol(e.to_string()))?;
        response.map_err(ControlError::Refused)
    }

    /// Sends one request and reads its answer.
    pub async fn request(
        &mut self,
        request: &ControlRequest,
    ) -> Result<ControlReply, ControlError> {
        let io = |source| ControlError::Io {
            socket: self.shown.clone(),
            source,
        };
        let mut line =
            serde_json::to_vec(request).map_err(|e| ControlError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.write.write_all(&line).await.map_err(io)?;
        self.next().await
    }
}

/// Sends one request to the server of data directory `data` (or at `socket`).
pub async fn call(
    data: &Path,
    socket: &Path,
    request: &ControlRequest,
) -> Result<ControlReply, ControlError> {
    Session::connect(data, socket).await?.request(request).await
}

fn is_not_running(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

/// The control socket to use: `--control`, else the data directory's.
pub fn socket_path(data: &Path, control: Option<&Path>) -> PathBuf {
    control.map_or_else(|| crate::config::control_socket(data), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;

    /// Regression: the whole control session was capped at 512 MiB, so a streamed import
    /// of 10,000,000 terminals broke off after 5,850,000 ("Broken pipe"): the cap is per
    /// request. Here a cap of 64 KiB and batches that add up to several times it.
    #[tokio::test]
    async fn an_import_session_longer_than_the_request_cap_completes() {
        let tmp = tempfile::tempdir().unwrap();
        let directory = Directory::open(
            tmp.path(),
            zones::Zone::embedded_default(),
            zones::directory::Limits::default(),
        )
        .unwrap();
        let (reloads, _asks) = crate::reload::channel();
        let (server, client) = UnixStream::pair().unwrap();
        const CAP: u64 = 64 * 1024;
        let serving = {
            let directory = directory.clone();
            tokio::spawn(async move {
                let context = Context {
                    directory: &directory,
                    reloads: &reloads,
                    metrics: None,
                    relay: None,
                };
                serve_capped(server, &context, CAP).await
            })
        };
        let (read, mut write) = client.into_split();
        let mut answers = BufReader::new(read).lines();
        let (mut sent, mut terminals) = (0u64, 0);
        for batch in 0..8u32 {
            let entries: Vec<ImportEntry> = (0..200u32)
                .map(|i| ImportEntry {
                    code: format!("{}", 5_000_000 + batch * 1000 + i).parse().unwrap(),
                    kid: "acme".parse().unwrap(),
                    mid: format!("{:016x}", batch * 1000 + i).parse().unwrap(),
                    addresses: vec!["192.0.2.1".parse().unwrap()],
                })
                .collect();
            terminals += entries.len();
            let request = ControlRequest::ImportBatch {
                entries,
                algorithm: Algorithm::HmacSha256,
            };
            let mut line = serde_json::to_vec(&request).unwrap();
            line.push(b'\n');
            assert!((line.len() as u64) < CAP, "each request fits");
            sent += line.len() as u64;
            write.write_all(&line).await.unwrap();
            let answer = answers.next_line().await.unwrap().expect("an answer");
            let answer: ControlResponse = serde_json::from_str(&answer).unwrap();
            assert!(
                matches!(answer, Ok(ControlReply::Keys { .. })),
                "{answer:?}"
            );
        }
        assert!(sent > 2 * CAP, "the session is longer than the cap");
        let mut line = serde_json::to_vec(&ControlRequest::ImportCommit).unwrap();
        line.push(b'\n');
        write.write_all(&line).await.unwrap();
        let answer = answers.next_line().await.unwrap().expect("an answer");
        let answer: ControlResponse = serde_json::from_str(&answer).unwrap();
        assert!(
            matches!(answer, Ok(ControlReply::Imported { count }) if count == terminals),
            "{answer:?}"
        );
        serving.await.unwrap().unwrap();
        assert_eq!(directory.view().len(), terminals);
    }
}
