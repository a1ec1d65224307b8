//! Changes staged for the next group commit, and the rows they will write.
//!
//! A change is encoded into [`Writes`] and staged here at once, on the caller's thread, with
//! no I/O. The next [`super::Store::flush`] takes everything staged and writes it in one redb
//! transaction with one `fdatasync`. Until that transaction has committed, the rows a staged
//! change writes are kept here too, so that the next writer reads what the one before it
//! staged (read-your-writes, for updates that follow each other within one flush).

use std::collections::HashMap;

/// A table whose rows staged changes write, keyed by text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Table {
    Cold = 0,
    Hot,
    Replay,
    Machines,
    Importing,
    Signed,
    Enrollment,
}

/// A change encoded, ready to be written.
#[derive(Debug, Default)]
pub(super) struct Writes {
    pub meta: Vec<(&'static str, Vec<u8>)>,
    pub meta_remove: Vec<&'static str>,
    pub cold: Vec<(String, Vec<u8>)>,
    pub hot: Vec<(String, Vec<u8>)>,
    /// Replay rows (`None`: removed, nothing to remember).
    pub replay: Vec<(String, Option<Vec<u8>>)>,
    pub remove: Option<String>,
    pub machines_put: Vec<(String, String)>,
    pub machines_remove: Vec<String>,
    /// An import batch's KID/MID pairs, kept apart until its commit.
    pub import_machines: Vec<(String, String)>,
    pub importing: Vec<String>,
    pub finish_import: bool,
    pub journal: Option<(u64, Vec<u8>)>,
    pub journal_drop: Vec<u64>,
    /// Records the copy of the `signed` table saved with this id (the last change of a
    /// commit only; see [`super::Store::save_signatures`]).
    pub signatures_saved: Option<super::SavedId>,
    /// Terminals' signatures (`None`: removed).
    pub signed: Vec<(String, Option<Vec<u8>>)>,
    /// Rows of the `enrollment` table (`None`: removed).
    pub enrollment: Vec<(String, Option<Vec<u8>>)>,
}

/// Each table's rows as staged changes leave them (`None`: removed), by key, so that a read
/// looks one up without building a key.
#[derive(Debug, Default)]
struct Rows([HashMap<String, Option<Vec<u8>>>; 7]);

impl Rows {
    fn table(&mut self, table: Table) -> &mut HashMap<String, Option<Vec<u8>>> {
        &mut self.0[table as usize]
    }

    fn get(&self, table: Table, key: &str) -> Option<&Option<Vec<u8>>> {
        self.0[table as usize].get(key)
    }

    fn insert(&mut self, table: Table, key: String, value: Option<Vec<u8>>) {
        self.table(table).insert(key, value);
    }

    /// Takes in `newer`'s rows over these.
    fn extend(&mut self, newer: Self) {
        for (mine, theirs) in self.0.iter_mut().zip(newer.0) {
            mine.extend(theirs);
        }
    }

    fn clear(&mut self) {
        self.0.iter_mut().for_each(HashMap::clear);
    }
}

impl Writes {
    /// The rows this change leaves behind, in the order [`super::apply`] writes them (a
    /// removal first, then the new values).
    fn record(&self, rows: &mut Rows) {
        if let Some(code) = &self.remove {
            for table in [Table::Cold, Table::Hot, Table::Replay, Table::Signed] {
                rows.insert(table, code.clone(), None);
            }
        }
        for (code, value) in &self.signed {
            rows.insert(Table::Signed, code.clone(), value.clone());
        }
        for (table, puts) in [(Table::Cold, &self.cold), (Table::Hot, &self.hot)] {
            for (code, value) in puts {
                rows.insert(table, code.clone(), Some(value.clone()));
            }
        }
        for (code, value) in &self.replay {
            rows.insert(Table::Replay, code.clone(), value.clone());
        }
        for code in &self.importing {
            rows.insert(Table::Importing, code.clone(), Some(Vec::new()));
        }
        for key in &self.machines_remove {
            rows.insert(Table::Machines, key.clone(), None);
        }
        for (key, code) in &self.machines_put {
            rows.insert(Table::Machines, key.clone(), Some(code.as_bytes().to_vec()));
        }
        for (key, value) in &self.enrollment {
            rows.insert(Table::Enrollment, key.clone(), value.clone());
        }
    }
}

/// What is staged for the next flush, and what the flush in progress is writing.
#[derive(Debug, Default)]
pub(super) struct Staged {
    /// Changes staged since the last flush began, oldest first.
    open: Vec<Writes>,
    /// The rows those changes write.
    open_rows: Rows,
    /// The rows of the batch being written (or of one whose write failed), until the
    /// transaction that writes them has committed.
    in_flight_rows: Rows,
    /// The number of the newest change (staged or committed directly).
    newest: u64,
}

impl Staged {
    /// Stages a change; returns its number.
    pub fn push(&mut self, writes: Writes) -> u64 {
        writes.record(&mut self.open_rows);
        self.open.push(writes);
        self.count_direct()
    }

    /// Stages a change whose rows no read needs before it lands (a bulk change whose writer
    /// holds the writer lock until its flush); returns its number.
    pub fn push_unread(&mut self, writes: Writes) -> u64 {
        self.open.push(writes);
        self.count_direct()
    }

    /// Counts a change committed to redb directly (not durable until the next flush).
    pub fn count_direct(&mut self) -> u64 {
        self.newest += 1;
        self.newest
    }

    /// The newest change's number.
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Takes everything staged for a flush: the changes, oldest first, and the number of
    /// the newest change the flush will cover. Their rows stay readable until
    /// [`Staged::landed`].
    pub fn take(&mut self) -> (Vec<Writes>, u64) {
        let rows = std::mem::take(&mut self.open_rows);
        self.in_flight_rows.extend(rows);
        (std::mem::take(&mut self.open), self.newest)
    }

    /// The batch taken last is committed: redb itself now returns its rows.
    pub fn landed(&mut self) {
        self.in_flight_rows.clear();
    }

    /// A flush failed: nothing staged will be written (the directory refuses changes from
    /// now on), so reads go back to what redb holds, which is what is on disk.
    pub fn discard(&mut self) {
        self.open.clear();
        self.open_rows.clear();
        self.in_flight_rows.clear();
    }

    /// Every staged row of `table` whose key starts with `prefix` (`None`: removed), newest
    /// first.
    pub fn rows_with_prefix(&self, table: Table, prefix: &str) -> Vec<(String, Option<Vec<u8>>)> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for rows in [&self.open_rows, &self.in_flight_rows] {
            for (key, value) in &rows.0[table as usize] {
                if key.starts_with(prefix) && seen.insert(key.clone()) {
                    out.push((key.clone(), value.clone()));
                }
            }
        }
        out
    }

    /// A row as staged: `Some(None)` when removed, `None` when no staged change wrote it.
    pub fn row(&self, table: Table, key: &str) -> Option<Option<&[u8]>> {
        self.open_rows
            .get(table, key)
            .or_else(|| self.in_flight_rows.get(table, key))
            .map(|v| v.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(code: &str, value: u8) -> Writes {
        Writes {
            hot: vec![(code.into(), vec![value])],
            ..Writes::default()
        }
    }

    #[test]
    fn the_newest_staged_row_wins_until_its_batch_lands() {
        let mut staged = Staged::default();
        assert_eq!(staged.push(hot("1", 1)), 1);
        let (batch, newest) = staged.take();
        assert_eq!((batch.len(), newest), (1, 1));
        assert_eq!(staged.row(Table::Hot, "1"), Some(Some(&[1u8][..])));
        assert_eq!(staged.push(hot("1", 2)), 2);
        assert_eq!(staged.row(Table::Hot, "1"), Some(Some(&[2u8][..])));
        staged.landed();
        assert_eq!(staged.row(Table::Hot, "1"), Some(Some(&[2u8][..])));
        staged.take();
        staged.landed();
        assert_eq!(staged.row(Table::Hot, "1"), None, "redb answers now");
    }

    #[test]
    fn a_removal_hides_every_row_of_the_terminal() {
        let mut staged = Staged::default();
        staged.push(Writes {
            remove: Some("7".into()),
            machines_remove: vec!["kid mid".into()],
            ..Writes::default()
        });
        for table in [Table::Cold, Table::Hot, Table::Replay] {
            assert_eq!(staged.row(table, "7"), Some(None));
        }
        assert_eq!(staged.row(Table::Machines, "kid mid"), Some(None));
        assert_eq!(staged.row(Table::Importing, "7"), None);
    }
}
