//! Stage 2: EDNS. The response's OPT (RFC 6891 §6.1.1) with its COOKIE (RFC 7873), and the
//! refusals EDNS decides for every kind of request: an unknown version (BADVERS) and a
//! malformed COOKIE (FORMERR).

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::server::Request;

use crate::cookie::{CookieSecret, CookieState};
use crate::refusal::Refusal;
use crate::response::udp_payload;

/// What EDNS decided for a request.
#[derive(Debug)]
pub struct EdnsAnswer {
    /// The response's OPT: present when the request had one.
    pub opt: Option<Edns>,
    /// The request's COOKIE, as checked.
    pub cookie: CookieState,
    /// The request's DO bit.
    pub dnssec_ok: bool,
}

/// Reads the request's OPT; `Err` carries the answer so far and why it is refused.
pub fn read(
    request: &Request,
    secret: &CookieSecret,
    now: u64,
) -> (EdnsAnswer, Result<(), Refusal>) {
    let asked = request.edns.as_ref();
    let data = asked.and_then(|e| match e.option(EdnsCode::Cookie) {
        Some(EdnsOption::Unknown(_, data)) => Some(data.as_slice()),
        _ => None,
    });
    let src = request.src().ip();
    let cookie = secret.check(data, src, now);
    let mut opt = asked.map(|asked| {
        let mut edns = Edns::new();
        edns.set_version(0);
        edns.set_max_payload(udp_payload(asked.max_payload()));
        // RFC 3225 §3: the DO bit is copied into the response.
        edns.set_dnssec_ok(asked.flags().dnssec_ok);
        edns
    });
    if let (Some(opt), CookieState::ClientOnly(client) | CookieState::Valid(client)) =
        (opt.as_mut(), &cookie)
    {
        opt.options_mut().insert(EdnsOption::Unknown(
            crate::cookie::OPTION_CODE,
            secret.answer(client, src, now),
        ));
    }
    let verdict = if cookie == CookieState::Malformed {
        Err(Refusal::MalformedCookie)
    } else if asked.is_some_and(|e| e.version() > 0) {
        Err(Refusal::BadVersion)
    } else {
        Ok(())
    };
    let answer = EdnsAnswer {
        opt,
        cookie,
        dnssec_ok: asked.is_some_and(|e| e.flags().dnssec_ok),
    };
    (answer, verdict)
}
