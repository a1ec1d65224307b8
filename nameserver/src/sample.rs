//! The sample config file (`nameserver sample-config`, and `nameserver/dist/nameserver.toml`),
//! written from the same defaults [`crate::config::Settings`] falls back on, so that the file
//! an operator starts from says what the server does without it. A test keeps the copy in
//! the repository equal to this output, and checks that reading it changes nothing.

use zones::directory::Limits;

use crate::config::TcpLimits;
use crate::config::{
    DEFAULT_DNSSEC_PROPAGATION_DELAY, DEFAULT_LISTEN, DEFAULT_NOTIFY_DELAY_MS, DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_LIMIT_SLIP, DEFAULT_UPDATE_RATE_LIMIT,
};

/// The sample config: every setting, each with its default value and what it does.
pub fn config() -> String {
    let limits = Limits::default();
    let tcp = TcpLimits::default();
    let mut out = String::from(
        "# nameserver serve --config FILE. Every setting is optional; the values below are what\n\
         # the server uses without them (from `nameserver sample-config`). Flags override them.\n\
         \n\
         # The zone: its name when there is no zone file, or an RFC 1035 zone file with the SOA,\n\
         # NS, glue and any static records.\n\
         # zone = \"dial.example.\"\n\
         # zone_file = \"/etc/dial/dial.zone\"\n",
    );
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "# UDP and TCP; IPv4 or [IPv6]:port.\nlisten = [\"{DEFAULT_LISTEN}\"]"
    ));
    line(
        "# The store and the control socket (default: $XDG_STATE_HOME/dial-directory, else\n\
         # ~/.local/state/dial-directory, else /var/lib/dial-directory).\n\
         # data = \"/var/lib/dial-directory\""
            .into(),
    );
    line(
        "# \"public\", or \"signed\": only TSIG-signed queries are answered.\nlookups = \"public\""
            .into(),
    );
    line(format!(
        "# Larger TTLs in updates are clamped to this.\nmax_ttl = {}",
        limits.max_ttl
    ));
    line(format!(
        "# More addresses in one terminal's RRset: the update is refused.\nmax_addresses_per_family = {}",
        limits.max_addresses_per_family
    ));
    line(format!(
        "# TSIG time window, seconds.\ntsig_fudge = {}",
        limits.fudge
    ));
    line(format!(
        "# Seconds a TCP connection may sit idle, and a client may take to read an answer.\ntcp_idle_timeout = {}\ntcp_write_timeout = {}",
        tcp.idle_timeout.as_secs(),
        tcp.write_timeout.as_secs()
    ));
    line(format!(
        "# TCP connections in all, and from one client /24 or /56.\ntcp_max_connections = {}\ntcp_max_per_client = {}",
        tcp.max_connections, tcp.max_per_client
    ));
    let lease_default = limits.leases.default.map_or_else(
        || "# lease_default = 3600   # absent: updates without a lease never expire".to_owned(),
        |d| format!("lease_default = {d}"),
    );
    line(format!(
        "# Update leases (RFC 9664): shortest and longest granted, and the lease of an update\n# that asks for none.\nlease_min = {}\nlease_max = {}\n{lease_default}",
        limits.leases.min, limits.leases.max
    ));
    line(
        "# Where NOTIFY goes after each change, and the TSIG keys (BIND key files) allowed to\n\
         # transfer the zone; the first one also signs NOTIFY.\n\
         secondaries = []\n\
         transfer_keys = []"
            .into(),
    );
    line(format!(
        "# Changes within this many milliseconds share one NOTIFY.\nnotify_delay_ms = {DEFAULT_NOTIFY_DELAY_MS}"
    ));
    line(format!(
        "# Changes kept for incremental transfers (IXFR).\nixfr_history = {}",
        limits.journal_depth
    ));
    line(format!(
        "# Response rate limiting: UDP answers per second per client /24 or /56 (0: off); every\n# n-th answer over the limit goes out truncated (TC) instead of dropped.\nrate_limit = {DEFAULT_RATE_LIMIT}\nrate_limit_slip = {DEFAULT_RATE_LIMIT_SLIP}"
    ));
    line(format!(
        "# Updates per second per terminal key, bursts of twice as many (0: off).\nupdate_rate_limit = {DEFAULT_UPDATE_RATE_LIMIT}"
    ));
    line(
        "# Prometheus metrics at http://ADDR/metrics (absent: off).\n# metrics = \"127.0.0.1:9153\""
            .into(),
    );
    line(
        "# DNS over TLS (RFC 7858), usually on port 853 (absent: off). Without a certificate and\n# key, a self-signed one is made in the data directory and its SPKI pin logged at start.\n# tls_listen = [\"0.0.0.0:853\"]\n# tls_cert = \"/etc/dial/tls.pem\"\n# tls_key = \"/etc/dial/tls.key\""
            .into(),
    );
    line(format!(
        "# Sign the zone (DNSSEC): an ECDSA P-256 key is made at the first start with it, and\n# `nameserver dnssec ds` prints the DS records for the parent zone.\ndnssec = false\n# Seconds a key rollover allows, on top of TTLs, for a change to reach every secondary and\n# resolver.\ndnssec_propagation_delay = {DEFAULT_DNSSEC_PROPAGATION_DELAY}\n# How the signed zone denies existence: \"nsec3\" (secondaries can serve it; codes can be\n# recovered by hashing digit strings) or \"compact\" (RFC 9824: cannot be walked, is not\n# transferred).\ndenial = \"nsec3\""
    ));
    line(format!(
        "# A cluster node (absent: a single server): Raft over the cluster's own address, each\n# node listed in `peers` as ID=IP:PORT, traffic keyed by a BIND-format key file shared by\n# every node. With dnssec, the leader signs and every node serves its signatures. See\n# the manual's chapter \"A cluster\".\n# [cluster]\n# node = 1\n# listen = \"192.0.2.1:7101\"\n# peers = [\"1=192.0.2.1:7101\", \"2=192.0.2.2:7101\", \"3=192.0.2.3:7101\"]\n# key_file = \"/etc/dial/cluster.key\"\n# snapshot_every = {}",
        crate::config::DEFAULT_SNAPSHOT_EVERY
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, ServeFlags, Settings};

    #[test]
    fn the_shipped_sample_config_is_what_the_code_generates() {
        let shipped = include_str!("../dist/nameserver.toml");
        assert_eq!(
            shipped,
            config(),
            "nameserver/dist/nameserver.toml is stale: write it with `nameserver sample-config`"
        );
    }

    #[test]
    fn the_sample_config_changes_nothing() {
        let file = FileConfig::parse(&config(), "sample").unwrap();
        let with = Settings::merge(file, &ServeFlags::default()).unwrap();
        let without = Settings::merge(FileConfig::default(), &ServeFlags::default()).unwrap();
        assert_eq!(format!("{with:?}"), format!("{without:?}"));
    }
}
