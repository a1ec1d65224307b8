//! Reads every terminal into the index at start-up.
//!
//! Two costs of about the same size make up the read of a large fleet: walking redb's
//! `hot` table and decoding each row, and inserting each terminal into the index's hash
//! table (a cache miss per terminal, the table being far larger than the caches). With a
//! core to spare they overlap: a reader thread walks and decodes in chunks, which the
//! caller's thread inserts as they come. At ten million terminals on two cores this takes
//! the start-up from about 6.3 s to the figure in `bench/results/10m-scale.md`.

use std::sync::mpsc;

use crate::identity::CodeKey;
use crate::index::View;
use crate::model::Hot;
use crate::store::{Store, StoreError};

/// Terminals per chunk handed from the reader to the inserting thread.
const CHUNK: usize = 16_384;

/// Chunks the reader may be ahead of the inserts (bounds the memory in flight).
const CHUNKS_AHEAD: usize = 4;

/// Reads every terminal's hot data into `view`: on a reader thread beside this one when
/// `spare_core`, on this thread alone otherwise (another thread already has the second
/// core, reading a signed zone's signatures).
pub(super) fn terminals(
    store: &Store,
    view: &mut View,
    spare_core: bool,
) -> Result<(), StoreError> {
    if !spare_core {
        return store.scan_hot(|key, hot| view.insert(key, hot));
    }
    let (chunks, received) = mpsc::sync_channel::<Vec<(CodeKey, Hot)>>(CHUNKS_AHEAD);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            store.scan_hot(|key, hot| {
                chunk.push((key, hot));
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    // The receiver lives until this thread is joined.
                    let _ = chunks.send(full);
                }
            })?;
            if !chunk.is_empty() {
                let _ = chunks.send(chunk);
            }
            Ok(())
        });
        for chunk in received {
            for (key, hot) in chunk {
                view.insert(key, hot);
            }
        }
        reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
