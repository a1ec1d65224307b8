//! Replay protection for signed updates (RFC 8945 §5.2.3), kept per terminal key.
//!
//! TSIG itself accepts a message anywhere inside the time window (the fudge, ±300 s), so
//! anyone who saw a signed update could send it again within that window. Each terminal's
//! [`Presence`] therefore remembers:
//!
//! - `last_signed`: the newest Time Signed accepted, **but never later than the server's
//!   own time when it was accepted**. A message signed before it is refused, so an older
//!   update cannot undo a newer one. Capping it at the server's time means a terminal whose
//!   clock once ran ahead (an update signed 120 s in the future, still inside the window)
//!   does not lock out its own correctly timed updates for those 120 s.
//! - `recent_macs`: every MAC accepted with a Time Signed at or after `last_signed`, as its
//!   first 8 bytes ([`MacPrint`]: all a replay needs to be recognised). Older
//!   MACs need no memory (the order rule refuses them), so the list holds only the updates
//!   of the newest second plus any signed ahead of the server's clock. There is no cap on
//!   its length: a cap would let the first MAC of a busy second be replayed once evicted.
//!
//! Both are committed with the update they belong to, so they survive restarts.

use crate::model::{MacPrint, Presence, mac_print};

/// The TSIG facts of a signed update that replay protection needs.
#[derive(Clone, Debug)]
pub struct Freshness {
    pub time_signed: u64,
    pub mac: Vec<u8>,
}

/// A replayed update, or one signed before the newest accepted from the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("signed at {time_signed}: a replay or older than the last update from this key")]
pub struct NotFresh {
    pub time_signed: u64,
}

/// RFC 8945 §5.2.3: refuses messages signed before the newest accepted one, and replays.
pub fn check_fresh(presence: &Presence, freshness: &Freshness) -> Result<(), NotFresh> {
    let refused = NotFresh {
        time_signed: freshness.time_signed,
    };
    if freshness.time_signed < presence.last_signed {
        return Err(refused);
    }
    let print: MacPrint = mac_print(&freshness.mac);
    if presence.recent_macs.iter().any(|(_, m)| *m == print) {
        return Err(refused);
    }
    Ok(())
}

/// Adds an accepted signature to the replay memory at server time `now`, and forgets what
/// the order rule or the time window already refuses.
pub fn remember_signature(presence: &mut Presence, freshness: &Freshness, now: u64, fudge: u16) {
    let accepted_at = freshness.time_signed.min(now);
    presence.last_signed = presence.last_signed.max(accepted_at);
    let last = presence.last_signed;
    let oldest_in_window = now.saturating_sub(u64::from(fudge));
    presence
        .recent_macs
        .retain(|(t, _)| *t >= last && *t >= oldest_in_window);
    presence
        .recent_macs
        .push((freshness.time_signed, mac_print(&freshness.mac)));
}

/// Forgets everything: the key changed, so the old key's messages cannot verify anyway.
pub fn forget(presence: &mut Presence) {
    presence.last_signed = 0;
    presence.recent_macs.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(time_signed: u64, mac: u32) -> Freshness {
        Freshness {
            time_signed,
            mac: mac.to_be_bytes().repeat(8),
        }
    }

    fn accept(p: &mut Presence, f: &Freshness, now: u64) {
        check_fresh(p, f).unwrap();
        remember_signature(p, f, now, 300);
    }

    #[test]
    fn replays_and_older_messages_are_refused() {
        let mut p = Presence::default();
        accept(&mut p, &signed(100, 1), 100);
        assert!(check_fresh(&p, &signed(100, 1)).is_err(), "replay");
        assert!(check_fresh(&p, &signed(99, 2)).is_err(), "older");
        assert!(
            check_fresh(&p, &signed(100, 3)).is_ok(),
            "same second, new MAC"
        );
    }

    /// Regression: an update signed 120 s ahead of the server's clock was accepted and then
    /// every correctly timed update was refused as older for 120 s.
    #[test]
    fn future_dated_update_does_not_lock_out_correctly_timed_ones() {
        let mut p = Presence::default();
        accept(&mut p, &signed(1120, 1), 1000);
        assert!(check_fresh(&p, &signed(1001, 2)).is_ok());
        accept(&mut p, &signed(1001, 2), 1001);
        assert!(
            check_fresh(&p, &signed(1120, 1)).is_err(),
            "the future-dated MAC is still remembered"
        );
    }

    /// Regression: the 257th update of one second evicted the first MAC, whose replay was
    /// then accepted.
    #[test]
    fn replay_memory_does_not_depend_on_updates_per_second() {
        let mut p = Presence::default();
        for i in 0..1000 {
            accept(&mut p, &signed(500, i), 500);
        }
        for i in [0, 1, 255, 256, 999] {
            assert!(
                check_fresh(&p, &signed(500, i)).is_err(),
                "MAC {i} replayed"
            );
        }
        // A later second forgets the earlier one's MACs: the order rule covers them.
        accept(&mut p, &signed(501, 5000), 501);
        assert_eq!(p.recent_macs.len(), 1);
        assert!(check_fresh(&p, &signed(500, 0)).is_err());
    }
}
