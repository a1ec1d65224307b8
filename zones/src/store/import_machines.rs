//! An import's KID/MID pairs, kept apart until its commit and then merged into the
//! `machines` table in key order.
//!
//! `nameserver import` sends a fleet sorted by code, so the tables keyed by code take their
//! rows in order; the `machines` table (`KID MID` to code) cannot: its keys come in no order
//! whatever the file's, and inserting them batch by batch rewrote pages all over the file
//! (at a million terminals, about 19 s of a 36 s import and 30 bytes a terminal). So each
//! batch's pairs are written here as one sorted run, keyed by (batch, `KID MID`), which only
//! appends; the commit merges the runs and inserts them into `machines` in key order, in its
//! own transaction.
//!
//! A pair taken twice within the import, or taken by a registration made while it was
//! staged, is found by [`first_conflict`] before the commit (a merge of the runs beside the
//! `machines` table), and the import is refused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableError, WriteTransaction};

use super::{META, StoreError};

/// (batch, `KID MID`) to code.
pub(super) const IMPORT_MACHINES: TableDefinition<(u32, &str), &str> =
    TableDefinition::new("import_machines");
/// In `meta`: how many batches the import in progress has staged.
pub(super) const BATCHES_KEY: &str = "import_batches";

/// Why an import's pairs cannot be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The pair is staged for two codes of the import.
    Twice { machine: String },
    /// The pair is registered already (to `code`).
    Taken { machine: String, code: String },
}

/// Writes one batch's pairs as the next run (sorted here).
pub(super) fn stage(
    tx: &WriteTransaction,
    mut pairs: Vec<(String, String)>,
) -> Result<(), StoreError> {
    if pairs.is_empty() {
        return Ok(());
    }
    pairs.sort_unstable();
    let mut meta = tx.open_table(META).map_err(StoreError::io)?;
    let batch = match meta.get(BATCHES_KEY).map_err(StoreError::io)? {
        Some(value) => u32::from_be_bytes(value.value().try_into().unwrap_or_default()),
        None => 0,
    };
    meta.insert(BATCHES_KEY, &(batch + 1).to_be_bytes()[..])
        .map_err(StoreError::io)?;
    let mut runs = tx.open_table(IMPORT_MACHINES).map_err(StoreError::io)?;
    for (machine, code) in &pairs {
        runs.insert((batch, machine.as_str()), code.as_str())
            .map_err(StoreError::io)?;
    }
    Ok(())
}

/// Every staged pair in key order, to `each`, from `runs` (`batches` of them).
fn merged<T>(
    runs: &T,
    batches: u32,
    mut each: impl FnMut(&str, &str) -> Result<bool, StoreError>,
) -> Result<(), StoreError>
where
    T: ReadableTable<(u32, &'static str), &'static str>,
{
    let mut iters = Vec::with_capacity(batches as usize);
    for batch in 0..batches {
        iters.push(
            runs.range((batch, "")..(batch + 1, ""))
                .map_err(StoreError::io)?,
        );
    }
    let mut heads = BinaryHeap::with_capacity(iters.len());
    let mut next = |run: usize, heads: &mut BinaryHeap<_>| -> Result<(), StoreError> {
        if let Some(item) = iters[run].next() {
            let (key, code) = item.map_err(StoreError::io)?;
            heads.push(Reverse((
                key.value().1.to_owned(),
                run,
                code.value().to_owned(),
            )));
        }
        Ok(())
    };
    for run in 0..batches as usize {
        next(run, &mut heads)?;
    }
    while let Some(Reverse((machine, run, code))) = heads.pop() {
        if !each(&machine, &code)? {
            return Ok(());
        }
        next(run, &mut heads)?;
    }
    Ok(())
}

/// How many batches are staged, from `meta`.
fn batches(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u32, StoreError> {
    Ok(match meta.get(BATCHES_KEY).map_err(StoreError::io)? {
        Some(value) => u32::from_be_bytes(value.value().try_into().unwrap_or_default()),
        None => 0,
    })
}

/// The first pair of the import that cannot be committed, if any: read in one transaction,
/// the runs merged beside the `machines` table (both in key order).
pub(super) fn first_conflict(read: &redb::ReadTransaction) -> Result<Option<Conflict>, StoreError> {
    let meta = read.open_table(META).map_err(StoreError::io)?;
    let runs = match read.open_table(IMPORT_MACHINES) {
        Ok(runs) => runs,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(StoreError::io(e)),
    };
    let machines = read.open_table(super::MACHINES).map_err(StoreError::io)?;
    let mut registered = machines.iter().map_err(StoreError::io)?.peekable();
    let (mut found, mut previous) = (None, None::<String>);
    merged(&runs, batches(&meta)?, |machine, _| {
        if previous.as_deref() == Some(machine) {
            found = Some(Conflict::Twice {
                machine: machine.to_owned(),
            });
            return Ok(false);
        }
        previous = Some(machine.to_owned());
        while let Some(item) = registered.peek() {
            let (key, code) = match item {
                Ok((key, code)) => (key.value(), code.value()),
                Err(_) => return Err(StoreError::Io("cannot read the machines table".into())),
            };
            if key > machine {
                break;
            }
            if key == machine {
                found = Some(Conflict::Taken {
                    machine: machine.to_owned(),
                    code: code.to_owned(),
                });
                return Ok(false);
            }
            registered.next();
        }
        Ok(true)
    })?;
    Ok(found)
}

/// In the commit's transaction: every staged pair into `machines`, in key order, and the
/// runs gone.
pub(super) fn merge_into_machines(tx: &WriteTransaction) -> Result<(), StoreError> {
    {
        let mut meta = tx.open_table(META).map_err(StoreError::io)?;
        let count = batches(&meta)?;
        meta.remove(BATCHES_KEY).map_err(StoreError::io)?;
        let runs = tx.open_table(IMPORT_MACHINES).map_err(StoreError::io)?;
        let mut machines = tx.open_table(super::MACHINES).map_err(StoreError::io)?;
        merged(&runs, count, |machine, code| {
            machines.insert(machine, code).map_err(StoreError::io)?;
            Ok(true)
        })?;
    }
    clear(tx)
}

/// Drops every staged pair (an import aborted, or committed).
pub(super) fn clear(tx: &WriteTransaction) -> Result<(), StoreError> {
    {
        let mut meta = tx.open_table(META).map_err(StoreError::io)?;
        meta.remove(BATCHES_KEY).map_err(StoreError::io)?;
    }
    tx.delete_table(IMPORT_MACHINES).map_err(StoreError::io)?;
    tx.open_table(IMPORT_MACHINES).map_err(StoreError::io)?;
    Ok(())
}

/// True when pairs are staged (in a store read by `read`).
pub(super) fn any_staged(read: &redb::ReadTransaction) -> Result<bool, StoreError> {
    match read.open_table(IMPORT_MACHINES) {
        Ok(runs) => Ok(runs.len().map_err(StoreError::io)? > 0),
        Err(TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(StoreError::io(e)),
    }
}
