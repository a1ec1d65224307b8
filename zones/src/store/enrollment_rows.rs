//! The `enrollment` table: tokens, customers, the terminals awaiting approval, and each
//! MID's KID, one text-keyed table with a prefix per kind of row:
//!
//! | key                | value                                   |
//! |--------------------|-----------------------------------------|
//! | `token <id>`       | [`TokenEntry`] (the verifier, never the token) |
//! | `customer <kid>`   | [`Customer`] (absent: no limit, not suspended) |
//! | `awaiting <code>`  | empty: the terminal waits for `approve` |
//! | `owner <mid>`      | the KID the MID was registered under last |
//!
//! `owner` rows are written with every registration and removed with it, so an enrollment
//! finds a MID registered under another customer with one read; a row is only a hint,
//! checked against `machines` (an import aborted after staging leaves one behind).

use redb::{ReadableTable, WriteTransaction};

use super::batch::{Table, Writes};
use super::*;
use crate::enroll::TokenId;
use crate::model::{Customer, TokenEntry};

const TOKEN: &str = "token ";
const CUSTOMER: &str = "customer ";
const AWAITING: &str = "awaiting ";
const OWNER: &str = "owner ";

/// The rows of a [`CustomerWrites`].
pub(super) fn encode(c: &CustomerWrites<'_>, w: &mut Writes) -> Result<(), StoreError> {
    for (id, token) in &c.tokens {
        let value = token.map(encode_value).transpose()?;
        w.enrollment.push((format!("{TOKEN}{id}"), value));
    }
    for (kid, customer) in &c.customers {
        let value = customer.map(encode_value).transpose()?;
        w.enrollment.push((format!("{CUSTOMER}{kid}"), value));
    }
    for (code, awaiting) in &c.awaiting {
        let value = awaiting.then(Vec::new);
        w.enrollment.push((format!("{AWAITING}{code}"), value));
    }
    Ok(())
}

fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rows::encode(value)
}

/// A registration's `owner` row.
pub(super) fn registered(terminal: &Terminal, w: &mut Writes) {
    let owner = format!("{OWNER}{}", terminal.mid);
    w.enrollment
        .push((owner, Some(terminal.kid.as_str().as_bytes().to_vec())));
}

/// What a removed registration leaves: no `owner` or `awaiting` row.
pub(super) fn removed(terminal: &Terminal, w: &mut Writes) {
    w.enrollment
        .push((format!("{OWNER}{}", terminal.mid), None));
    w.enrollment
        .push((format!("{AWAITING}{}", terminal.code), None));
}

/// Fills the `owner` rows from `machines` (a store of schema 3 or earlier); returns how
/// many were written.
pub(super) fn upgrade(tx: &WriteTransaction) -> Result<usize, StoreError> {
    let machines = tx.open_table(MACHINES).map_err(StoreError::io)?;
    let mut table = tx.open_table(ENROLLMENT).map_err(StoreError::io)?;
    let mut written = 0;
    for item in machines.iter().map_err(StoreError::io)? {
        let (key, _) = item.map_err(StoreError::io)?;
        let Some((kid, mid)) = key.value().split_once(' ') else {
            continue;
        };
        table
            .insert(format!("{OWNER}{mid}").as_str(), kid.as_bytes())
            .map_err(StoreError::io)?;
        written += 1;
    }
    Ok(written)
}

/// The tokens, customers and approvals in `read`, for a backup: three prefix ranges, so
/// the `owner` rows (one a terminal) are not read.
pub(super) fn snapshot(read: &redb::ReadTransaction) -> Result<Vec<Enrolled>, StoreError> {
    let table = read.open_table(ENROLLMENT).map_err(StoreError::io)?;
    let mut out = Vec::new();
    for prefix in [TOKEN, CUSTOMER, AWAITING] {
        let end = format!("{}!", prefix.trim_end());
        for item in table
            .range::<&str>(prefix..end.as_str())
            .map_err(StoreError::io)?
        {
            let (key, value) = item.map_err(StoreError::io)?;
            let (key, value) = (key.value(), value.value());
            let rest = &key[prefix.len()..];
            let item = match prefix {
                TOKEN => rest
                    .parse()
                    .ok()
                    .map(|id| decode(key, value).map(|t| Enrolled::Token(id, t))),
                CUSTOMER => rest
                    .parse()
                    .ok()
                    .map(|kid| decode(key, value).map(|c| Enrolled::Customer(kid, c))),
                _ => rest.parse().ok().map(|code| Ok(Enrolled::Awaiting(code))),
            };
            if let Some(item) = item {
                out.push(item?);
            }
        }
    }
    Ok(out)
}

impl Store {
    /// A token, with every staged change.
    pub fn token(&self, id: &TokenId) -> Result<Option<TokenEntry>, StoreError> {
        let key = format!("{TOKEN}{id}");
        let [row] = self.rows([(Table::Enrollment, key.as_str())])?;
        decode_row(&key, row)
    }

    /// A customer, with every staged change (the defaults when none was written).
    pub fn customer(&self, kid: &Kid) -> Result<Customer, StoreError> {
        let key = format!("{CUSTOMER}{kid}");
        let [row] = self.rows([(Table::Enrollment, key.as_str())])?;
        Ok(decode_row(&key, row)?.unwrap_or_default())
    }

    /// Whether a terminal waits for approval, with every staged change.
    pub fn awaiting(&self, code: &CallingCode) -> Result<bool, StoreError> {
        let key = format!("{AWAITING}{code}");
        let [row] = self.rows([(Table::Enrollment, key.as_str())])?;
        Ok(row.is_some())
    }

    /// The KID `mid` is registered under, if another registration holds it: the `owner`
    /// row, checked against `machines`.
    pub fn owner(&self, mid: &Mid) -> Result<Option<Kid>, StoreError> {
        let key = format!("{OWNER}{mid}");
        let [row] = self.rows([(Table::Enrollment, key.as_str())])?;
        let Some(kid) = row.and_then(|k| String::from_utf8(k).ok()?.parse::<Kid>().ok()) else {
            return Ok(None);
        };
        Ok(self.machine(&kid, mid)?.map(|_| kid))
    }

    /// How many terminals customer `kid` has, counting up to `cap` (staged changes
    /// included).
    pub fn count_machines(&self, kid: &Kid, cap: usize) -> Result<usize, StoreError> {
        let prefix = format!("{kid} ");
        let staged = self.staged().rows_with_prefix(Table::Machines, &prefix);
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let machines = read.open_table(MACHINES).map_err(StoreError::io)?;
        let end = format!("{kid}!");
        let mut keys = std::collections::HashSet::new();
        let range = machines
            .range::<&str>(prefix.as_str()..end.as_str())
            .map_err(StoreError::io)?;
        for item in range.take(cap.saturating_add(staged.len())) {
            let (key, _) = item.map_err(StoreError::io)?;
            keys.insert(key.value().to_owned());
        }
        for (key, value) in staged {
            match value {
                Some(_) => keys.insert(key),
                None => keys.remove(&key),
            };
        }
        Ok(keys.len().min(cap))
    }

    /// Every token as redb holds it, by id.
    pub fn tokens(&self) -> Result<Vec<(TokenId, TokenEntry)>, StoreError> {
        self.scan_enrollment(TOKEN, |id, value| Ok(id.parse().ok().map(|id| (id, value))))
    }

    /// Every customer with settings of its own, as redb holds them, by KID.
    pub fn customers(&self) -> Result<Vec<(Kid, Customer)>, StoreError> {
        self.scan_enrollment(CUSTOMER, |kid, value| {
            Ok(kid.parse().ok().map(|kid| (kid, value)))
        })
    }

    /// Every terminal awaiting approval, as redb holds them.
    pub fn awaiting_codes(&self) -> Result<Vec<CallingCode>, StoreError> {
        self.scan_enrollment(AWAITING, |code, ()| Ok(code.parse().ok()))
    }

    fn scan_enrollment<T: DeserializeOwned, U>(
        &self,
        prefix: &str,
        mut each: impl FnMut(&str, T) -> Result<Option<U>, StoreError>,
    ) -> Result<Vec<U>, StoreError> {
        let db = self.db();
        let read = db.begin_read().map_err(StoreError::io)?;
        let table = read.open_table(ENROLLMENT).map_err(StoreError::io)?;
        let end = format!("{}!", prefix.trim_end());
        let mut out = Vec::new();
        for item in table
            .range::<&str>(prefix..end.as_str())
            .map_err(StoreError::io)?
        {
            let (key, value) = item.map_err(StoreError::io)?;
            let value = decode(key.value(), value.value())?;
            if let Some(u) = each(&key.value()[prefix.len()..], value)? {
                out.push(u);
            }
        }
        Ok(out)
    }
}
