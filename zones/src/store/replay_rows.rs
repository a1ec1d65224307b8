//! The `replay` table's rows: a terminal's replay memory (see [`crate::replay`]) as stored,
//! and the upgrade of the rows written by schema 2 and earlier.
//!
//! A row holds the newest accepted Time Signed and, for each MAC still remembered, its Time
//! Signed as seconds after that (0 for all but MACs signed ahead of the server's clock, so
//! one byte) and its 8-byte [`MacPrint`]: about 15 bytes where whole MACs and times took
//! about 44. A terminal with nothing to remember (never updated, or its key just changed)
//! has no row at all, so an import writes none.
//!
//! Updates reach terminals in no particular order, so each one that adds a row splits a
//! B-tree leaf somewhere; what a row costs shows in the store's size after a fleet has been
//! updated (the bench's `--fleet-updates`).

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{REPLAY, StoreError, decode, encode};
use crate::model::{MacPrint, Presence, mac_print};

/// A replay row as stored (schema 3).
#[derive(Serialize, Deserialize)]
struct ReplayRow {
    last_signed: u64,
    /// (seconds after `last_signed`, print) of each MAC remembered.
    recent: Vec<(u32, MacPrint)>,
}

/// A replay row as schema 2 and earlier stored it: whole MACs with their times.
#[derive(Deserialize)]
struct ReplayRowV2 {
    last_signed: u64,
    recent_macs: Vec<(u64, Vec<u8>)>,
}

/// The row for `presence`'s replay memory; `None` when it has none (no row is kept).
pub(super) fn encode_row(presence: &Presence) -> Result<Option<Vec<u8>>, StoreError> {
    if presence.last_signed == 0 && presence.recent_macs.is_empty() {
        return Ok(None);
    }
    let last = presence.last_signed;
    let row = ReplayRow {
        last_signed: last,
        recent: presence
            .recent_macs
            .iter()
            // Every MAC remembered was signed at or after `last_signed` (see
            // `replay::remember_signature`), within the time window of it.
            .map(|(t, print)| {
                let after = u32::try_from(t.saturating_sub(last)).unwrap_or(u32::MAX);
                (after, *print)
            })
            .collect(),
    };
    encode(&row).map(Some)
}

/// Puts a stored row's replay memory into `presence`.
pub(super) fn decode_into(
    code: &str,
    row: &[u8],
    presence: &mut Presence,
) -> Result<(), StoreError> {
    let row: ReplayRow = decode(code, row)?;
    presence.last_signed = row.last_signed;
    presence.recent_macs = row
        .recent
        .into_iter()
        .map(|(after, print)| (row.last_signed + u64::from(after), print))
        .collect();
    Ok(())
}

/// Rows rewritten per step of [`upgrade`] (what one step holds in memory).
const UPGRADE_CHUNK: usize = 16_384;

/// Rewrites every row of schema 2 or earlier in this schema's form, inside `tx`, dropping
/// those with nothing to remember; returns how many rows were rewritten and dropped.
pub(super) fn upgrade(tx: &WriteTransaction) -> Result<(usize, usize), StoreError> {
    let mut table = tx.open_table(REPLAY).map_err(StoreError::io)?;
    let (mut rewritten, mut dropped) = (0, 0);
    let mut after: Option<String> = None;
    loop {
        let mut rows = Vec::with_capacity(UPGRADE_CHUNK);
        let range = match &after {
            Some(code) => table.range::<&str>((
                std::ops::Bound::Excluded(code.as_str()),
                std::ops::Bound::Unbounded,
            )),
            None => table.range::<&str>(..),
        };
        for item in range.map_err(StoreError::io)?.take(UPGRADE_CHUNK) {
            let (key, value) = item.map_err(StoreError::io)?;
            let old: ReplayRowV2 = decode(key.value(), value.value())?;
            let presence = Presence {
                last_signed: old.last_signed,
                recent_macs: old
                    .recent_macs
                    .iter()
                    .map(|(t, mac)| (*t, mac_print(mac)))
                    .collect(),
                ..Presence::default()
            };
            rows.push((key.value().to_owned(), encode_row(&presence)?));
        }
        let Some((last, _)) = rows.last() else {
            return Ok((rewritten, dropped));
        };
        after = Some(last.clone());
        for (code, row) in rows {
            match row {
                Some(row) => {
                    table
                        .insert(code.as_str(), row.as_slice())
                        .map_err(StoreError::io)?;
                    rewritten += 1;
                }
                None => {
                    table.remove(code.as_str()).map_err(StoreError::io)?;
                    dropped += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_holds_the_memory_in_fifteen_bytes_and_reads_back() {
        let presence = Presence {
            last_signed: 1_780_000_000,
            recent_macs: vec![(1_780_000_000, mac_print(&[7; 32]))],
            ..Presence::default()
        };
        let row = encode_row(&presence).unwrap().unwrap();
        assert_eq!(row.len(), 15, "{row:?}");
        let mut back = Presence::default();
        decode_into("5551234", &row, &mut back).unwrap();
        assert_eq!(back, presence);
    }

    #[test]
    fn a_terminal_with_nothing_to_remember_has_no_row() {
        assert_eq!(encode_row(&Presence::default()).unwrap(), None);
    }
}
