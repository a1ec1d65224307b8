//! The zone's DNSSEC keys as `nameserver dnssec keys` and `nameserver dnssec ds` print
//! them (the server writes these lines; the admin command shows them).

use crate::utc::format_utc;

/// The DS record (SHA-256) of each key that signs the DNSKEY RRset (the key-signing key
/// or the combined one), as the parent zone publishes it. A zone-signing key's DS is never
/// printed: uploaded to the parent, it would dangle after the next rollover.
pub fn ds_lines(
    keys: &[zones::dnssec::ZoneKey],
    origin: &hickory_proto::rr::Name,
) -> Result<String, String> {
    let mut out = String::new();
    let at_parent = |key: &&zones::dnssec::ZoneKey| {
        matches!(
            key.role,
            zones::dnssec::KeyRole::Csk | zones::dnssec::KeyRole::Ksk
        )
    };
    for key in keys.iter().filter(at_parent) {
        let ds = key.ds(origin).map_err(|e| e.to_string())?;
        out.push_str(&format!(
            "{origin} IN DS {} {} {} {}\n",
            ds.key_tag(),
            u8::from(ds.algorithm()),
            u8::from(ds.digest_type()),
            zones::identity::encode_hex(ds.digest()).to_uppercase()
        ));
    }
    Ok(out)
}

/// Each key: tag, algorithm, role, state and since when, creation time, and its DNSKEY
/// record.
pub fn key_lines(
    keys: &[zones::dnssec::ZoneKey],
    origin: &hickory_proto::rr::Name,
) -> Result<String, String> {
    let mut out = String::new();
    for key in keys {
        let tag = key.key_tag().map_err(|e| e.to_string())?;
        let dnskey = key.dnskey().map_err(|e| e.to_string())?;
        out.push_str(&format!(
            "key {tag}: ECDSAP256SHA256 (13), {}, {} since {}, created {}\n{origin} IN DNSKEY {dnskey}\n",
            key.role,
            key.state,
            format_utc(key.since),
            format_utc(key.created)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `dnssec ds` printed a DS for every key, the zone-signing key's too.
    #[test]
    fn dnssec_ds_prints_only_the_key_signing_key() {
        use zones::dnssec::{KeyRole, ZoneKey};
        let origin: hickory_proto::rr::Name = "dial.example.".parse().unwrap();
        let mut ksk = ZoneKey::generate(1).unwrap();
        ksk.role = KeyRole::Ksk;
        let zsk = ZoneKey::generate_zsk(1).unwrap();
        let tag = |k: &ZoneKey| k.key_tag().unwrap().to_string();
        let lines = ds_lines(&[ksk.clone(), zsk.clone()], &origin).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        assert!(
            lines.contains(&format!(" DS {} 13 2 ", tag(&ksk))),
            "{lines}"
        );
        let csk = ZoneKey::generate(1).unwrap();
        let lines = ds_lines(&[csk.clone(), zsk], &origin).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        assert!(
            lines.contains(&format!(" DS {} 13 2 ", tag(&csk))),
            "{lines}"
        );
    }
}
