//! A fleet file's entries in the store's order of codes, with bounded memory, for
//! `nameserver import`.
//!
//! A fleet export comes in no particular order; the store keeps its terminals in B-trees by
//! code, where inserts at random places rewrite a page each and inserts in order fill
//! pages one after the other. So the file is read once, every line checked (an error names
//! its line before anything is sent), and its entries sorted by code: in memory up to
//! [`RUN`] entries, and beyond that in sorted runs of [`RUN`] lines written to owner-only
//! temporary files and merged as they are read back.
//!
//! ```text
//!  FILE ─ lines checked ─▶ runs of RUN lines, each sorted by code ─▶ temporary files
//!       ─ merged (one line of each run in memory) ─▶ entries by code ─▶ batches
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Lines, Write};
use std::path::Path;

use crate::admin;
use crate::control::ImportEntry;

/// Entries sorted in memory at a time (about 100 MB of lines).
pub const RUN: usize = 1_000_000;

/// The entries of a fleet file by code, and how many there are.
#[derive(Debug)]
pub struct FleetInOrder {
    pub total: usize,
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// Every line in memory, sorted, consumed from the end.
    Memory(Vec<(String, String)>),
    /// Sorted runs on disk, merged.
    Runs(Merge),
}

/// Reads `file` (shown as `shown` in errors), checks every line and orders the entries.
pub fn read(file: &Path, shown: &str) -> Result<FleetInOrder, String> {
    read_with_run(file, shown, RUN)
}

fn read_with_run(file: &Path, shown: &str, run: usize) -> Result<FleetInOrder, String> {
    let input = File::open(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut runs: Vec<tempfile::NamedTempFile> = Vec::new();
    let mut total = 0;
    for (number, line) in BufReader::new(input).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {shown}: {e}"))?;
        let Some(entry) = admin::parse_import_line(&line, number + 1, shown)? else {
            continue;
        };
        total += 1;
        lines.push((entry.code.to_string(), line));
        if lines.len() == run {
            runs.push(spill(&mut lines)?);
        }
    }
    let source = if runs.is_empty() {
        // Sorted backwards: popped from the end, in order.
        lines.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        Source::Memory(lines)
    } else {
        if !lines.is_empty() {
            runs.push(spill(&mut lines)?);
        }
        Source::Runs(Merge::new(runs, shown)?)
    };
    Ok(FleetInOrder { total, source })
}

/// Sorts `lines` by code into a new owner-only temporary file and empties it.
fn spill(lines: &mut Vec<(String, String)>) -> Result<tempfile::NamedTempFile, String> {
    let failed = |e: std::io::Error| format!("cannot sort the fleet in a temporary file: {e}");
    lines.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let temporary = tempfile::NamedTempFile::new().map_err(failed)?;
    let mut out = BufWriter::new(temporary.as_file());
    for (_, line) in lines.drain(..) {
        out.write_all(line.as_bytes()).map_err(failed)?;
        out.write_all(b"\n").map_err(failed)?;
    }
    out.flush().map_err(failed)?;
    drop(out);
    Ok(temporary)
}

impl Iterator for FleetInOrder {
    type Item = Result<ImportEntry, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = match &mut self.source {
            Source::Memory(lines) => lines.pop().map(|(_, line)| Ok(line)),
            Source::Runs(merge) => merge.next(),
        }?;
        // Every line was checked on the first read.
        Some(line.and_then(|line| {
            admin::parse_import_line(&line, 0, "the sorted fleet")?
                .ok_or_else(|| "a sorted run lost a line".to_owned())
        }))
    }
}

/// Sorted runs merged: the smallest head of all runs first.
#[derive(Debug)]
struct Merge {
    runs: Vec<Lines<BufReader<File>>>,
    heads: BinaryHeap<Reverse<(String, usize, String)>>,
    /// The runs' files, removed when the merge is dropped.
    _files: Vec<tempfile::NamedTempFile>,
    shown: String,
}

impl Merge {
    fn new(files: Vec<tempfile::NamedTempFile>, shown: &str) -> Result<Self, String> {
        let mut merge = Self {
            runs: Vec::with_capacity(files.len()),
            heads: BinaryHeap::with_capacity(files.len()),
            _files: Vec::new(),
            shown: shown.to_owned(),
        };
        for file in &files {
            let reopened = file
                .reopen()
                .map_err(|e| format!("cannot read back a sorted run: {e}"))?;
            merge.runs.push(BufReader::new(reopened).lines());
        }
        merge._files = files;
        for run in 0..merge.runs.len() {
            merge.refill(run)?;
        }
        Ok(merge)
    }

    /// Puts the next line of `run`, if any, among the heads.
    fn refill(&mut self, run: usize) -> Result<(), String> {
        if let Some(line) = self.runs[run].next() {
            let line = line.map_err(|e| format!("cannot read back a sorted run: {e}"))?;
            let code = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            self.heads.push(Reverse((code, run, line)));
        }
        Ok(())
    }

    fn next(&mut self) -> Option<Result<String, String>> {
        let Reverse((_, run, line)) = self.heads.pop()?;
        if let Err(e) = self.refill(run) {
            return Some(Err(format!("{}: {e}", self.shown)));
        }
        Some(Ok(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> String {
        // Codes of 7 to 10 digits, in no order.
        (0..n)
            .map(|i| {
                let code = match i % 4 {
                    0 => 9_000_000 + (i * 7919) % 1_000_000,
                    1 => 30_000_000 + (i * 104_729) % 9_000_000,
                    2 => 400_000_000 + (i * 1_299_709) % 90_000_000,
                    _ => 5_000_000_000 + (i * 15_485_863) % 900_000_000,
                };
                format!(
                    "{code} cust{:04} {:016x} 10.0.{}.{}\n",
                    i / 20,
                    i,
                    i >> 8 & 255,
                    i & 255
                )
            })
            .collect()
    }

    #[test]
    fn entries_come_in_the_stores_order_whether_sorted_in_memory_or_in_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.txt");
        let text = format!("# a fleet\n\n{}", fleet(2_500));
        std::fs::write(&path, &text).unwrap();
        let mut expected: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect();
        expected.sort();
        for run in [RUN, 1000, 7] {
            let sorted = read_with_run(&path, "fleet.txt", run).unwrap();
            assert_eq!(sorted.total, 2_500);
            let codes: Vec<String> = sorted.map(|e| e.unwrap().code.to_string()).collect();
            assert_eq!(codes, expected, "runs of {run}");
        }
    }

    #[test]
    fn a_bad_line_is_named_before_anything_is_sorted_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.txt");
        std::fs::write(&path, format!("{}5551234 acme not-a-mid\n", fleet(10))).unwrap();
        let err = read_with_run(&path, "fleet.txt", 3).unwrap_err();
        assert!(err.starts_with("fleet.txt:11:"), "{err}");
    }
}
