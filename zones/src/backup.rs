//! The backup file: everything needed to rebuild the directory on a new disk, keys included.
//!
//! JSON lines, one record per line, so that a file of a million terminals is written and read
//! as a stream and can be inspected with ordinary tools:
//!
//! ```text
//! {"format":"dial-directory-backup","version":2,"zone":"dial.example.","serial":42,...,
//!  "dnssec_keys":[{"private_key":"<base64 PKCS#8>","created":...,"state":"Active"}]}
//! {"record":"terminal","code":"5551234","kid":"acme","mid":"3f9a0c1d22e4b7a8",
//!  "algorithm":"hmac-sha256","secret":"<base64>","registered_at":...,"presence":{...}}
//! {"record":"delta","seq":7,"from":41,"to":42,"changes":[...]}
//! ```
//!
//! The first line is the [`Header`]; then every terminal, then the journal (oldest first).
//! A reader refuses a file whose `format` is not this one or whose `version` it does not
//! know, and one whose record count differs from the header's (a truncated copy). The file
//! holds every terminal's TSIG secret: it is written owner-only (0600).

use serde::{Deserialize, Serialize};

use crate::identity::{CallingCode, Kid, Mid};
use crate::journal::Delta;
use crate::key::{Algorithm, Secret, TerminalKeyName, TsigKey};
use crate::model::{Entry, Presence, Terminal};

/// The `format` of the header line.
pub const FORMAT: &str = "dial-directory-backup";

/// The version of the layout above; bumped whenever a record changes shape. Version 2
/// added the zone's DNSSEC keys to the header; version 3 added the enrollment records
/// (`token`, `customer`, `awaiting`) after the journal. Older files are still read.
pub const VERSION: u32 = 3;

/// The first line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The zone's origin, fully qualified (key names are derived from it).
    pub zone: String,
    /// The zone's serial when the snapshot was taken.
    pub serial: u32,
    /// The fingerprint of the static zone that serial belongs to.
    pub zone_fingerprint: Option<String>,
    /// How many `terminal` records follow.
    pub terminals: usize,
    /// How many `delta` records follow them.
    pub journal: usize,
    /// Unix seconds when the snapshot was taken.
    pub created: u64,
    /// The zone's DNSSEC keys (none when DNSSEC was never turned on): a restored server
    /// signs with the same keys, so the DS at the parent still matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnssec_keys: Vec<DnssecKeyRecord>,
    /// How many enrollment records (`token`, `customer`, `awaiting`) follow the journal.
    #[serde(default)]
    pub enrollment: usize,
    /// A cluster's snapshot of a signed zone: the signatures it carries (how many
    /// `signature` records follow the enrollment records, the static names' and the
    /// SOA's), so that a node installing it serves the leader's. Backups have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<crate::store::SnapshotSignatures>,
}

/// A DNSSEC key in a backup. `Debug` never shows the private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnssecKeyRecord {
    /// PKCS#8 DER, base64.
    pub private_key: String,
    pub created: u64,
    pub role: crate::dnssec::KeyRole,
    pub state: crate::dnssec::KeyState,
    /// Unix seconds when it entered its state.
    pub since: u64,
}

impl std::fmt::Debug for DnssecKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnssecKeyRecord")
            .field("private_key", &"<secret>")
            .field("created", &self.created)
            .field("role", &self.role)
            .field("state", &self.state)
            .field("since", &self.since)
            .finish()
    }
}

impl DnssecKeyRecord {
    pub fn of(key: &crate::dnssec::ZoneKey) -> Self {
        use base64::Engine as _;
        Self {
            private_key: base64::engine::general_purpose::STANDARD.encode(key.private_pkcs8()),
            created: key.created,
            role: key.role,
            state: key.state,
            since: key.since,
        }
    }

    pub fn to_key(&self) -> Result<crate::dnssec::ZoneKey, BackupError> {
        use base64::Engine as _;
        let pkcs8 = base64::engine::general_purpose::STANDARD
            .decode(&self.private_key)
            .map_err(|e| BackupError::NotABackup(format!("a DNSSEC key is not base64: {e}")))?;
        crate::dnssec::ZoneKey::from_pkcs8(pkcs8, self.created, self.role, self.state, self.since)
            .map_err(|e| BackupError::NotABackup(e.to_string()))
    }
}

impl Header {
    /// Refuses a file of another format or version.
    pub fn check(&self) -> Result<(), BackupError> {
        if self.format != FORMAT {
            return Err(BackupError::NotABackup(format!(
                "its format is {:?}",
                self.format
            )));
        }
        if !(1..=VERSION).contains(&self.version) {
            return Err(BackupError::Version(self.version));
        }
        Ok(())
    }
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    Terminal(TerminalRecord),
    Delta(Delta),
    /// An enrollment token: its verifier, never the token.
    Token(TokenRecord),
    /// A customer's limit and suspension.
    Customer(CustomerRecord),
    /// A terminal waiting for approval.
    Awaiting(AwaitingRecord),
    /// A terminal's signatures (a cluster's snapshot of a signed zone).
    Signature(SignatureRecord),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRecord {
    pub code: CallingCode,
    pub sigs: crate::dnssec::TerminalSigs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: crate::enroll::TokenId,
    pub token: crate::model::TokenEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    pub kid: Kid,
    pub customer: crate::model::Customer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingRecord {
    pub code: CallingCode,
}

impl Record {
    /// The backup line of an enrollment row.
    #[cfg(feature = "store")]
    pub fn of_enrolled(item: crate::store::Enrolled) -> Self {
        use crate::store::Enrolled;
        match item {
            Enrolled::Token(id, token) => Self::Token(TokenRecord { id, token }),
            Enrolled::Customer(kid, customer) => Self::Customer(CustomerRecord { kid, customer }),
            Enrolled::Awaiting(code) => Self::Awaiting(AwaitingRecord { code }),
        }
    }
}

/// A terminal with its key, addresses, lease and replay memory. `Debug` never shows the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalRecord {
    pub code: CallingCode,
    pub kid: Kid,
    pub mid: Mid,
    pub algorithm: Algorithm,
    pub secret: Secret,
    pub registered_at: u64,
    pub presence: Presence,
}

impl TerminalRecord {
    pub fn of(entry: &Entry) -> Self {
        let t = &entry.terminal;
        Self {
            code: t.code.clone(),
            kid: t.kid.clone(),
            mid: t.mid.clone(),
            algorithm: t.key.algorithm,
            secret: t.key.secret.clone(),
            registered_at: t.registered_at,
            presence: entry.presence.clone(),
        }
    }

    /// The terminal again, its key named under `origin`.
    pub fn into_entry(self, origin: &hickory_proto::rr::Name) -> Entry {
        let key = TsigKey {
            name: TerminalKeyName::format(&self.code, &self.mid, &self.kid, origin),
            algorithm: self.algorithm,
            secret: self.secret,
        };
        Entry {
            terminal: Terminal {
                code: self.code,
                kid: self.kid,
                mid: self.mid,
                key,
                registered_at: self.registered_at,
            },
            presence: self.presence,
        }
    }
}

/// Why a backup cannot be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a backup of this directory: {0}")]
    NotABackup(String),
    #[error(
        "the backup has format version {0}, and this build reads version {VERSION}; restore it with the matching release of nameserver"
    )]
    Version(u32),
    #[error("line {line} of the backup is not understood: {message}")]
    Line { line: usize, message: String },
    #[error(
        "the backup is incomplete: its header announces {expected} {what}, the file holds {found}"
    )]
    Truncated {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("cannot read the backup: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A cluster's log position and membership, as the cluster encodes them.
pub type ClusterPosition = (Vec<u8>, Vec<u8>);

/// One line of a backup: the header first, then the records.
#[derive(Debug)]
pub enum Line {
    Header(Header),
    Record(Record),
}

impl Line {
    /// The line of one item of a store's snapshot of zone `zone`, and the cluster's log
    /// position if the item is the head and the store has one.
    pub fn of(item: crate::store::Snapshotted, zone: &str) -> (Self, Option<ClusterPosition>) {
        use crate::store::Snapshotted;
        match item {
            Snapshotted::Head {
                serial,
                zone_fingerprint,
                terminals,
                journal,
                zone_keys,
                enrollment,
                cluster,
                signatures,
            } => {
                let header = Header {
                    format: FORMAT.into(),
                    version: VERSION,
                    zone: zone.to_owned(),
                    serial: serial.unwrap_or_default(),
                    zone_fingerprint,
                    terminals,
                    journal,
                    created: crate::unix_now(),
                    dnssec_keys: zone_keys.iter().map(DnssecKeyRecord::of).collect(),
                    enrollment,
                    signatures,
                };
                (Self::Header(header), cluster)
            }
            Snapshotted::Terminal(entry) => (
                Self::Record(Record::Terminal(TerminalRecord::of(&entry))),
                None,
            ),
            Snapshotted::Delta(delta) => (Self::Record(Record::Delta(delta)), None),
            Snapshotted::Enrollment(item) => (Self::Record(Record::of_enrolled(item)), None),
            Snapshotted::Signed(key, sigs) => (
                Self::Record(Record::Signature(SignatureRecord {
                    code: key.to_code(),
                    sigs,
                })),
                None,
            ),
        }
    }

    fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        match self {
            Self::Header(header) => serde_json::to_writer(&mut *out, header),
            Self::Record(record) => serde_json::to_writer(&mut *out, record),
        }
        .map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    }
}

impl Header {
    /// Refuses a backup whose records are fewer or more than its header counts.
    pub fn check_counts(
        &self,
        terminals: usize,
        journal: usize,
        enrollment: usize,
    ) -> Result<(), BackupError> {
        for (what, expected, found) in [
            ("terminals", self.terminals, terminals),
            ("journal entries", self.journal, journal),
            ("enrollment records", self.enrollment, enrollment),
        ] {
            if expected != found {
                return Err(BackupError::Truncated {
                    what,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }
}

/// Writes a consistent backup of `directory` to `out` as the backup file holds it (the
/// header line, then one line per record); returns the cluster's log position and
/// membership recorded in the same read transaction, if any (a cluster's snapshot).
/// Blocking.
pub fn write_lines(
    directory: &crate::Directory,
    signatures: bool,
    out: &mut impl std::io::Write,
) -> Result<Option<ClusterPosition>, BackupError> {
    let zone = directory.zone().origin().to_ascii();
    let (mut failed, mut cluster) = (None, None);
    directory.snapshot(signatures, |item| {
        let (line, position) = Line::of(item, &zone);
        cluster = cluster.take().or(position);
        match line.write_to(out) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        Some(e) => Err(BackupError::Io(e)),
        None => Ok(cluster),
    }
}

/// Reads a backup written by [`write_lines`]: its header, then its records.
pub fn read_lines(
    input: impl std::io::BufRead,
) -> Result<(Header, impl Iterator<Item = Result<Record, BackupError>>), BackupError> {
    let mut lines = input.lines().enumerate();
    let header: Header = match lines.next() {
        Some((_, Ok(line))) => {
            serde_json::from_str(&line).map_err(|e| BackupError::NotABackup(e.to_string()))?
        }
        Some((_, Err(e))) => return Err(BackupError::Io(e)),
        None => return Err(BackupError::NotABackup("it is empty".into())),
    };
    let records = lines.map(|(number, line)| {
        let line = line?;
        serde_json::from_str::<Record>(&line).map_err(|e| BackupError::Line {
            line: number + 1,
            message: e.to_string(),
        })
    });
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn entry() -> Entry {
        let origin = hickory_proto::rr::Name::from_ascii("dial.example.").unwrap();
        let record = TerminalRecord {
            code: "5551234".parse().unwrap(),
            kid: "acme".parse().unwrap(),
            mid: "3f9a0c1d22e4b7a8".parse().unwrap(),
            algorithm: Algorithm::HmacSha256,
            secret: Secret::from_bytes(vec![9; 32]),
            registered_at: 5,
            presence: Presence {
                last_signed: 77,
                recent_macs: vec![(77, crate::model::mac_print(&[1, 2]))],
                ..Presence::default()
            },
        };
        let mut entry = record.into_entry(&origin);
        entry.presence.addresses.v4.addrs = vec![Ipv4Addr::new(192, 0, 2, 1)].into();
        entry
    }

    #[test]
    fn a_terminal_survives_the_round_trip_through_a_line() {
        let origin = hickory_proto::rr::Name::from_ascii("dial.example.").unwrap();
        let entry = entry();
        let line = serde_json::to_string(&Record::Terminal(TerminalRecord::of(&entry))).unwrap();
        assert!(line.starts_with(r#"{"record":"terminal""#), "{line}");
        let Record::Terminal(back) = serde_json::from_str(&line).unwrap() else {
            panic!("not a terminal: {line}");
        };
        assert_eq!(back.into_entry(&origin), entry);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", TerminalRecord::of(&entry()));
        assert!(!shown.contains(&Secret::from_bytes(vec![9; 32]).to_base64()));
    }

    #[test]
    fn another_format_or_version_is_refused() {
        let mut header = Header {
            format: FORMAT.into(),
            version: VERSION,
            zone: "dial.example.".into(),
            serial: 1,
            zone_fingerprint: None,
            terminals: 0,
            journal: 0,
            created: 0,
            dnssec_keys: Vec::new(),
            enrollment: 0,
            signatures: None,
        };
        assert!(header.check().is_ok());
        header.version = VERSION + 1;
        assert!(matches!(header.check(), Err(BackupError::Version(_))));
        header.format = "something-else".into();
        assert!(matches!(header.check(), Err(BackupError::NotABackup(_))));
    }
}
