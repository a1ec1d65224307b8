//! The zone's static part: origin, SOA, NS, glue and any other records an operator puts in
//! an RFC 1035 zone file. Terminal names (`<code>.<zone>`) are not here: they live in the
//! [`crate::directory`].
//!
//! With no zone file, [`Zone::embedded_default`] serves `dial.example.` with the name server
//! `ns1.dial.example.` at 127.0.0.1.
//!
//! # Limitations
//! - Delegations (NS records below the apex) are refused at load: the directory is one zone.
//! - Names directly under the apex made of 3 to 15 digits are reserved for terminals, and
//!   `whoami` and `key` are reserved too; a zone file may not put records there.

use std::collections::BTreeMap;
use std::path::Path;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use crate::identity::CallingCode;

/// The zone served when no zone file is given.
pub const DEFAULT_ZONE_FILE: &str = "\
$ORIGIN dial.example.
$TTL 3600
@       IN SOA ns1.dial.example. hostmaster.dial.example. (
                1          ; serial (the directory increases it on every change)
                3600       ; refresh
                600        ; retry
                604800     ; expire
                30 )       ; negative-answer TTL
@       IN NS  ns1.dial.example.
ns1     IN A   127.0.0.1
";

/// Labels under the apex that a zone file may not use.
pub const RESERVED_LABELS: [&str; 2] = ["whoami", "key"];

/// Why a zone could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("cannot read zone file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("zone file {path} does not parse: {message}")]
    Parse { path: String, message: String },
    #[error("zone file {path} has no SOA record at its origin {origin}")]
    NoSoa { path: String, origin: String },
    #[error("zone file {path} has no NS record at its origin {origin}")]
    NoNs { path: String, origin: String },
    #[error("zone file {path} has a record at {name}, outside its origin {origin}")]
    OutOfZone {
        path: String,
        name: String,
        origin: String,
    },
    #[error(
        "zone file {path} has records at {name}, a name reserved for the directory (calling codes, whoami, key)"
    )]
    Reserved { path: String, name: String },
    #[error("zone file {path} delegates {name} with NS records; delegations are not supported")]
    Delegation { path: String, name: String },
    #[error("zone file {path} has {kind} records; only class IN is served")]
    Class { path: String, kind: String },
    #[error("zone name {0:?} is not a valid domain name")]
    Origin(String),
}

/// Zone files longer than this are not searched for the line of a parse error.
const LOCATE_MAX_LINES: usize = 5_000;

/// The line at which `text` first fails to parse with `message` (hickory's parser does not
/// say): the shortest run of leading lines that fails the same way. A record spread over
/// lines with parentheses fails differently until its last line is in.
fn failing_line(text: &str, origin: Option<&Name>, message: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() > LOCATE_MAX_LINES {
        return None;
    }
    let mut prefix = String::with_capacity(text.len());
    for (number, line) in lines.iter().enumerate() {
        prefix.push_str(line);
        prefix.push('\n');
        let failed = Parser::new(prefix.as_str(), None, origin.cloned()).parse();
        if failed.is_err_and(|e| e.to_string() == message) {
            return Some(number + 1);
        }
    }
    None
}

/// A zone name as a person writes it, with or without the final dot (`dial.example` and
/// `dial.example.` are the same zone, as dig and nsupdate take them): fully qualified.
pub fn zone_name(text: &str) -> Result<Name, ZoneError> {
    let mut name = Name::from_ascii(text).map_err(|_| ZoneError::Origin(text.to_owned()))?;
    name.set_fqdn(true);
    Ok(name)
}

/// Where a query name falls in the zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePlace {
    /// Not in this zone.
    Outside,
    /// The zone's apex.
    Apex,
    /// A terminal's name, `<code>.<zone>`.
    Terminal(CallingCode),
    /// A name below a terminal's name; never exists.
    BelowTerminal,
    /// `whoami.<zone>`: answered with the asker's own address.
    Whoami,
    /// Any other name in the zone: static data or nothing.
    Other,
}

/// The static zone data.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    lower_origin: LowerName,
    soa: Record,
    /// Static RRsets by owner and type, the SOA included.
    rrsets: BTreeMap<(LowerName, RecordType), Vec<Record>>,
}

impl Zone {
    /// The zone served when no zone file is given.
    pub fn embedded_default() -> Self {
        Self::parse(DEFAULT_ZONE_FILE, "<embedded default>", None)
            .expect("the embedded default zone is valid")
    }

    /// The default zone layout for another zone name: SOA, NS `ns1.<zone>`, glue 127.0.0.1.
    pub fn default_for(origin: &str) -> Result<Self, ZoneError> {
        let name = zone_name(origin)?;
        let text = DEFAULT_ZONE_FILE.replace("dial.example.", &name.to_ascii());
        Self::parse(&text, "<embedded default>", None)
    }

    /// Loads a zone file. `origin` is used where the file has no `$ORIGIN`.
    pub fn load(path: &Path, origin: Option<&str>) -> Result<Self, ZoneError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown, origin)
    }

    /// Parses zone-file text; `path` only names it in errors.
    pub fn parse(text: &str, path: &str, origin: Option<&str>) -> Result<Self, ZoneError> {
        let origin = origin.map(zone_name).transpose()?;
        let parser = Parser::new(text, None, origin.clone());
        let (origin, sets) = parser.parse().map_err(|e| {
            let message = e.to_string();
            let line = failing_line(text, origin.as_ref(), &message);
            ZoneError::Parse {
                path: line.map_or_else(|| path.to_owned(), |n| format!("{path}:{n}")),
                message,
            }
        })?;
        let mut rrsets = BTreeMap::new();
        for (key, set) in sets {
            let records: Vec<Record> = set.records_without_rrsigs().cloned().collect();
            rrsets.insert((key.name, key.record_type), records);
        }
        Self::from_rrsets(origin, rrsets, path)
    }

    fn from_rrsets(
        origin: Name,
        rrsets: BTreeMap<(LowerName, RecordType), Vec<Record>>,
        path: &str,
    ) -> Result<Self, ZoneError> {
        // Names compare without case; one spelling keeps logs, key names and output stable.
        let origin = origin.to_lowercase();
        let lower_origin = LowerName::new(&origin);
        let origin_text = origin.to_ascii();
        let soa = rrsets
            .get(&(lower_origin.clone(), RecordType::SOA))
            .and_then(|set| set.first())
            .cloned()
            .ok_or_else(|| ZoneError::NoSoa {
                path: path.to_owned(),
                origin: origin_text.clone(),
            })?;
        if !rrsets.contains_key(&(lower_origin.clone(), RecordType::NS)) {
            return Err(ZoneError::NoNs {
                path: path.to_owned(),
                origin: origin_text,
            });
        }
        let zone = Self {
            origin,
            lower_origin,
            soa,
            rrsets,
        };
        zone.check_static_names(path)?;
        Ok(zone)
    }

    /// Refuses records outside the zone, in reserved places, delegations and other classes.
    fn check_static_names(&self, path: &str) -> Result<(), ZoneError> {
        for ((name, rtype), records) in &self.rrsets {
            let shown = name.to_string();
            match self.place(&Name::from(name.clone())) {
                NamePlace::Outside => {
                    return Err(ZoneError::OutOfZone {
                        path: path.to_owned(),
                        name: shown,
                        origin: self.origin.to_ascii(),
                    });
                }
                NamePlace::Terminal(_) | NamePlace::BelowTerminal | NamePlace::Whoami => {
                    return Err(ZoneError::Reserved {
                        path: path.to_owned(),
                        name: shown,
                    });
                }
                NamePlace::Other if self.is_reserved(name) => {
                    return Err(ZoneError::Reserved {
                        path: path.to_owned(),
                        name: shown,
                    });
                }
                NamePlace::Other if *rtype == RecordType::NS => {
                    return Err(ZoneError::Delegation {
                        path: path.to_owned(),
                        name: shown,
                    });
                }
                NamePlace::Apex | NamePlace::Other => {}
            }
            if let Some(r) = records.iter().find(|r| r.dns_class != DNSClass::IN) {
                return Err(ZoneError::Class {
                    path: path.to_owned(),
                    kind: r.dns_class.to_string(),
                });
            }
        }
        Ok(())
    }

    /// True for names at or below a reserved label (`key.<zone>`).
    fn is_reserved(&self, name: &LowerName) -> bool {
        let name = Name::from(name.clone());
        let first_below_apex = name.trim_to(self.origin.num_labels() as usize + 1);
        first_below_apex
            .iter()
            .next()
            .is_some_and(|label| RESERVED_LABELS.iter().any(|r| r.as_bytes() == label))
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn lower_origin(&self) -> &LowerName {
        &self.lower_origin
    }

    /// The zone file's SOA serial: the starting serial of a new store.
    pub fn initial_serial(&self) -> u32 {
        self.soa_rdata().serial
    }

    fn soa_rdata(&self) -> &SOA {
        match &self.soa.data {
            RData::SOA(soa) => soa,
            _ => unreachable!("the SOA RRset holds SOA data"),
        }
    }

    /// The SOA record with the current serial.
    pub fn soa_record(&self, serial: u32) -> Record {
        let mut soa = self.soa_rdata().clone();
        soa.serial = serial;
        Record::from_rdata(self.origin.clone(), self.soa.ttl, RData::SOA(soa))
    }

    /// TTL of negative answers (RFC 2308 §5: the smaller of the SOA's TTL and MINIMUM).
    pub fn negative_ttl(&self) -> u32 {
        self.soa.ttl.min(self.soa_rdata().minimum)
    }

    /// The SOA record as put in the authority section of negative answers.
    pub fn negative_soa(&self, serial: u32) -> Record {
        let mut soa = self.soa_record(serial);
        soa.ttl = self.negative_ttl();
        soa
    }

    /// Where `name` falls in this zone.
    pub fn place(&self, name: &Name) -> NamePlace {
        if !self.origin.zone_of(name) {
            return NamePlace::Outside;
        }
        let depth = self.origin.num_labels() as usize;
        let labels = name.num_labels() as usize;
        if labels == depth {
            return NamePlace::Apex;
        }
        let child = name.trim_to(depth + 1);
        let label = child.iter().next().unwrap_or_default();
        let code = std::str::from_utf8(label)
            .ok()
            .and_then(|l| l.parse::<CallingCode>().ok());
        match (code, labels == depth + 1) {
            (Some(code), true) => NamePlace::Terminal(code),
            (Some(_), false) => NamePlace::BelowTerminal,
            (None, true) if label.eq_ignore_ascii_case(b"whoami") => NamePlace::Whoami,
            (None, _) => NamePlace::Other,
        }
    }

    /// The static RRset of `name` and `rtype` (SOA excluded: use [`Zone::soa_record`]).
    pub fn rrset(&self, name: &LowerName, rtype: RecordType) -> &[Record] {
        if rtype == RecordType::SOA {
            return &[];
        }
        self.rrsets
            .get(&(name.clone(), rtype))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every static RRset at `name` (SOA excluded).
    pub fn rrsets_at<'a>(&'a self, name: &'a LowerName) -> impl Iterator<Item = &'a [Record]> {
        self.rrsets
            .range((name.clone(), RecordType::Unknown(0))..)
            .take_while(move |((n, _), _)| n == name)
            .filter(|((_, t), _)| *t != RecordType::SOA)
            .map(|(_, records)| records.as_slice())
    }

    /// True if `name` owns static records or is an empty non-terminal above some.
    pub fn static_name_exists(&self, name: &LowerName) -> bool {
        self.rrsets.keys().any(|(owner, _)| name.zone_of(owner))
    }

    /// Every static RRset (SOA excluded), by owner and type.
    pub fn static_rrsets(&self) -> impl Iterator<Item = (&LowerName, RecordType, &[Record])> {
        self.rrsets
            .iter()
            .filter(|((_, t), _)| *t != RecordType::SOA)
            .map(|((name, t), records)| (name, *t, records.as_slice()))
    }

    /// Every static record, the SOA first (for zone-file export and transfers).
    pub fn static_records(&self) -> impl Iterator<Item = &Record> {
        self.rrsets
            .iter()
            .filter(|((_, t), _)| *t != RecordType::SOA)
            .flat_map(|(_, records)| records.iter())
    }

    /// A digest of everything static in the zone but the SOA serial: when it differs from
    /// the one stored, the operator edited the zone file, and the serial must move.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(self.soa_record(0).to_string());
        let mut lines: Vec<String> = self.static_records().map(|r| r.to_string()).collect();
        lines.sort();
        for line in lines {
            hash.update(b"\n");
            hash.update(line);
        }
        crate::identity::encode_hex(&hash.finalize())
    }
}

#[cfg(test)]
mod tests {
    /// Regression: a zone file line that does not parse was reported without its number.
    #[test]
    fn a_bad_zone_file_line_is_named_by_its_number() {
        let text = "$ORIGIN dial.example.\n$TTL 3600\n@ IN SOA ns1 hostmaster (\n 1 7200 3600 1209600 3600 )\n@ IN NS ns1\nns1 IN A 127.0.0.1\nwww IN A not-an-address\n";
        let err = super::Zone::parse(text, "dial.zone", None).unwrap_err();
        assert!(err.to_string().contains("dial.zone:7"), "{err}");
    }

    use super::*;

    /// The sample zone file shipped beside the crate is the embedded default, comments
    /// aside: starting from it serves the same zone.
    #[test]
    fn the_sample_zone_file_is_the_embedded_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dial.example.zone");
        let sample = Zone::load(&path, None).unwrap();
        assert_eq!(sample.fingerprint(), Zone::embedded_default().fingerprint());
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn embedded_default_serves_dial_example() {
        let zone = Zone::embedded_default();
        assert_eq!(zone.origin().to_ascii(), "dial.example.");
        assert_eq!(zone.initial_serial(), 1);
        assert_eq!(zone.negative_ttl(), 30);
        let ns = zone.rrset(zone.lower_origin(), RecordType::NS);
        assert_eq!(ns.len(), 1);
        let glue = LowerName::new(&name("ns1.dial.example."));
        assert_eq!(zone.rrset(&glue, RecordType::A).len(), 1);
    }

    #[test]
    fn default_layout_for_another_zone() {
        let zone = Zone::default_for("Calls.Example.Net").unwrap();
        assert_eq!(zone.origin().to_ascii(), "calls.example.net.");
        assert_eq!(
            zone.place(&name("5551234.calls.example.net.")),
            NamePlace::Terminal("5551234".parse().unwrap())
        );
        assert!(Zone::default_for("bad..name").is_err());
    }

    #[test]
    fn places_names() {
        let zone = Zone::embedded_default();
        let code = "5551234".parse().unwrap();
        assert_eq!(zone.place(&name("dial.example.")), NamePlace::Apex);
        assert_eq!(zone.place(&name("DIAL.example.")), NamePlace::Apex);
        assert_eq!(
            zone.place(&name("5551234.dial.example.")),
            NamePlace::Terminal(code)
        );
        assert_eq!(
            zone.place(&name("x.5551234.dial.example.")),
            NamePlace::BelowTerminal
        );
        assert_eq!(zone.place(&name("whoami.dial.example.")), NamePlace::Whoami);
        assert_eq!(zone.place(&name("ns1.dial.example.")), NamePlace::Other);
        assert_eq!(
            zone.place(&name("55.dial.example.")),
            NamePlace::Other,
            "too short a code"
        );
        assert_eq!(zone.place(&name("example.")), NamePlace::Outside);
        assert_eq!(zone.place(&name("dial.example.org.")), NamePlace::Outside);
    }

    #[test]
    fn refuses_zone_files_that_step_on_the_directory() {
        let with = |extra: &str| Zone::parse(&format!("{DEFAULT_ZONE_FILE}{extra}\n"), "t", None);
        assert!(matches!(
            with("5551234 IN A 192.0.2.1"),
            Err(ZoneError::Reserved { .. })
        ));
        assert!(matches!(
            with("whoami IN A 192.0.2.1"),
            Err(ZoneError::Reserved { .. })
        ));
        assert!(matches!(
            with("a.key IN TXT x"),
            Err(ZoneError::Reserved { .. })
        ));
        assert!(matches!(
            with("sub IN NS ns.other."),
            Err(ZoneError::Delegation { .. })
        ));
        assert!(matches!(
            with("www.example.org. IN A 192.0.2.1"),
            Err(ZoneError::OutOfZone { .. })
        ));
        assert!(with("www IN A 192.0.2.1").is_ok());
    }

    #[test]
    fn refuses_zone_files_without_soa_or_ns() {
        let no_ns = "$ORIGIN z.example.\n@ 3600 IN SOA ns. h. 1 2 3 4 5\n";
        assert!(matches!(
            Zone::parse(no_ns, "t", None),
            Err(ZoneError::NoNs { .. })
        ));
        let no_soa = "$ORIGIN z.example.\n@ 3600 IN NS ns.\n";
        assert!(Zone::parse(no_soa, "t", None).is_err());
    }

    #[test]
    fn empty_non_terminals_exist() {
        let zone = Zone::parse(
            &format!("{DEFAULT_ZONE_FILE}a.b IN A 192.0.2.1\n"),
            "t",
            None,
        )
        .unwrap();
        assert!(zone.static_name_exists(&LowerName::new(&name("b.dial.example."))));
        assert!(!zone.static_name_exists(&LowerName::new(&name("c.dial.example."))));
    }
}
