//! Replacing the static zone while serving (a reload of the zone file).

use super::*;

impl Directory {
    /// Replaces the static zone (a reload of the zone file), as a restart with that file
    /// would: when its serial is newer or its records changed, the zone gets a new serial
    /// (the file's, or the current one plus one) and the journal is emptied, so secondaries
    /// take the whole zone once; that is durable before anything is served from it. Returns
    /// the new serial, or `None` when the file changed nothing. Another origin is refused.
    pub async fn reload_zone(&self, zone: Zone) -> Result<Option<u32>, DirectoryError> {
        let current = self.zone();
        if zone.origin() != current.origin() {
            return Err(DirectoryError::OtherOrigin {
                loaded: zone.origin().to_ascii(),
                served: current.origin().to_ascii(),
            });
        }
        let _writer = self.write_lock().await?;
        let serial = self.pending().serial();
        let file = Serial(zone.initial_serial());
        let fingerprint = zone.fingerprint();
        let to = if file.is_newer_than(serial) {
            file
        } else if fingerprint != current.fingerprint() {
            serial.next()
        } else {
            // Same records, no newer serial: keep the zone as it is.
            return Ok(None);
        };
        let next_seq = self.pending().next_seq();
        let depth = self.inner.limits.journal_depth.max(1) as u64;
        self.inner.store.stage(&Change {
            serial: Some(to.0),
            journal_drop: every_delta(next_seq, depth),
            zone_fingerprint: Some(&fingerprint),
            ..Change::default()
        })?;
        self.flush_or_poison().await?;
        self.publish();
        {
            let mut pending = self.pending();
            pending.advance(to);
            let mut view = self.inner.view.write().unwrap_or_else(|p| p.into_inner());
            view.clear_journal();
            view.set_serial(to);
            self.inner.zone.store(Arc::new(zone));
        }
        self.announce(to.0);
        Ok(Some(to.0))
    }
}
