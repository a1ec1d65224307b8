//! Settings: the embedded defaults, a TOML file (`--config`), then command-line flags.
//! `nameserver sample-config` writes a file with every setting and its default
//! ([`crate::sample`]).
//!
//! ```toml
//! zone = "dial.example."          # zone name, when there is no zone file
//! zone_file = "/etc/dial/dial.zone"
//! listen = ["127.0.0.1:5353", "[::1]:5353"]
//! data = "/var/lib/dial-directory"
//! lookups = "public"              # or "signed": only TSIG-signed queries are answered
//! max_ttl = 60                    # larger TTLs in updates are clamped to this
//! max_addresses_per_family = 8    # more in one terminal's RRset: the update is refused
//! tsig_fudge = 300                # TSIG time window, seconds
//! tcp_idle_timeout = 10           # seconds a TCP connection may sit idle
//! tcp_write_timeout = 10          # seconds a client may take to read an answer
//! tcp_max_connections = 1024      # TCP connections in all
//! tcp_max_per_client = 32         # TCP connections from one client /24 or /56
//! lease_min = 60                  # update leases (RFC 9664): shortest granted
//! lease_max = 86400               # longest granted
//! lease_default = 3600            # for updates without the option; absent: no expiry
//! secondaries = ["192.0.2.2:53"]  # where NOTIFY goes after each change
//! transfer_keys = ["/etc/dial/xfer.key"]   # TSIG keys allowed to transfer the zone (AXFR, IXFR)
//! notify_delay_ms = 250           # changes within this delay share one NOTIFY
//! ixfr_history = 1000             # changes kept for incremental transfers
//! rate_limit = 200                # UDP answers per second per client /24 or /56; 0: off
//! rate_limit_slip = 2             # every 2nd answer over the limit goes out truncated (TC)
//! update_rate_limit = 10          # updates per second per terminal key; 0: off
//! metrics = "127.0.0.1:9153"      # Prometheus metrics at http://ADDR/metrics; absent: off
//! tls_listen = ["0.0.0.0:853"]    # DNS over TLS (RFC 7858); absent: off
//! tls_cert = "/etc/dial/tls.pem"  # its certificate chain and key (PEM); absent: a
//! tls_key = "/etc/dial/tls.key"   #   self-signed one kept in DATA/tls/
//! dnssec = false                  # sign the zone (ECDSA P-256 key made at the first start)
//! dnssec_propagation_delay = 300  # seconds for a change to reach secondaries and resolvers
//! denial = "nsec3"                # or "compact" (RFC 9824): not walkable, not transferable
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zones::Zone;
use zones::directory::Limits;
use zones::key::TsigKey;
use zones::lease::LeasePolicy;
use zones::zone::ZoneError;

/// Where the nameserver listens without `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5353";
/// Default RRL: UDP answers per second per client prefix (NSD's default).
pub const DEFAULT_RATE_LIMIT: u32 = 200;
/// Default limit on updates per second per terminal key (bursts of twice as many).
pub const DEFAULT_UPDATE_RATE_LIMIT: u32 = 10;
/// Changes within this many milliseconds share one NOTIFY.
pub const DEFAULT_NOTIFY_DELAY_MS: u64 = 250;
/// Every n-th UDP answer over the rate limit goes out truncated (TC) instead of dropped.
pub const DEFAULT_RATE_LIMIT_SLIP: u32 = 2;
/// Seconds a key rollover allows for a change to propagate (BIND's default, PT5M).
pub const DEFAULT_DNSSEC_PROPAGATION_DELAY: u64 = 300;
/// Name of the data directory under the user's state directory.
pub const DATA_DIR_NAME: &str = "dial-directory";
/// The control socket's file name inside the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";

/// How a signed zone proves that a name or type does not exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Denial {
    /// NSEC3 (RFC 5155, RFC 9276 parameters): secondaries can serve it; codes can be
    /// recovered by hashing digit strings.
    #[default]
    Nsec3,
    /// Compact denial (RFC 9824): signed per answer, the codes cannot be walked; the zone is
    /// not transferred.
    Compact,
}

/// Who may look up terminals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LookupPolicy {
    /// Everyone (ordinary DNS).
    #[default]
    Public,
    /// Only queries signed with a registered key (claim 3); others are REFUSED.
    Signed,
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("cannot read transfer key file {path}: {source}")]
    ReadKey {
        path: String,
        source: std::io::Error,
    },
    #[error("transfer key file {path} is not valid: {message}")]
    Key { path: String, message: String },
    #[error("[cluster]: {0}")]
    Cluster(String),
}

/// Reads a transfer key file (BIND format).
fn load_key(path: &Path) -> Result<TsigKey, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadKey {
        path: shown.clone(),
        source,
    })?;
    warn_if_open_to_others(path);
    TsigKey::from_key_file(&text).map_err(|e| ConfigError::Key {
        path: shown,
        message: e.to_string(),
    })
}

/// Warns when a key file can be read by group or others: anyone who reads it can
/// transfer the zone (or, for a terminal's key, update that terminal).
fn warn_if_open_to_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "key file is readable by group or others; run `chmod 600 {}`",
            path.display()
        );
    }
}

/// The config file, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub zone: Option<String>,
    pub zone_file: Option<PathBuf>,
    pub listen: Option<Vec<SocketAddr>>,
    pub data: Option<PathBuf>,
    pub lookups: Option<LookupPolicy>,
    pub max_ttl: Option<u32>,
    pub max_addresses_per_family: Option<usize>,
    pub tsig_fudge: Option<u16>,
    pub tcp_idle_timeout: Option<u64>,
    pub tcp_write_timeout: Option<u64>,
    pub tcp_max_connections: Option<usize>,
    pub tcp_max_per_client: Option<usize>,
    pub lease_min: Option<u32>,
    pub lease_max: Option<u32>,
    pub lease_default: Option<u32>,
    pub secondaries: Option<Vec<SocketAddr>>,
    pub transfer_keys: Option<Vec<PathBuf>>,
    pub notify_delay_ms: Option<u64>,
    pub ixfr_history: Option<usize>,
    pub rate_limit: Option<u32>,
    pub rate_limit_slip: Option<u32>,
    pub update_rate_limit: Option<u32>,
    pub metrics: Option<SocketAddr>,
    pub tls_listen: Option<Vec<SocketAddr>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub dnssec: Option<bool>,
    pub dnssec_propagation_delay: Option<u64>,
    pub denial: Option<Denial>,
    /// A cluster node (absent: a single server).
    pub cluster: Option<ClusterFile>,
}

/// The `[cluster]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// This node's id (a positive integer, unique in the cluster).
    pub node: u64,
    /// Where this node takes the cluster's traffic.
    pub listen: SocketAddr,
    /// The founding members, `"ID=IP:PORT"` each, this node included (the one with the
    /// lowest id founds the cluster); left out, the node waits to be added by `nameserver
    /// cluster add`.
    #[serde(default)]
    pub peers: Vec<String>,
    /// The shared cluster key (BIND key-file format, like the transfer keys).
    pub key_file: PathBuf,
    /// Log entries between snapshots (a backup of the store, what a node far behind
    /// catches up from); as many are kept in the log behind each.
    pub snapshot_every: Option<u64>,
}

/// A cluster node's settings.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node: u64,
    pub listen: SocketAddr,
    pub peers: std::collections::BTreeMap<u64, SocketAddr>,
    /// The shared key; its secret keys the cluster's encryption.
    pub key: TsigKey,
    pub snapshot_every: u64,
}

/// Log entries between a cluster's snapshots, by default.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;

impl ClusterFile {
    fn resolve(self) -> Result<ClusterSettings, ConfigError> {
        let invalid = |message: String| ConfigError::Cluster(message);
        if self.node == 0 {
            return Err(invalid("node must be a positive integer".into()));
        }
        let mut peers = std::collections::BTreeMap::new();
        for peer in &self.peers {
            let (id, addr) = peer.split_once('=').ok_or_else(|| {
                invalid(format!(
                    "peer {peer:?} is not of the form ID=IP:PORT (\"2=192.0.2.2:7101\")"
                ))
            })?;
            let id: u64 = id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                invalid(format!("peer {peer:?}: the id must be a positive integer"))
            })?;
            let addr: SocketAddr = addr
                .trim()
                .parse()
                .map_err(|e| invalid(format!("peer {peer:?}: {e}")))?;
            if peers.insert(id, addr).is_some() {
                return Err(invalid(format!("node {id} is listed twice in peers")));
            }
        }
        if peers.get(&self.node).is_some_and(|a| *a != self.listen) {
            return Err(invalid(format!(
                "peers gives node {} the address {}, but listen is {}",
                self.node, peers[&self.node], self.listen
            )));
        }
        Ok(ClusterSettings {
            node: self.node,
            listen: self.listen,
            peers,
            key: load_key(&self.key_file)?,
            snapshot_every: match self.snapshot_every {
                Some(0) => return Err(invalid("snapshot_every must be at least 1".into())),
                Some(n) => n,
                None => DEFAULT_SNAPSHOT_EVERY,
            },
        })
    }
}

impl FileConfig {
    /// Parses config text; `path` only names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }
}

/// Flags given on the command line; each overrides the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeFlags {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Zone name (default dial.example.), used when there is no zone file.
    #[arg(long, value_name = "NAME")]
    pub zone: Option<String>,
    /// RFC 1035 zone file with the SOA, NS, glue and any static records.
    #[arg(long, value_name = "FILE")]
    pub zone_file: Option<PathBuf>,
    /// Address to listen on, UDP and TCP (repeatable; IPv4 or [IPv6]:port).
    #[arg(long, value_name = "ADDR:PORT", value_parser = zones::endpoint::parse)]
    pub listen: Vec<SocketAddr>,
    /// Data directory (the store and the control socket).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Who may look up terminals.
    #[arg(long, value_enum)]
    pub lookups: Option<LookupPolicy>,
    /// Largest TTL of terminal records; larger ones are clamped.
    #[arg(long, value_name = "SECONDS")]
    pub max_ttl: Option<u32>,
    /// A secondary to NOTIFY after each change (repeatable).
    #[arg(long = "secondary", value_name = "ADDR:PORT", value_parser = zones::endpoint::parse)]
    pub secondaries: Vec<SocketAddr>,
    /// A TSIG key (BIND key file, as tsig-keygen writes) allowed to transfer the zone; the
    /// first one also signs NOTIFY (repeatable).
    #[arg(long = "transfer-key", value_name = "FILE")]
    pub transfer_keys: Vec<PathBuf>,
    /// UDP answers per second per client /24 or /56 (response rate limiting); 0 turns it off.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Updates per second per terminal key; 0 turns the limit off.
    #[arg(long, value_name = "N")]
    pub update_rate_limit: Option<u32>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default).
    #[arg(long, value_name = "ADDR:PORT", value_parser = zones::endpoint::parse)]
    pub metrics: Option<SocketAddr>,
    /// Serve DNS over TLS (RFC 7858) on this address too, usually port 853 (repeatable).
    #[arg(long, value_name = "ADDR:PORT", value_parser = zones::endpoint::parse)]
    pub tls_listen: Vec<SocketAddr>,
    /// The TLS certificate chain (PEM); without it and --tls-key, a self-signed one is made
    /// in the data directory and its SPKI pin logged.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Sign the zone with DNSSEC (a key is made at the first start with it).
    #[arg(long)]
    pub dnssec: bool,
    /// How a signed zone denies existence.
    #[arg(long, value_enum)]
    pub denial: Option<Denial>,
}

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub zone: Zone,
    pub listen: Vec<SocketAddr>,
    pub data: PathBuf,
    pub lookups: LookupPolicy,
    pub limits: Limits,
    pub tcp: TcpLimits,
    pub secondaries: Vec<SocketAddr>,
    pub transfer_keys: Vec<TsigKey>,
    pub notify_delay: Duration,
    pub rate_limit: u32,
    pub rate_limit_slip: u32,
    pub update_rate_limit: u32,
    /// Where Prometheus metrics are served; `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// Where DNS over TLS is served; empty: nowhere.
    pub tls_listen: Vec<SocketAddr>,
    /// The TLS certificate chain and key (PEM); `None`: the self-signed one in the data
    /// directory.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The zone is signed (DNSSEC).
    pub dnssec: bool,
    /// Seconds a key rollover allows, on top of TTLs, for a change to reach every
    /// secondary and resolver (BIND's `zone-propagation-delay`).
    pub dnssec_propagation_delay: u64,
    /// How a signed zone denies existence.
    pub denial: Denial,
    /// A cluster node (`None`: a single server).
    pub cluster: Option<ClusterSettings>,
}

impl Settings {
    /// Defaults, then the file (if any), then the flags.
    pub fn resolve(flags: &ServeFlags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(file, flags)
    }

    pub fn merge(file: FileConfig, flags: &ServeFlags) -> Result<Self, ConfigError> {
        let origin = flags.zone.clone().or(file.zone);
        let zone = match flags.zone_file.clone().or(file.zone_file) {
            Some(path) => Zone::load(&path, origin.as_deref())?,
            None => match origin {
                Some(origin) => Zone::default_for(&origin)?,
                None => Zone::embedded_default(),
            },
        };
        let listen = if flags.listen.is_empty() {
            file.listen
                .unwrap_or_else(|| vec![DEFAULT_LISTEN.parse().expect("valid default")])
        } else {
            flags.listen.clone()
        };
        let defaults = Limits::default();
        let tcp = TcpLimits::default();
        let limits = Limits {
            max_ttl: flags.max_ttl.or(file.max_ttl).unwrap_or(defaults.max_ttl),
            max_addresses_per_family: file
                .max_addresses_per_family
                .unwrap_or(defaults.max_addresses_per_family),
            fudge: file.tsig_fudge.unwrap_or(defaults.fudge),
            leases: LeasePolicy {
                min: file.lease_min.unwrap_or(defaults.leases.min),
                max: file.lease_max.unwrap_or(defaults.leases.max),
                default: file.lease_default.or(defaults.leases.default),
            },
            journal_depth: file.ixfr_history.unwrap_or(defaults.journal_depth),
        };
        let secondaries = if flags.secondaries.is_empty() {
            file.secondaries.unwrap_or_default()
        } else {
            flags.secondaries.clone()
        };
        let key_files = if flags.transfer_keys.is_empty() {
            file.transfer_keys.unwrap_or_default()
        } else {
            flags.transfer_keys.clone()
        };
        let transfer_keys = key_files
            .iter()
            .map(|path| load_key(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            zone,
            listen,
            data: flags
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(default_data_dir),
            lookups: flags.lookups.or(file.lookups).unwrap_or_default(),
            limits,
            tcp: TcpLimits {
                max_connections: file.tcp_max_connections.unwrap_or(tcp.max_connections),
                max_per_client: file.tcp_max_per_client.unwrap_or(tcp.max_per_client),
                idle_timeout: file
                    .tcp_idle_timeout
                    .map_or(tcp.idle_timeout, Duration::from_secs),
                write_timeout: file
                    .tcp_write_timeout
                    .map_or(tcp.write_timeout, Duration::from_secs),
            },
            secondaries,
            transfer_keys,
            notify_delay: Duration::from_millis(
                file.notify_delay_ms.unwrap_or(DEFAULT_NOTIFY_DELAY_MS),
            ),
            rate_limit: flags
                .rate_limit
                .or(file.rate_limit)
                .unwrap_or(DEFAULT_RATE_LIMIT),
            rate_limit_slip: file.rate_limit_slip.unwrap_or(DEFAULT_RATE_LIMIT_SLIP),
            update_rate_limit: flags
                .update_rate_limit
                .or(file.update_rate_limit)
                .unwrap_or(DEFAULT_UPDATE_RATE_LIMIT),
            metrics: flags.metrics.or(file.metrics),
            tls_listen: if flags.tls_listen.is_empty() {
                file.tls_listen.unwrap_or_default()
            } else {
                flags.tls_listen.clone()
            },
            tls_cert: flags.tls_cert.clone().or(file.tls_cert),
            tls_key: flags.tls_key.clone().or(file.tls_key),
            dnssec: flags.dnssec || file.dnssec.unwrap_or(false),
            dnssec_propagation_delay: file
                .dnssec_propagation_delay
                .unwrap_or(DEFAULT_DNSSEC_PROPAGATION_DELAY),
            denial: flags.denial.or(file.denial).unwrap_or_default(),
            cluster: file.cluster.map(ClusterFile::resolve).transpose()?,
        })
    }
}

impl Settings {
    /// The settings in force, as config-file lines (`--check-config`): what a file with
    /// exactly these lines would set. Transfer keys are named, never shown.
    pub fn to_config_text(&self) -> String {
        let quoted = |items: &mut dyn Iterator<Item = String>| {
            let items: Vec<String> = items.map(|i| format!("\"{i}\"")).collect();
            format!("[{}]", items.join(", "))
        };
        let lease_default = self
            .limits
            .leases
            .default
            .map_or("# lease_default: none (no expiry)".into(), |d| {
                format!("lease_default = {d}")
            });
        let metrics = self
            .metrics
            .map_or("# metrics: off".into(), |m| format!("metrics = \"{m}\""));
        let keys: Vec<String> = self
            .transfer_keys
            .iter()
            .map(|k| format!("{} ({})", k.name, k.algorithm.as_str()))
            .collect();
        let lines = [
            format!("zone = \"{}\"", self.zone.origin()),
            format!(
                "listen = {}",
                quoted(&mut self.listen.iter().map(ToString::to_string))
            ),
            format!("data = \"{}\"", self.data.display()),
            format!("lookups = \"{}\"", self.lookups.name()),
            format!("max_ttl = {}", self.limits.max_ttl),
            format!(
                "max_addresses_per_family = {}",
                self.limits.max_addresses_per_family
            ),
            format!("tsig_fudge = {}", self.limits.fudge),
            format!("tcp_idle_timeout = {}", self.tcp.idle_timeout.as_secs()),
            format!("tcp_write_timeout = {}", self.tcp.write_timeout.as_secs()),
            format!("tcp_max_connections = {}", self.tcp.max_connections),
            format!("tcp_max_per_client = {}", self.tcp.max_per_client),
            format!("lease_min = {}", self.limits.leases.min),
            format!("lease_max = {}", self.limits.leases.max),
            lease_default,
            format!(
                "secondaries = {}",
                quoted(&mut self.secondaries.iter().map(ToString::to_string))
            ),
            format!("# transfer keys: {}", keys.join(", ")),
            format!("notify_delay_ms = {}", self.notify_delay.as_millis()),
            format!("ixfr_history = {}", self.limits.journal_depth),
            format!("rate_limit = {}", self.rate_limit),
            format!("rate_limit_slip = {}", self.rate_limit_slip),
            format!("update_rate_limit = {}", self.update_rate_limit),
            metrics,
            format!(
                "tls_listen = {}",
                quoted(&mut self.tls_listen.iter().map(ToString::to_string))
            ),
            self.tls_cert.as_ref().map_or(
                "# tls_cert: none (self-signed, in the data directory)".into(),
                |c| format!("tls_cert = \"{}\"", c.display()),
            ),
            self.tls_key.as_ref().map_or("# tls_key: none".into(), |k| {
                format!("tls_key = \"{}\"", k.display())
            }),
            format!("dnssec = {}", self.dnssec),
            format!(
                "dnssec_propagation_delay = {}",
                self.dnssec_propagation_delay
            ),
            format!("denial = \"{}\"", self.denial.name()),
            format!(
                "# the zone holds {} static record(s) besides the terminals",
                self.zone.static_records().count()
            ),
        ];
        lines.join("\n") + "\n"
    }
}

impl LookupPolicy {
    /// As the config file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Signed => "signed",
        }
    }
}

impl Denial {
    /// As the config file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nsec3 => "nsec3",
            Self::Compact => "compact",
        }
    }
}

/// `$XDG_STATE_HOME/dial-directory`, else `~/.local/state/dial-directory`, else
/// `/var/lib/dial-directory`: the same for the server and the admin commands of one user.
pub fn default_data_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(state).join(DATA_DIR_NAME);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(home).join(".local/state").join(DATA_DIR_NAME);
    }
    PathBuf::from("/var/lib").join(DATA_DIR_NAME)
}

/// The control socket of a data directory.
pub fn control_socket(data: &Path) -> PathBuf {
    data.join(CONTROL_SOCKET)
}

/// Limits on TCP clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_client: usize,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_client: 32,
            idle_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_no_flags_gives_the_embedded_default() {
        let s = Settings::merge(FileConfig::default(), &ServeFlags::default()).unwrap();
        assert_eq!(s.zone.origin().to_ascii(), "dial.example.");
        assert_eq!(
            s.listen,
            vec![DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(s.lookups, LookupPolicy::Public);
        assert_eq!(s.limits, Limits::default());
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig::parse(
            "zone = \"a.example.\"\nlisten = [\"127.0.0.1:1053\"]\nlookups = \"signed\"\nmax_ttl = 30\n",
            "t",
        )
        .unwrap();
        let flags = ServeFlags {
            zone: Some("b.example.".into()),
            max_ttl: Some(10),
            ..ServeFlags::default()
        };
        let s = Settings::merge(file, &flags).unwrap();
        assert_eq!(s.zone.origin().to_ascii(), "b.example.");
        assert_eq!(
            s.listen,
            vec!["127.0.0.1:1053".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(s.lookups, LookupPolicy::Signed);
        assert_eq!(s.limits.max_ttl, 10);
    }

    /// Regression: a missing transfer key file was reported as "cannot read config file".
    #[test]
    fn a_cluster_section_is_read_and_its_mistakes_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("cluster.key");
        std::fs::write(
            &key,
            "key \"cluster\" {\n\talgorithm hmac-sha256;\n\tsecret \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\";\n};\n",
        )
        .unwrap();
        let config = |cluster: &str| {
            format!(
                "[cluster]\nkey_file = {:?}\nlisten = \"127.0.0.1:7101\"\n{cluster}",
                key.display()
            )
        };
        let resolve = |text: &str| {
            let file = FileConfig::parse(text, "test")?;
            Settings::merge(file, &ServeFlags::default())
        };
        let ok = resolve(&config(
            "node = 1\npeers = [\"1=127.0.0.1:7101\", \"2=127.0.0.1:7102\"]\n",
        ))
        .unwrap();
        let cluster = ok.cluster.unwrap();
        assert_eq!(cluster.peers.len(), 2);
        assert_eq!(cluster.snapshot_every, DEFAULT_SNAPSHOT_EVERY);
        for (text, says) in [
            ("node = 0\n", "node must be a positive integer"),
            ("node = 1\npeers = [\"2:127.0.0.1:7102\"]\n", "ID=IP:PORT"),
            (
                "node = 1\npeers = [\"1=127.0.0.1:7109\"]\n",
                "but listen is",
            ),
            (
                "node = 1\npeers = [\"2=127.0.0.1:7102\", \"2=127.0.0.1:7103\"]\n",
                "listed twice",
            ),
            ("node = 1\nsnapshot_every = 0\n", "snapshot_every"),
        ] {
            let err = resolve(&config(text)).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        // A signed zone is served by a cluster too.
        let signed = format!("dnssec = true\n{}", config("node = 1\n"));
        let ok = resolve(&signed).unwrap();
        assert!(ok.dnssec && ok.cluster.is_some());
    }

    #[test]
    fn a_missing_transfer_key_file_is_named_as_a_key_file() {
        let flags = ServeFlags {
            transfer_keys: vec!["/nonexistent/xfer.key".into()],
            ..ServeFlags::default()
        };
        let err = Settings::merge(FileConfig::default(), &flags).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cannot read transfer key file /nonexistent/xfer.key"),
            "{message}"
        );
    }

    /// Regression: `--check-config` printed a Rust debug dump; it prints config-file lines
    /// that, read as a config file, give the same settings.
    #[test]
    fn check_config_prints_the_settings_as_a_config_file() {
        let file = FileConfig::parse(
            "zone = \"a.example\"\nlisten = [\"127.0.0.1:1053\", \"[::1]:1053\"]\nlookups = \"signed\"\nmax_ttl = 30\nlease_default = 600\nmetrics = \"127.0.0.1:9153\"\ndnssec = true\ndenial = \"compact\"\nsecondaries = [\"127.0.0.2:53\"]\n",
            "t",
        )
        .unwrap();
        let flags = ServeFlags {
            data: Some("/var/lib/dial-directory".into()),
            ..ServeFlags::default()
        };
        let settings = Settings::merge(file, &flags).unwrap();
        let text = settings.to_config_text();
        assert!(!text.contains("Settings {"), "{text}");
        let again = Settings::merge(FileConfig::parse(&text, "printed").unwrap(), &flags).unwrap();
        assert_eq!(again.to_config_text(), text);
        assert_eq!(again.zone.origin().to_ascii(), "a.example.");
        assert_eq!(again.listen, settings.listen);
        assert_eq!(again.limits, settings.limits);
        assert_eq!(again.metrics, settings.metrics);
        assert_eq!(again.secondaries, settings.secondaries);
        assert_eq!((again.dnssec, again.denial), (true, Denial::Compact));
        assert_eq!(again.lookups, LookupPolicy::Signed);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = FileConfig::parse("listn = []", "cfg.toml").unwrap_err();
        assert!(err.to_string().contains("cfg.toml"), "{err}");
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
