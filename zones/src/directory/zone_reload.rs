//! Replacing the static zone while serving (a reload of the zone file).

use super::*;
use crate::store::ZoneWrites;

impl Directory {
    /// Replaces the static zone (a reload of the zone file), as a restart with that file
    /// would: when its serial is newer or its records changed, the zone gets a new serial
    /// (the file's, or the current one plus one) and the journal is emptied, so secondaries
    /// take the whole zone once; that is durable before anything is served from it. Returns
    /// the new serial, or `None` when the file changed nothing. Another origin is refused.
    pub async fn reload_zone(&self, zone: Zone, now: u64) -> Result<Option<u32>, DirectoryError> {
        let current = self.zone();
        if zone.origin() != current.origin() {
            return Err(DirectoryError::OtherOrigin {
                loaded: zone.origin().to_ascii(),
                served: current.origin().to_ascii(),
            });
        }
        let _writer = self.commit().write_lock().await?;
        let serial = self.commit().pending().serial();
        let fingerprint = zone.fingerprint();
        let to = serial_for(&zone, &fingerprint, serial, Some(&current.fingerprint()));
        if to == serial {
            // Same records, no newer serial: keep the zone as it is.
            return Ok(None);
        }
        let change = Change {
            zone: ZoneWrites {
                zone_fingerprint: Some(&fingerprint),
                ..Default::default()
            },
            ..Change::default()
        };
        let signed = self.begin_reset(to, change, &zone, now).await?;
        self.finish_reset(to, signed, || self.inner.zone.store(Arc::new(zone)));
        Ok(Some(to.0))
    }
}
