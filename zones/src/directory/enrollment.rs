//! Enrollment: tokens (create, list, revoke), customers (terminal limit, suspension),
//! approval, and a terminal enrolling itself with a token ([`crate::enroll`] describes the
//! exchange). Each change goes through the committer like any other: acknowledged means
//! durable.
//!
//! The [`Gate`] keeps in memory what every signed request must check without a store
//! read: the suspended customers and the terminals awaiting approval. It is changed under
//! the writer lock, before the change that it reflects is staged, so no request sees a
//! terminal published before its gate is in force.

use super::*;
use crate::enroll::{self, CodeRange, Derivation, Ephemeral, Token, TokenId};
use crate::model::{Customer, TokenEntry};
use crate::store::{CustomerWrites, TerminalWrites};

/// What a signed request's key may do, by its customer's and its terminal's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Good,
    /// Its customer is suspended.
    Suspended,
    /// Enrolled with a token that asks for approval; not approved yet.
    Awaiting,
}

/// The suspended customers and the terminals awaiting approval, in memory.
#[derive(Debug, Default)]
pub(super) struct Gate {
    suspended: HashSet<Kid>,
    awaiting: HashSet<CodeKey>,
}

impl Gate {
    pub(super) fn load(store: &Store) -> Result<Self, StoreError> {
        let suspended = store
            .customers()?
            .into_iter()
            .filter(|(_, c)| c.suspended)
            .map(|(kid, _)| kid)
            .collect();
        let awaiting = store.awaiting_codes()?.iter().map(CodeKey::from).collect();
        Ok(Self {
            suspended,
            awaiting,
        })
    }
}

/// A token to create.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub kid: Kid,
    pub uses: u32,
    /// Unix seconds.
    pub expires_at: u64,
    pub codes: Option<CodeRange>,
    pub approve: bool,
}

/// A change to a customer's settings; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct CustomerChange {
    /// `Some(None)`: no limit.
    pub limit: Option<Option<u32>>,
    pub suspended: Option<bool>,
}

/// A terminal's enrollment request, its token's TSIG verified.
#[derive(Clone, Debug)]
pub struct Enrollment {
    pub token: TokenId,
    pub request: enroll::Request,
    /// The request's TSIG: its time and MAC become the terminal's replay memory.
    pub freshness: Freshness,
}

/// An accepted enrollment.
#[derive(Debug)]
pub struct Enrolled {
    pub terminal: Terminal,
    /// The directory's X25519 public key, for the answer.
    pub public: [u8; 32],
    /// The machine was enrolled before (a reset device): its key was replaced.
    pub replaced: bool,
    /// The terminal waits for `approve`.
    pub awaiting: bool,
}

/// How many random codes are tried before the range is searched in order.
const RANDOM_TRIES: usize = 32;
/// The most codes a search in order looks at.
const SEARCH_LIMIT: u64 = 1_000_000;
/// Codes picked for a token without a range: 9 digits, no leading zero.
const ANY_CODE: (u64, u64) = (100_000_000, 999_999_999);

impl Directory {
    /// The standing of the terminal `code` of customer `kid`, whose key signed a request.
    pub fn standing(&self, code: &CallingCode, kid: &Kid) -> Standing {
        let gate = self.inner.gate.read().unwrap_or_else(|e| e.into_inner());
        if gate.suspended.contains(kid) {
            Standing::Suspended
        } else if gate.awaiting.contains(&CodeKey::from(code)) {
            Standing::Awaiting
        } else {
            Standing::Good
        }
    }

    /// The TSIG key of a token by its key name (`ID.KID._enroll.ZONE.`), when the token
    /// exists, belongs to that KID and may enroll now. Any other token gives `None`, so
    /// that every failure looks the same from outside.
    pub fn token_key(&self, key_name: &str, now: u64) -> Option<(TokenId, TsigKey)> {
        let zone = self.zone();
        let (id, kid) = enroll::parse_token_key_name(key_name, zone.origin())?;
        let token = self.commit().store().token(&id).ok()??;
        if token.kid != kid || !token.usable(now) {
            return None;
        }
        let key = enroll::token_key(&id, &kid, &token.verifier, zone.origin());
        Some((id, key))
    }

    /// Creates a token; the returned [`Token`] is its only copy with the secret.
    pub async fn create_token(
        &self,
        new: NewToken,
        now: u64,
    ) -> Result<(Token, TokenEntry), DirectoryError> {
        let token = Token::generate(new.kid.clone()).map_err(DirectoryError::Enroll)?;
        let entry = TokenEntry {
            kid: new.kid,
            verifier: token.verifier(),
            uses: new.uses,
            used: 0,
            expires_at: new.expires_at,
            codes: new.codes,
            approve: new.approve,
            created_at: now,
            revoked_at: None,
        };
        let writer = self.commit().write_lock().await?;
        self.stage_customers(
            CustomerWrites {
                tokens: vec![(&token.id, Some(&entry))],
                ..Default::default()
            },
            now,
        )?;
        self.commit().durable(writer).await?;
        Ok((token, entry))
    }

    /// Every token (never a secret), by id.
    pub fn tokens(&self) -> Result<Vec<(TokenId, TokenEntry)>, StoreError> {
        self.commit().store().tokens()
    }

    /// Revokes a token: it enrolls nothing from now on. Terminals it enrolled keep their
    /// keys.
    pub async fn revoke_token(&self, id: &TokenId, now: u64) -> Result<TokenEntry, DirectoryError> {
        let writer = self.commit().write_lock().await?;
        let mut token = self
            .commit()
            .store()
            .token(id)?
            .ok_or_else(|| DirectoryError::UnknownToken(id.clone()))?;
        token.revoked_at.get_or_insert(now);
        self.stage_customers(
            CustomerWrites {
                tokens: vec![(id, Some(&token))],
                ..Default::default()
            },
            now,
        )?;
        self.commit().durable(writer).await?;
        Ok(token)
    }

    /// A customer's settings (the defaults when none were set).
    pub fn customer(&self, kid: &Kid) -> Result<Customer, StoreError> {
        self.commit().store().customer(kid)
    }

    /// Every customer with settings of its own, with its terminal count.
    pub fn customers(&self) -> Result<Vec<(Kid, Customer, usize)>, StoreError> {
        let store = self.commit().store();
        store
            .customers()?
            .into_iter()
            .map(|(kid, c)| {
                let count = store.count_machines(&kid, usize::MAX)?;
                Ok((kid, c, count))
            })
            .collect()
    }

    /// Changes a customer's limit or suspension; returns its settings after the change.
    pub async fn change_customer(
        &self,
        kid: &Kid,
        change: CustomerChange,
        now: u64,
    ) -> Result<Customer, DirectoryError> {
        let writer = self.commit().write_lock().await?;
        let mut customer = self.commit().store().customer(kid)?;
        let was_suspended = customer.suspended;
        if let Some(limit) = change.limit {
            customer.limit = limit;
        }
        if let Some(suspended) = change.suspended {
            customer.suspended = suspended;
        }
        // Suspension takes hold before the change is staged; a resumption once durable.
        if customer.suspended {
            self.gate_write().suspended.insert(kid.clone());
        }
        let staged = self.stage_customers(
            CustomerWrites {
                customers: vec![(kid, Some(&customer))],
                ..Default::default()
            },
            now,
        );
        let durable = match staged {
            Ok(_) => self.commit().durable(writer).await,
            Err(e) => Err(e),
        };
        // What is durable decides: a suspension that did not land is undone, and one that
        // ended lifts the gate.
        let suspended = match &durable {
            Ok(()) => customer.suspended,
            Err(_) => was_suspended,
        };
        if !suspended {
            self.gate_write().suspended.remove(kid);
        }
        durable?;
        Ok(customer)
    }

    /// Approves a terminal that waits for it: from now on its key may update.
    pub async fn approve(&self, code: &CallingCode, now: u64) -> Result<Terminal, DirectoryError> {
        let writer = self.commit().write_lock().await?;
        let entry = self.registered(code)?;
        if !self.commit().store().awaiting(code)? {
            return Err(DirectoryError::NotAwaiting(code.clone()));
        }
        self.stage_customers(
            CustomerWrites {
                awaiting: vec![(code, false)],
                ..Default::default()
            },
            now,
        )?;
        self.commit().durable(writer).await?;
        self.gate_write().awaiting.remove(&CodeKey::from(code));
        Ok(entry.terminal)
    }

    /// Enrolls a terminal with a token whose TSIG was verified; answers once durable.
    pub async fn enroll(&self, e: Enrollment, now: u64) -> Result<Enrolled, DirectoryError> {
        let Enrollment {
            token: id,
            request,
            freshness,
        } = e;
        let writer = self.commit().write_lock().await?;
        let store = self.commit().store();
        let mut token = match store.token(&id)? {
            Some(token) if token.usable(now) => token,
            _ => return Err(DirectoryError::TokenRefused),
        };
        let kid = token.kid.clone();
        let customer = store.customer(&kid)?;
        if customer.suspended {
            return Err(DirectoryError::Suspended(kid));
        }
        let mid = request.mid.clone();
        let (code, mut presence, replaced) = match store.machine(&kid, &mid)? {
            Some(code) => {
                let entry = self.registered(&code)?;
                if replay::check_fresh(&entry.presence, &freshness).is_err() {
                    return Err(DirectoryError::Stale {
                        code,
                        time_signed: freshness.time_signed,
                    });
                }
                (code, entry.presence, true)
            }
            None => {
                if let Some(other) = store.owner(&mid)?.filter(|other| *other != kid) {
                    return Err(DirectoryError::MachineOfAnother { mid, kid: other });
                }
                if let Some(limit) = customer.limit {
                    let cap = limit as usize;
                    if store.count_machines(&kid, cap)? >= cap {
                        return Err(DirectoryError::TerminalLimit { kid, limit });
                    }
                }
                let code = self.enrollment_code(&token, request.code.as_ref())?;
                (code, Presence::default(), false)
            }
        };
        replay::forget(&mut presence);
        replay::remember_signature(&mut presence, &freshness, now, self.inner.limits.fudge);
        let origin = self.zone().origin().clone();
        let key_name = TerminalKeyName::format(&code, &mid, &kid, &origin);
        let ephemeral = Ephemeral::generate().map_err(DirectoryError::Enroll)?;
        let public = ephemeral.public();
        let verifier = token.verifier.clone();
        let secret = ephemeral
            .derive(
                &request.public,
                &Derivation {
                    verifier: &verifier,
                    key_name: &key_name,
                    mid: &mid,
                    client: &request.public,
                    server: &public,
                },
            )
            .map_err(DirectoryError::Enroll)?;
        let terminal = Terminal {
            key: TsigKey {
                name: key_name,
                algorithm: enroll::ALGORITHM,
                secret,
            },
            code: code.clone(),
            kid,
            mid,
            registered_at: now,
        };
        token.used += 1;
        let awaiting = token.approve;
        if awaiting {
            self.gate_write().awaiting.insert(CodeKey::from(&code));
        }
        let staged = self.stage(Work {
            store: Change {
                terminals: TerminalWrites {
                    put_terminals: vec![&terminal],
                    put_presence: vec![(&code, &presence)],
                    ..Default::default()
                },
                customers: CustomerWrites {
                    tokens: vec![(&id, Some(&token))],
                    awaiting: awaiting.then_some((&code, true)).into_iter().collect(),
                    ..Default::default()
                },
                ..Change::default()
            },
            zone_changes: Vec::new(),
            entries: vec![(CodeKey::from(&code), Some(presence.hot()))],
            now,
            resigned: None,
        });
        let durable = match staged {
            Ok(_) => self.commit().durable(writer).await.map_err(Into::into),
            Err(e) => Err(DirectoryError::from(e)),
        };
        if let Err(e) = durable {
            if awaiting && !store.awaiting(&code).unwrap_or(false) {
                self.gate_write().awaiting.remove(&CodeKey::from(&code));
            }
            return Err(e);
        }
        Ok(Enrolled {
            terminal,
            public,
            replaced,
            awaiting,
        })
    }

    /// The code a new terminal gets: the one it asked for, if the token allows it and it is
    /// free, or a free one from the token's range (any 9-digit code without a range).
    fn enrollment_code(
        &self,
        token: &TokenEntry,
        asked: Option<&CallingCode>,
    ) -> Result<CallingCode, DirectoryError> {
        let store = self.commit().store();
        let free = |code: &CallingCode| -> Result<bool, DirectoryError> {
            Ok(store.terminal(code)?.is_none() && !store.is_importing(code)?)
        };
        if let Some(code) = asked {
            if let Some(range) = token.codes.as_ref().filter(|r| !r.contains(code)) {
                return Err(DirectoryError::OutOfRange {
                    code: code.clone(),
                    range: range.clone(),
                });
            }
            if let Some(e) = store.terminal(code)? {
                return Err(DirectoryError::CodeTaken {
                    code: code.clone(),
                    kid: e.terminal.kid,
                });
            }
            self.refuse_importing(code)?;
            return Ok(code.clone());
        }
        let range = match &token.codes {
            Some(range) => range.clone(),
            None => CodeRange {
                first: ANY_CODE.0.to_string().parse().expect("a code"),
                last: ANY_CODE.1.to_string().parse().expect("a code"),
            },
        };
        let len = range.len();
        let mut random = [0u8; 8 * RANDOM_TRIES];
        getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
        for chunk in random.chunks_exact(8) {
            let offset = u64::from_le_bytes(chunk.try_into().expect("8 bytes")) % len;
            let code = range.nth(offset);
            if free(&code)? {
                return Ok(code);
            }
        }
        let start = u64::from_le_bytes(random[..8].try_into().expect("8 bytes")) % len;
        for step in 0..len.min(SEARCH_LIMIT) {
            let code = range.nth((start + step) % len);
            if free(&code)? {
                return Ok(code);
            }
        }
        Err(DirectoryError::NoFreeCode(range))
    }

    /// Stages a change of tokens, customers or approvals (no zone change). Call with the
    /// writer lock held, then [`Committer::durable`].
    fn stage_customers(&self, writes: CustomerWrites<'_>, now: u64) -> Result<u32, StoreError> {
        self.stage(Work {
            store: Change {
                customers: writes,
                ..Change::default()
            },
            zone_changes: Vec::new(),
            entries: Vec::new(),
            now,
            resigned: None,
        })
    }

    /// A removed terminal no longer waits for approval.
    pub(super) fn gate_forget(&self, code: &CallingCode) {
        self.gate_write().awaiting.remove(&CodeKey::from(code));
    }

    fn gate_write(&self) -> std::sync::RwLockWriteGuard<'_, Gate> {
        self.inner.gate.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn open(dir: &Path) -> Directory {
        Directory::open(dir, Zone::embedded_default(), Limits::default()).unwrap()
    }

    fn new_token(kid: &str, uses: u32) -> NewToken {
        NewToken {
            kid: kid.parse().unwrap(),
            uses,
            expires_at: NOW + 3600,
            codes: None,
            approve: false,
        }
    }

    /// One enrollment as a terminal makes it: the secret it derives, and the directory's answer.
    async fn enroll(
        dir: &Directory,
        token: &Token,
        mid: &str,
        code: Option<&str>,
        mac: u8,
    ) -> Result<(Enrolled, Secret), DirectoryError> {
        let ours = Ephemeral::generate().unwrap();
        let request = enroll::Request {
            mid: mid.parse().unwrap(),
            code: code.map(|c| c.parse().unwrap()),
            public: ours.public(),
        };
        let client = request.public;
        let enrollment = Enrollment {
            token: token.id.clone(),
            request,
            freshness: Freshness {
                time_signed: NOW,
                mac: vec![mac; 32],
            },
        };
        let enrolled = dir.enroll(enrollment, NOW).await?;
        let secret = ours
            .derive(
                &enrolled.public,
                &Derivation {
                    verifier: &token.verifier(),
                    key_name: &enrolled.terminal.key.name,
                    mid: &enrolled.terminal.mid,
                    client: &client,
                    server: &enrolled.public,
                },
            )
            .unwrap();
        Ok((enrolled, secret))
    }

    #[tokio::test]
    async fn a_token_enrolls_as_many_terminals_as_its_uses_and_both_sides_agree_on_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let (token, _) = dir.create_token(new_token("acme", 2), NOW).await.unwrap();
        let (a, secret) = enroll(&dir, &token, "3c22fb010201", Some("5550001"), 1)
            .await
            .unwrap();
        assert_eq!(a.terminal.key.secret, secret);
        assert_eq!(a.terminal.code.as_str(), "5550001");
        let (b, _) = enroll(&dir, &token, "3c22fb010202", None, 2).await.unwrap();
        assert_eq!(b.terminal.code.as_str().len(), 9);
        let third = enroll(&dir, &token, "3c22fb010203", None, 3).await;
        assert!(
            matches!(third, Err(DirectoryError::TokenRefused)),
            "{third:?}"
        );
        // The token key of a used-up token is not found either: the same answer outside.
        let name = token.tsig_key(dir.zone().origin()).name;
        assert!(dir.token_key(&name, NOW).is_none());
        assert!(dir.terminal(&"5550001".parse().unwrap()).unwrap().is_some());
    }

    #[tokio::test]
    async fn revoked_expired_and_other_customers_tokens_enroll_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let (revoked, _) = dir.create_token(new_token("acme", 5), NOW).await.unwrap();
        dir.revoke_token(&revoked.id, NOW).await.unwrap();
        let r = enroll(&dir, &revoked, "3c22fb010201", None, 1).await;
        assert!(matches!(r, Err(DirectoryError::TokenRefused)), "{r:?}");
        let mut short = new_token("acme", 5);
        short.expires_at = NOW;
        let (expired, _) = dir.create_token(short, NOW).await.unwrap();
        let r = enroll(&dir, &expired, "3c22fb010201", None, 2).await;
        assert!(matches!(r, Err(DirectoryError::TokenRefused)), "{r:?}");
        // A token key name with another KID than the token's is not found.
        let (good, _) = dir.create_token(new_token("acme", 5), NOW).await.unwrap();
        let forged =
            enroll::token_key_name(&good.id, &"other".parse().unwrap(), dir.zone().origin());
        assert!(dir.token_key(&forged, NOW).is_none());
        let name = good.tsig_key(dir.zone().origin()).name;
        assert!(dir.token_key(&name, NOW).is_some());
        assert!(dir.tokens().unwrap().len() == 3);
    }

    #[tokio::test]
    async fn a_reset_device_keeps_its_code_gets_a_new_key_and_a_replay_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let (token, _) = dir.create_token(new_token("acme", 5), NOW).await.unwrap();
        let (first, _) = enroll(&dir, &token, "3c22fb010201", None, 1).await.unwrap();
        let replay = enroll(&dir, &token, "3c22fb010201", None, 1).await;
        assert!(
            matches!(replay, Err(DirectoryError::Stale { .. })),
            "{replay:?}"
        );
        let (again, _) = enroll(&dir, &token, "3c22fb010201", None, 2).await.unwrap();
        assert!(again.replaced);
        assert_eq!(again.terminal.code, first.terminal.code);
        assert_ne!(again.terminal.key.secret, first.terminal.key.secret);
        let used = dir.tokens().unwrap()[0].1.used;
        assert_eq!(used, 2, "the refused replay used nothing");
    }

    #[tokio::test]
    async fn a_machine_of_another_customer_a_full_customer_and_a_range_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open(tmp.path());
        let (acme, _) = dir.create_token(new_token("acme", 5), NOW).await.unwrap();
        let (globex, _) = dir.create_token(new_token("globex", 5), NOW).await.unwrap();
        enroll(&dir, &acme, "3c22fb010201", None, 1).await.unwrap();
        let r = enroll(&dir, &globex, "3c22fb010201", None, 2).await;
        assert!(
            matches!(r, Err(DirectoryError::MachineOfAnother { .. })),
            "{r:?}"
        );
        let limit = CustomerChange {
            limit: Some(Some(1)),
            ..Default::default()
        };
        dir.change_customer(&"acme".parse().unwrap(), limit, NOW)
            .await
            .unwrap();
        let r = enroll(&dir, &acme, "3c22fb010202", None, 3).await;
        assert!(
            matches!(r, Err(DirectoryError::TerminalLimit { limit: 1, .. })),
            "{r:?}"
        );
        let mut ranged = new_token("globex", 5);
        ranged.codes = Some("7770-7771".parse().unwrap());
        let (ranged, _) = dir.create_token(ranged, NOW).await.unwrap();
        let r = enroll(&dir, &ranged, "3c22fb010203", Some("7772"), 4).await;
        assert!(matches!(r, Err(DirectoryError::OutOfRange { .. })), "{r:?}");
        let (a, _) = enroll(&dir, &ranged, "3c22fb010203", None, 5)
            .await
            .unwrap();
        let (b, _) = enroll(&dir, &ranged, "3c22fb010204", None, 6)
            .await
            .unwrap();
        let mut codes = [a.terminal.code.to_string(), b.terminal.code.to_string()];
        codes.sort();
        assert_eq!(codes, ["7770", "7771"]);
        let r = enroll(&dir, &ranged, "3c22fb010205", None, 7).await;
        assert!(matches!(r, Err(DirectoryError::NoFreeCode(_))), "{r:?}");
    }

    #[tokio::test]
    async fn suspension_and_approval_hold_across_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let kid: Kid = "acme".parse().unwrap();
        let code: CallingCode;
        {
            let dir = open(tmp.path());
            let mut gated = new_token("acme", 5);
            gated.approve = true;
            let (token, _) = dir.create_token(gated, NOW).await.unwrap();
            let (e, _) = enroll(&dir, &token, "3c22fb010201", None, 1).await.unwrap();
            assert!(e.awaiting);
            code = e.terminal.code;
            assert_eq!(dir.standing(&code, &kid), Standing::Awaiting);
            let suspend = CustomerChange {
                suspended: Some(true),
                ..Default::default()
            };
            dir.change_customer(&kid, suspend, NOW).await.unwrap();
            let r = enroll(&dir, &token, "3c22fb010202", None, 2).await;
            assert!(matches!(r, Err(DirectoryError::Suspended(_))), "{r:?}");
        }
        let dir = open(tmp.path());
        assert_eq!(dir.standing(&code, &kid), Standing::Suspended);
        let resume = CustomerChange {
            suspended: Some(false),
            ..Default::default()
        };
        dir.change_customer(&kid, resume, NOW).await.unwrap();
        assert_eq!(dir.standing(&code, &kid), Standing::Awaiting);
        dir.approve(&code, NOW).await.unwrap();
        assert_eq!(dir.standing(&code, &kid), Standing::Good);
        let again = dir.approve(&code, NOW).await;
        assert!(
            matches!(again, Err(DirectoryError::NotAwaiting(_))),
            "{again:?}"
        );
        drop(dir);
        assert_eq!(open(tmp.path()).standing(&code, &kid), Standing::Good);
    }
}
