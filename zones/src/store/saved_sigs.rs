//! The store's side of the copy of the `signed` table saved at a stop (see [`super::saved`]):
//! writing it, reading it whole, looking it up in place, and forgetting it.

use super::*;

impl Store {
    /// Saves a copy of every terminal's signatures, `entries` (the `signed` table as the
    /// last flush left it, with nothing staged), for the next start to read at once;
    /// returns the id for [`Change::signatures_saved`], which makes it current. Blocking:
    /// about a quarter of a second per million terminals.
    pub fn save_signatures(
        &self,
        entries: impl Iterator<Item = (CodeKey, TerminalSigs)>,
    ) -> Result<SavedId, StoreError> {
        let mut id = SavedId::default();
        getrandom::fill(&mut id).map_err(StoreError::io)?;
        saved::write(&self.dir.join(saved::FILE_NAME), &id, entries).map_err(StoreError::io)?;
        Ok(id)
    }

    /// Each terminal's signatures from the copy saved at the last stop, to `each`, when it
    /// is whole and no commit came after it (then it is the `signed` table, read in one
    /// pass); false otherwise (why is logged), and then what `each` was given must be
    /// dropped. The file is removed once read: it is saved again at the next stop.
    pub fn saved_signatures(&self, each: impl FnMut(CodeKey, TerminalSigs)) -> bool {
        let path = self.dir.join(saved::FILE_NAME);
        let result = match self.meta(SAVED_KEY) {
            Ok(Some(id)) => match <SavedId>::try_from(id.as_slice()) {
                Ok(id) => saved::read(&path, &id, each).map_err(|e| e.to_string()),
                Err(_) => Err("its record in the store is corrupt".into()),
            },
            Ok(None) => Err("the store changed since it was saved".into()),
            Err(e) => Err(e.to_string()),
        };
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            _ => {}
        }
        result
            .inspect_err(|reason| {
                tracing::info!(%reason, "the signatures saved at the stop are not used; reading the store's table");
            })
            .is_ok()
    }

    /// The copy saved at the last stop, open to be looked up in place (see [`in_place`]),
    /// when no commit came after it; `None` otherwise. Its checksum is checked by
    /// [`Store::saved_signatures`], which reads it whole.
    pub fn saved_in_place(&self) -> Option<InPlace> {
        let id = self.meta(SAVED_KEY).ok()??;
        let id = <SavedId>::try_from(id.as_slice()).ok()?;
        InPlace::open(&self.dir.join(saved::FILE_NAME), &id)
            .inspect_err(
                |e| tracing::debug!(error = %e, "the saved signatures are not looked up in place"),
            )
            .ok()
    }

    /// After a commit that removed the record of the saved copy: the copy is no longer the
    /// table, so its file goes now, not at the next start.
    pub(super) fn saved_forgotten(&self) {
        self.saved_recorded.store(false, Ordering::SeqCst);
        let _ = std::fs::remove_file(self.dir.join(saved::FILE_NAME));
    }
}
