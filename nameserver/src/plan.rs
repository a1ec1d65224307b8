//! The answer to a terminal's name (A or AAAA), decided once for both paths: the full path
//! ([`crate::query`]) makes records of it, the fast path ([`crate::fast`]) writes its bytes
//! without decoding or allocating. What is decided here: whether answers with DO can be
//! given yet, whether the lease still holds (a signed answer follows the zone as signed,
//! whose addresses stay until the expiry sweep), NXDOMAIN or NODATA, and which stored
//! signature goes with the addresses.

use zones::directory::View;
use zones::dnssec::Sig;
use zones::identity::CodeKey;
use zones::model::{Addresses, Hot};

/// What a terminal's name answers.
#[derive(Debug)]
pub enum TerminalPlan<'v> {
    /// Addresses of the asked family (at least one), their TTL, and with DO in a signed
    /// zone their RRset's stored signature.
    Addresses {
        addresses: &'v Addresses,
        aaaa: bool,
        ttl: u32,
        count: usize,
        rrsig: Option<Sig>,
    },
    /// Without DO or in an unsigned zone: NXDOMAIN (`exists` false) or NODATA, each with
    /// the SOA and the negative-caching TTL in the authority section (RFC 2308 §3).
    Negative { exists: bool },
    /// The full path's general answer: a signed negative answer (NSEC3 or compact denial
    /// proofs), or addresses whose signature is not stored (signed when asked).
    General,
    /// DO set while a signed start has not put the signatures in force: not ready.
    NotReady,
}

/// True while an answer with DO cannot be given (the signatures are being read at start-up
/// and not answered from in place meanwhile): the one rule, for every name.
#[inline]
pub fn not_ready(view: &View, dnssec_ok: bool) -> bool {
    dnssec_ok && view.signed_answers_pending()
}

/// The addresses a terminal's name answers with: signed answers follow the zone as signed
/// (the stored addresses, until the expiry sweep removes them); unsigned ones drop a
/// lapsed lease at once.
#[inline]
pub fn served_addresses(hot: &Hot, as_signed: bool, now: u64) -> &Addresses {
    match as_signed {
        true => &hot.addresses,
        false => hot.live(now),
    }
}

/// The plan for the A (`aaaa` false) or AAAA records of the terminal `key`.
#[inline]
pub fn terminal(
    view: &View,
    key: CodeKey,
    aaaa: bool,
    dnssec_ok: bool,
    now: u64,
) -> TerminalPlan<'_> {
    if not_ready(view, dnssec_ok) {
        return TerminalPlan::NotReady;
    }
    let signed = view.signed().filter(|_| dnssec_ok);
    let Some(hot) = view.get(key) else {
        return match signed {
            Some(_) => TerminalPlan::General,
            None => TerminalPlan::Negative { exists: false },
        };
    };
    let addresses = served_addresses(hot, signed.is_some(), now);
    let (ttl, count) = if aaaa {
        (addresses.v6.ttl, addresses.v6.addrs.len())
    } else {
        (addresses.v4.ttl, addresses.v4.addrs.len())
    };
    let rrsig = match signed {
        None if count == 0 => return TerminalPlan::Negative { exists: true },
        None => None,
        Some(_) if count == 0 => return TerminalPlan::General,
        Some(signed) => match signed.address_sig(key, aaaa) {
            Some(sig) => Some(sig),
            None => return TerminalPlan::General,
        },
    };
    TerminalPlan::Addresses {
        addresses,
        aaaa,
        ttl,
        count,
        rrsig,
    }
}
