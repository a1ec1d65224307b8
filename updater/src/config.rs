//! The updater's settings: flags, or the same keys in a TOML file (`--config`); flags win.
//! `updater sample-config` writes a file with every setting ([`crate::sample`]).
//!
//! ```toml
//! server = ["192.0.2.53:53", "[2001:db8::53]:53"]   # tried in order; whoami asks one of each family
//! zone = "dial.example."
//! code = "5551234"
//! key_file = "/etc/dial/5551234.key"
//! interface = "wlan0"            # the card whose MAC the key is bound to, and whose addresses count
//! address = ["auto"]             # "auto" and/or fixed addresses
//! ttl = 60
//! lease = 3600                   # RFC 9664 lease asked for; refreshed at 80-85% of the grant
//! allow_private = false          # publish RFC 1918 / ULA / shared addresses (labs, company networks)
//! keep_on_exit = false           # leave the addresses in the directory on SIGTERM
//! recheck = 60                   # seconds between checks of what the directory answers
//! watch = "poll"                 # getifaddrs every second instead of netlink events
//! ```

use zones::pin::Pin;

use crate::tls::Channel;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::Name;
use serde::Deserialize;
use zones::identity::CallingCode;
use zones::key::TsigKey;

use crate::network::Watch;

/// The directory's zone without `--zone`.
pub const DEFAULT_ZONE: &str = "dial.example.";
/// TTL of the published records without `--ttl`.
pub const DEFAULT_TTL: u32 = 60;
/// Lease asked for without `--lease`, seconds.
pub const DEFAULT_LEASE: u32 = 3600;
/// Seconds between checks of what the directory answers, without `--recheck`.
pub const DEFAULT_RECHECK: u64 = 60;

/// Why the settings are not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("key file {path} is not valid: {source}")]
    Key {
        path: String,
        source: zones::key::KeyError,
    },
    #[error("missing setting: {0}")]
    Missing(&'static str),
    #[error("zone {0:?} is not a valid domain name")]
    Zone(String),
    #[error("{0:?} is neither `auto` nor an IP address")]
    Address(String),
}

/// One entry of `--address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AddressSource {
    /// Discover: whoami and the interface.
    Auto,
    /// Always publish this address.
    Fixed(IpAddr),
}

impl FromStr for AddressSource {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        s.parse()
            .map(Self::Fixed)
            .map_err(|_| ConfigError::Address(s.to_owned()))
    }
}

impl TryFrom<String> for AddressSource {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Flags shared by `run` and `once`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Flags {
    /// TOML file with the same settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory server (repeatable; an IPv4 and an IPv6 one let whoami see both families).
    #[arg(long = "server", value_name = "ADDR:PORT", value_parser = zones::endpoint::parse)]
    pub servers: Vec<SocketAddr>,
    /// The directory's zone.
    #[arg(long)]
    pub zone: Option<String>,
    /// This terminal's calling code.
    #[arg(long)]
    pub code: Option<CallingCode>,
    /// The key issued by `nameserver register` (BIND key-file format).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The network card: its MAC must match the key's MID; its addresses are published.
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// `auto` (discover) and/or fixed addresses to publish (repeatable).
    #[arg(long = "address", value_name = "auto|IP")]
    pub addresses: Vec<AddressSource>,
    /// TTL of the published records (the directory may clamp it).
    #[arg(long)]
    pub ttl: Option<u32>,
    /// Lease to ask for, in seconds (RFC 9664).
    #[arg(long)]
    pub lease: Option<u32>,
    /// Also publish private, ULA and shared-range addresses (labs, company networks).
    #[arg(long)]
    pub allow_private: bool,
    /// On SIGTERM or SIGINT, leave the addresses in the directory.
    #[arg(long)]
    pub keep_on_exit: bool,
    /// Seconds between checks of what the directory answers.
    #[arg(long, value_name = "SECONDS")]
    pub recheck: Option<u64>,
    /// Where addresses and their changes come from: netlink (Linux, the default there) or
    /// poll (getifaddrs every second; Linux, macOS, the BSDs).
    #[arg(long, value_enum)]
    pub watch: Option<Watch>,
    /// Reach the servers by DNS over TLS (RFC 7858; their port is usually 853), trusting
    /// the certificate with this SPKI pin (base64, as the directory logs it) and no other.
    #[arg(long, value_name = "BASE64")]
    pub tls_pin: Option<Pin>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<Vec<SocketAddr>>,
    zone: Option<String>,
    code: Option<CallingCode>,
    key_file: Option<PathBuf>,
    interface: Option<String>,
    address: Option<Vec<AddressSource>>,
    ttl: Option<u32>,
    lease: Option<u32>,
    allow_private: Option<bool>,
    keep_on_exit: Option<bool>,
    recheck: Option<u64>,
    watch: Option<Watch>,
    tls_pin: Option<Pin>,
}

/// The settings the updater runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub servers: Vec<SocketAddr>,
    pub zone: Name,
    pub code: CallingCode,
    pub key: TsigKey,
    pub interface: Option<String>,
    pub auto: bool,
    pub fixed: Vec<IpAddr>,
    pub ttl: u32,
    pub lease: u32,
    pub allow_private: bool,
    pub keep_on_exit: bool,
    pub recheck: Duration,
    pub watch: Watch,
    /// Time allowed for one answer.
    pub timeout: Duration,
    /// DNS over TLS to the certificate with this pin; `None`: UDP and TCP.
    pub tls_pin: Option<Pin>,
}

impl Settings {
    /// How requests reach the directory.
    pub fn channel(&self) -> Channel {
        self.tls_pin.map_or(Channel::Plain, Channel::tls)
    }

    pub fn resolve(flags: &Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text = read(path)?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        Self::merge(flags, file)
    }

    fn merge(flags: &Flags, file: FileConfig) -> Result<Self, ConfigError> {
        let servers = if flags.servers.is_empty() {
            file.server.unwrap_or_default()
        } else {
            flags.servers.clone()
        };
        if servers.is_empty() {
            return Err(ConfigError::Missing("--server ADDR:PORT"));
        }
        let zone_text = flags
            .zone
            .clone()
            .or(file.zone)
            .unwrap_or_else(|| DEFAULT_ZONE.into());
        let zone = zones::zone::zone_name(&zone_text).map_err(|_| ConfigError::Zone(zone_text))?;
        let code = flags
            .code
            .clone()
            .or(file.code)
            .ok_or(ConfigError::Missing("--code CODE"))?;
        let key_file = flags
            .key_file
            .clone()
            .or(file.key_file)
            .ok_or(ConfigError::Missing("--key-file FILE"))?;
        let sources = if flags.addresses.is_empty() {
            file.address.unwrap_or_else(|| vec![AddressSource::Auto])
        } else {
            flags.addresses.clone()
        };
        Ok(Self {
            servers,
            zone,
            code,
            key: load_key(&key_file)?,
            interface: flags.interface.clone().or(file.interface),
            auto: sources.contains(&AddressSource::Auto),
            fixed: sources
                .iter()
                .filter_map(|s| match s {
                    AddressSource::Fixed(ip) => Some(*ip),
                    AddressSource::Auto => None,
                })
                .collect(),
            ttl: flags.ttl.or(file.ttl).unwrap_or(DEFAULT_TTL),
            lease: flags.lease.or(file.lease).unwrap_or(DEFAULT_LEASE),
            allow_private: flags.allow_private || file.allow_private.unwrap_or(false),
            keep_on_exit: flags.keep_on_exit || file.keep_on_exit.unwrap_or(false),
            recheck: Duration::from_secs(
                flags
                    .recheck
                    .or(file.recheck)
                    .unwrap_or(DEFAULT_RECHECK)
                    .max(1),
            ),
            watch: flags
                .watch
                .or(file.watch)
                .unwrap_or(Watch::platform_default()),
            timeout: Duration::from_secs(3),
            tls_pin: flags.tls_pin.or(file.tls_pin),
        })
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a BIND-format key file.
pub fn load_key(path: &Path) -> Result<TsigKey, ConfigError> {
    TsigKey::from_key_file(&read(path)?).map_err(|source| ConfigError::Key {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_sample_config_is_what_the_code_generates() {
        let shipped = include_str!("../dist/updater.toml");
        assert_eq!(
            shipped,
            crate::sample::config(),
            "updater/dist/updater.toml is stale: write it with `updater sample-config`"
        );
    }

    #[test]
    fn the_sample_config_changes_nothing_but_the_required_settings() {
        use crate::sample::{EXAMPLE_CODE, EXAMPLE_SERVER};
        let key = key_file();
        let file: FileConfig = toml::from_str(&crate::sample::config()).unwrap();
        let only_key = Flags {
            key_file: Some(key.path().to_path_buf()),
            ..Flags::default()
        };
        let with = Settings::merge(&only_key, file).unwrap();
        let required = Flags {
            servers: vec![EXAMPLE_SERVER.parse().unwrap()],
            code: Some(EXAMPLE_CODE.parse().unwrap()),
            key_file: Some(key.path().to_path_buf()),
            ..Flags::default()
        };
        let without = Settings::merge(&required, FileConfig::default()).unwrap();
        assert_eq!(format!("{with:?}"), format!("{without:?}"));
    }

    fn key_file() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "key \"5551234.3f9a0c1d22e4b7a8.acme.key.dial.example.\" { algorithm hmac-sha256; secret \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=\"; };",
        )
        .unwrap();
        file
    }

    #[test]
    fn flags_give_settings_with_defaults() {
        let key = key_file();
        let flags = Flags {
            servers: vec!["127.0.0.1:5353".parse().unwrap()],
            code: Some("5551234".parse().unwrap()),
            key_file: Some(key.path().to_path_buf()),
            addresses: vec!["auto".parse().unwrap(), "192.0.2.1".parse().unwrap()],
            ..Flags::default()
        };
        let s = Settings::resolve(&flags).unwrap();
        assert_eq!(s.zone.to_ascii(), "dial.example.");
        assert!(s.auto);
        assert_eq!(s.fixed, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            (s.ttl, s.lease, s.recheck),
            (60, 3600, Duration::from_secs(60))
        );
    }

    #[test]
    fn the_config_file_is_read_and_flags_win() {
        let key = key_file();
        let config = tempfile::NamedTempFile::new().unwrap();
        let text = format!(
            "server = [\"127.0.0.1:53\"]\ncode = \"5551234\"\nkey_file = {:?}\naddress = [\"192.0.2.9\"]\nlease = 600\n",
            key.path()
        );
        std::fs::write(config.path(), text).unwrap();
        let flags = Flags {
            config: Some(config.path().to_path_buf()),
            lease: Some(900),
            ..Flags::default()
        };
        let s = Settings::resolve(&flags).unwrap();
        assert!(!s.auto);
        assert_eq!(s.lease, 900);
        let bad = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(bad.path(), "sever = []").unwrap();
        let err = Settings::resolve(&Flags {
            config: Some(bad.path().to_path_buf()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("sever"), "{err}");
    }

    #[test]
    fn missing_settings_are_named() {
        let err = Settings::resolve(&Flags::default()).unwrap_err();
        assert!(err.to_string().contains("--server"), "{err}");
        assert!("nonsense".parse::<AddressSource>().is_err());
    }
}
