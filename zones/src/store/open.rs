//! Opening the store: its directory owner-only, the schema checked or upgraded, the zone
//! it was made for checked or recorded.

use super::*;

impl Store {
    /// Opens (or creates) the store in `dir`, for the zone `origin`.
    pub fn open(dir: &Path, origin: &Name) -> Result<Self, StoreError> {
        let shown = dir.display().to_string();
        if dir.join("db").is_file() && dir.join("conf").is_file() {
            return Err(StoreError::OldFormat { path: shown });
        }
        create_owner_only(dir)?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(file_path(dir))
            .map_err(|e| open_error(&shown, e))?;
        restrict_permissions(dir).map_err(|source| StoreError::Permissions {
            path: shown.clone(),
            source,
        })?;
        let store = Self {
            db: Arc::new(RwLock::new(db)),
            durability: Arc::default(),
            origin: origin.clone(),
            dir: Arc::from(dir),
            saved_recorded: Arc::default(),
        };
        store.check_schema(&shown)?;
        store.check_origin(&shown)?;
        let recorded = store.meta(SAVED_KEY)?.is_some();
        store.saved_recorded.store(recorded, Ordering::SeqCst);
        Ok(store)
    }

    /// Refuses a store of another schema version; upgrades one of an earlier version and
    /// stamps a new one (durably, in one transaction).
    ///
    /// Version 1 lacks the `signed` table; versions 1 and 2 keep whole MACs in `replay`
    /// rows, and a row for every terminal ([`replay_rows`]).
    pub(super) fn check_schema(&self, shown: &str) -> Result<(), StoreError> {
        let found = self.meta(SCHEMA_KEY)?.map(|v| decode_u32(SCHEMA_KEY, &v));
        let found = found.transpose()?;
        match found {
            Some(SCHEMA_VERSION) => return Ok(()),
            Some(found) if !(1..SCHEMA_VERSION).contains(&found) => {
                return Err(StoreError::Version {
                    path: shown.to_owned(),
                    found,
                });
            }
            _ => {}
        }
        let db = self.db();
        let tx = begin_write(&db, Durability::Immediate)?;
        create_tables(&tx)?;
        if let Some(found) = found {
            let (rewritten, dropped) = match found {
                ..3 => replay_rows::upgrade(&tx)?,
                _ => (0, 0),
            };
            let owners = enrollment_rows::upgrade(&tx)?;
            tracing::info!(
                store = shown,
                from = found,
                to = SCHEMA_VERSION,
                replay_rows_rewritten = rewritten,
                replay_rows_dropped = dropped,
                machine_owners = owners,
                "store upgraded"
            );
        }
        {
            let mut meta = tx.open_table(META).map_err(StoreError::io)?;
            meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes()[..])
                .map_err(StoreError::io)?;
        }
        tx.commit().map_err(StoreError::io)
    }

    /// Refuses a store made for another zone (a typo in `--zone` would otherwise serve
    /// every terminal under the wrong name); records the zone of a store that has none.
    pub(super) fn check_origin(&self, shown: &str) -> Result<(), StoreError> {
        let asked = self.origin.to_lowercase().to_ascii();
        match self.meta(ORIGIN_KEY)? {
            Some(stored) if stored == asked.as_bytes() => Ok(()),
            Some(stored) => Err(StoreError::OtherZone {
                path: shown.to_owned(),
                stored: String::from_utf8_lossy(&stored).into_owned(),
                asked,
            }),
            None => {
                let db = self.db();
                let tx = begin_write(&db, Durability::Immediate)?;
                {
                    let mut meta = tx.open_table(META).map_err(StoreError::io)?;
                    meta.insert(ORIGIN_KEY, asked.as_bytes())
                        .map_err(StoreError::io)?;
                }
                tx.commit().map_err(StoreError::io)
            }
        }
    }
}

pub(super) fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(META).map_err(StoreError::io)?;
    tx.open_table(HOT).map_err(StoreError::io)?;
    tx.open_table(COLD).map_err(StoreError::io)?;
    tx.open_table(REPLAY).map_err(StoreError::io)?;
    tx.open_table(JOURNAL).map_err(StoreError::io)?;
    tx.open_table(MACHINES).map_err(StoreError::io)?;
    tx.open_table(IMPORTING).map_err(StoreError::io)?;
    tx.open_table(import_machines::IMPORT_MACHINES)
        .map_err(StoreError::io)?;
    tx.open_table(SIGNED).map_err(StoreError::io)?;
    tx.open_table(ENROLLMENT).map_err(StoreError::io)?;
    Ok(())
}

/// Creates the store's directory owner-only (0700), whatever the umask.
pub(super) fn create_owner_only(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Permissions {
            path: dir.display().to_string(),
            source,
        })
}

/// Makes the store's directories 0700 and its files 0600: they hold every TSIG secret.
pub(super) fn restrict_permissions(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let kind = item.file_type()?;
        if kind.is_dir() {
            restrict_permissions(&item.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(item.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// redb reports another process's open database as `DatabaseAlreadyOpen`.
pub(super) fn open_error(path: &str, error: redb::DatabaseError) -> StoreError {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_owned(),
        },
        e => StoreError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        },
    }
}
