//! A streamed import: batches staged as `importing` (invisible to queries and updates),
//! then committed all at once with a new serial, or aborted.

use super::registry::{checked_registrations, registrations_change};
use super::*;
use crate::store::Conflict;
use crate::store::TerminalWrites;

/// How many imported terminals the index takes under one write lock.
const IMPORT_CHUNK: usize = 10_000;

impl Directory {
    /// The right to run an import session, if no other is running: hold it from the first
    /// staged batch to the commit or abort.
    pub fn try_begin_import(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.inner.importing.clone().try_lock_owned().ok()
    }

    /// Stages one batch of an import: checked like registrations (against the registered,
    /// the staged and the batch itself) and written, but invisible to queries and keys until
    /// [`Directory::commit_import`]; [`Directory::abort_import`] (or a restart) removes it.
    pub async fn stage_import(
        &self,
        imports: Vec<Import>,
        now: u64,
    ) -> Result<Vec<Terminal>, DirectoryError> {
        let entries = self.new_entries(imports, now)?;
        let _writer = self.commit().write_lock().await?;
        let entries = checked_registrations(self.commit().store(), entries)?;
        // Durable per batch, so that a fleet's batches never pile up in the server.
        let written = self
            .inner
            .commit
            .store()
            .write_now(&registrations_change(&entries, true))
            .await;
        self.commit().poison_on_failure(written)?;
        Ok(entries.into_iter().map(|e| e.terminal).collect())
    }

    /// Commits the staged import: one serial increase, the journal emptied (secondaries take
    /// the whole zone), durable before the index takes the terminals; the serial is
    /// announced only once they are all in. Returns how many terminals it added.
    pub async fn commit_import(&self, now: u64) -> Result<usize, DirectoryError> {
        let _writer = self.commit().write_lock().await?;
        self.refuse_machine_conflict()?;
        let to = self.commit().pending().serial().next();
        let change = Change {
            terminals: TerminalWrites {
                finish_import: true,
                ..Default::default()
            },
            ..Change::default()
        };
        // Every batch is durable (written under this lock): read before the commit, which
        // clears the list of the import's codes in its own transaction.
        let imported = self.commit().store().imported()?;
        let signed = self.begin_reset(to, change, &self.zone(), now).await?;
        self.commit().view_mut().reserve(imported.count()?);
        let added = imported.scan(IMPORT_CHUNK, |chunk| {
            let mut view = self.commit().view_mut();
            for (key, hot) in chunk {
                view.insert(key, hot);
            }
        })?;
        drop(imported);
        self.finish_reset(to, signed, || {});
        // A large staging leaves much free space in the file: give it back (queries go on
        // from the index; signed requests wait the few tenths of a second it takes).
        if added > LARGEST_DELTA {
            self.commit().store().compact().await?;
        }
        Ok(added)
    }

    /// Removes every staged terminal of an import that will not be committed.
    pub async fn abort_import(&self) -> Result<usize, StoreError> {
        let _writer = self.commit().writer().lock().await;
        let store = self.commit().store().clone();
        tokio::task::spawn_blocking(move || store.abort_import())
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?
    }

    /// Refuses the import when a KID/MID pair is staged twice, or was registered while it
    /// was staged (pairs wait apart until the commit: see the store's `import_machines`).
    fn refuse_machine_conflict(&self) -> Result<(), DirectoryError> {
        let Some(conflict) = self.commit().store().import_conflict()? else {
            return Ok(());
        };
        let (machine, code) = match conflict {
            Conflict::Twice { machine } => {
                let pair = machine.replacen(' ', " with MID ", 1);
                return Err(DirectoryError::Duplicate(format!("KID {pair}")));
            }
            Conflict::Taken { machine, code } => (machine, code),
        };
        let mut parts = machine.splitn(2, ' ');
        let (Some(kid), Some(mid), Ok(code)) = (
            parts.next().and_then(|k| k.parse().ok()),
            parts.next().and_then(|m| m.parse().ok()),
            code.parse(),
        ) else {
            return Err(DirectoryError::Duplicate(format!(
                "KID and MID {machine} (registered already)"
            )));
        };
        Err(DirectoryError::MachineTaken { kid, mid, code })
    }

    pub(super) fn refuse_importing(&self, code: &CallingCode) -> Result<(), DirectoryError> {
        if self.commit().store().is_importing(code)? {
            return Err(DirectoryError::Importing(code.clone()));
        }
        Ok(())
    }
}
