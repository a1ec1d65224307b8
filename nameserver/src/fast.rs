//! The wire-level fast path for the answers almost every query gets: A and AAAA of a
//! terminal's name (its addresses, or NODATA) and NXDOMAIN for a code nobody registered;
//! in a signed zone with DO set, the addresses and their RRSIG (negative answers with DO,
//! which carry NSEC3 proofs, take the full path).
//!
//! ```text
//!  request bytes ─ header: a query, one question, nothing but an optional OPT
//!                ─ question: <3-15 digits>.<zone>, class IN, type A or AAAA
//!                ─ OPT: version 0, no option or one well-formed COOKIE (RFC 7873)
//!                ─ RRL (as every UDP answer; not for a valid server cookie)
//!                ─ index lookup (read lock, no allocation) ─▶ answer bytes into `out`
//! ```
//!
//! Anything else returns [`Fast::Declined`] and takes the full path (hickory's decoder and
//! [`crate::pipeline`]): TSIG, EDNS options other than one COOKIE, other EDNS versions, other
//! names and types, signed-lookups mode, compression in the question. The answers are the
//! full path's, checked by `tests/differential.rs`: the question echoed as sent (case
//! included), answer owners pointing at it, AA set, RD and CD copied, the SOA with the
//! negative-caching TTL in the authority section of negative answers (RFC 2308 §3), and an
//! OPT of version 0 with our payload size when the request had one, with the client cookie
//! and a fresh server cookie when it sent a COOKIE.

use hickory_proto::rr::RData;
use hickory_proto::serialize::binary::BinEncodable;
use zones::directory::View;
use zones::identity::CodeKey;
use zones::zone::Zone;

use crate::cookie::{self, CookieSecret, CookieState};
use crate::plan::{self, TerminalPlan};
use crate::ratelimit::Verdict;
use crate::response::udp_payload;

const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const TYPE_RRSIG: u16 = 46;
/// ECDSA P-256 with SHA-256, the zone keys' algorithm.
const ALGORITHM_ECDSAP256SHA256: u8 = 13;
const CLASS_IN: u16 = 1;
const HEADER: usize = 12;

/// What the fast path did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// `out` holds the answer to a query of this type.
    Answered { qtype: u16 },
    /// Over the rate limit: no answer at all.
    Dropped,
    /// Not a request the fast path answers: take the full path.
    Declined,
}

/// The zone's fixed parts in wire form, prepared once.
#[derive(Debug, Clone)]
pub struct FastPath {
    /// The origin's labels, lower case, ending with the root label.
    origin: Vec<u8>,
    /// SOA RDATA before the serial (MNAME, RNAME) and after it (the four timers).
    soa_names: Vec<u8>,
    soa_timers: [u8; 16],
    negative_ttl: u32,
    /// Labels of a terminal's name (the code's and the origin's), for its RRSIGs.
    terminal_labels: u8,
}

/// A request the fast path can answer.
#[derive(Debug)]
struct Question {
    key: CodeKey,
    qtype: u16,
    /// Where the question ends in the request.
    end: usize,
    /// Where the origin's labels start in the request (for compression pointers).
    origin_at: usize,
    /// The requester's EDNS payload size, when it sent an OPT.
    edns_payload: Option<u16>,
    /// Where the data of its COOKIE option is in the request, if it sent one.
    cookie: Option<(usize, usize)>,
    /// The OPT's DO bit: the requester wants DNSSEC records.
    dnssec_ok: bool,
}

/// What a request's cookie gets in the answer: the client cookie back with a fresh server
/// cookie (RFC 7873 §5.2).
struct CookieAnswer<'a> {
    secret: &'a CookieSecret,
    client_cookie: [u8; 8],
    src: std::net::IpAddr,
    now: u64,
}

impl FastPath {
    pub fn new(zone: &Zone) -> Self {
        let origin = zone.origin().to_lowercase().to_bytes().unwrap_or_default();
        let soa = zone.soa_record(0);
        let (mut soa_names, mut soa_timers) = (Vec::new(), [0u8; 16]);
        if let RData::SOA(soa) = &soa.data {
            for name in [&soa.mname, &soa.rname] {
                soa_names.extend(name.to_bytes().unwrap_or_default());
            }
            let timers = [
                soa.refresh as u32,
                soa.retry as u32,
                soa.expire as u32,
                soa.minimum,
            ];
            for (i, t) in timers.iter().enumerate() {
                soa_timers[i * 4..i * 4 + 4].copy_from_slice(&t.to_be_bytes());
            }
        }
        Self {
            origin,
            soa_names,
            soa_timers,
            negative_ttl: zone.negative_ttl(),
            terminal_labels: zone.origin().num_labels() + 1,
        }
    }

    /// Answers `request` into `out` if it is one of the common cases and the answer fits
    /// the requester's UDP size; `rate_limit` is asked only then, once, and told whether
    /// the asker proved its address (a valid server cookie): the exemption is its rule.
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &self,
        request: &[u8],
        view: &View,
        now: u64,
        src: std::net::IpAddr,
        cookies: &CookieSecret,
        rate_limit: impl FnOnce(bool) -> Verdict,
        out: &mut Vec<u8>,
    ) -> Fast {
        let Some(q) = self.parse(request) else {
            return Fast::Declined;
        };
        // The answer is decided as the full path decides it; what only the full path can
        // write (signed negative answers, signatures made on demand, not ready) goes there.
        let plan = plan::terminal(view, q.key, q.qtype != TYPE_A, q.dnssec_ok, now);
        let (count, rrsig) = match &plan {
            TerminalPlan::Addresses { count, rrsig, .. } => (*count, rrsig.as_ref()),
            TerminalPlan::Negative { .. } => (0, None),
            TerminalPlan::General | TerminalPlan::NotReady => return Fast::Declined,
        };
        let (cookie, proven) = match q.cookie.map(|(from, to)| &request[from..to]) {
            None => (None, false),
            Some(data) => match cookies.check(Some(data), src, now) {
                CookieState::Valid(client_cookie) => (Some(client_cookie), true),
                CookieState::ClientOnly(client_cookie) => (Some(client_cookie), false),
                // Lengths were checked by `parse`; the full path answers FORMERR.
                CookieState::Absent | CookieState::Malformed => return Fast::Declined,
            },
        };
        let cookie = cookie.map(|client_cookie| CookieAnswer {
            secret: cookies,
            client_cookie,
            src,
            now,
        });
        let cookie = cookie.as_ref();
        let rrsig_size = rrsig.map_or(0, |_| 12 + 18 + self.origin.len() + 64);
        if self.size(&q, count) + rrsig_size > q.udp_limit() {
            // The full path truncates it (TC), and the client asks again over TCP.
            return Fast::Declined;
        }
        out.clear();
        let verdict = rate_limit(proven);
        match verdict {
            Verdict::Answer => {}
            Verdict::Drop => return Fast::Dropped,
            Verdict::Slip => {
                // Empty and truncated, with the RCODE the answer has (as the full path's).
                let rcode = match plan {
                    TerminalPlan::Negative { exists: false } => Rcode::NxDomain,
                    _ => Rcode::NoError,
                };
                self.header(request, &q, out, rcode, true, 0, 0);
                self.question_and_opt(request, &q, cookie, out, |_| {});
                return Fast::Answered { qtype: q.qtype };
            }
        }
        if let TerminalPlan::Negative { exists } = plan {
            let rcode = if exists {
                Rcode::NoError
            } else {
                Rcode::NxDomain
            };
            self.negative(request, &q, cookie, view.serial(), rcode, out);
            return Fast::Answered { qtype: q.qtype };
        }
        let TerminalPlan::Addresses {
            addresses,
            aaaa,
            ttl,
            ..
        } = plan
        else {
            return Fast::Declined;
        };
        let answers = count as u16 + u16::from(rrsig.is_some());
        self.header(request, &q, out, Rcode::NoError, false, answers, 0);
        self.question_and_opt(request, &q, cookie, out, |out| {
            let mut record = |rdata: &[u8]| {
                out.extend_from_slice(&[0xc0, HEADER as u8]);
                out.extend_from_slice(&q.qtype.to_be_bytes());
                out.extend_from_slice(&CLASS_IN.to_be_bytes());
                out.extend_from_slice(&ttl.to_be_bytes());
                out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                out.extend_from_slice(rdata);
            };
            if aaaa {
                addresses.v6.addrs.iter().for_each(|a| record(&a.octets()));
            } else {
                addresses.v4.addrs.iter().for_each(|a| record(&a.octets()));
            }
            if let Some(sig) = rrsig {
                self.rrsig(q.qtype, ttl, sig, out);
            }
        });
        Fast::Answered { qtype: q.qtype }
    }

    /// The RRSIG record over the answer's RRset (RFC 4034 §3.1): owner the question's name,
    /// the signer's name written out (never compressed, §3.1.7).
    fn rrsig(&self, qtype: u16, ttl: u32, sig: &zones::dnssec::Sig, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xc0, HEADER as u8]);
        out.extend_from_slice(&TYPE_RRSIG.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        let length = 18 + self.origin.len() + sig.signature.len();
        out.extend_from_slice(&(length as u16).to_be_bytes());
        out.extend_from_slice(&qtype.to_be_bytes());
        out.push(ALGORITHM_ECDSAP256SHA256);
        out.push(self.terminal_labels);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&sig.expiration.to_be_bytes());
        out.extend_from_slice(&sig.inception.to_be_bytes());
        out.extend_from_slice(&sig.key_tag.to_be_bytes());
        out.extend_from_slice(&self.origin);
        out.extend_from_slice(&sig.signature);
    }

    /// The answer's size in bytes: `count` addresses, or the SOA when there are none.
    fn size(&self, q: &Question, count: usize) -> usize {
        let rdata = if q.qtype == TYPE_A { 4 } else { 16 };
        let records = if count == 0 {
            12 + self.soa_names.len() + 4 + self.soa_timers.len()
        } else {
            count * (12 + rdata)
        };
        let opt = match (q.edns_payload, q.cookie) {
            (None, _) => 0,
            (Some(_), None) => 11,
            // The option: code, length, client cookie and server cookie.
            (Some(_), Some(_)) => 11 + 4 + cookie::ANSWER_LEN,
        };
        q.end + records + opt
    }

    /// NXDOMAIN or NODATA: no answers, the SOA in the authority section.
    fn negative(
        &self,
        request: &[u8],
        q: &Question,
        cookie: Option<&CookieAnswer>,
        serial: u32,
        rcode: Rcode,
        out: &mut Vec<u8>,
    ) {
        self.header(request, q, out, rcode, false, 0, 1);
        self.question_and_opt(request, q, cookie, out, |out| {
            let pointer = 0xc000 | q.origin_at as u16;
            out.extend_from_slice(&pointer.to_be_bytes());
            out.extend_from_slice(&TYPE_SOA.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&self.negative_ttl.to_be_bytes());
            let length = self.soa_names.len() + 4 + self.soa_timers.len();
            out.extend_from_slice(&(length as u16).to_be_bytes());
            out.extend_from_slice(&self.soa_names);
            out.extend_from_slice(&serial.to_be_bytes());
            out.extend_from_slice(&self.soa_timers);
        });
    }

    /// The response header: RFC 1035 §4.1.1, with AA set and RD and CD copied.
    #[allow(clippy::too_many_arguments)]
    fn header(
        &self,
        request: &[u8],
        q: &Question,
        out: &mut Vec<u8>,
        rcode: Rcode,
        truncated: bool,
        answers: u16,
        authorities: u16,
    ) {
        let rd = request[2] & 0x01;
        let cd = request[3] & 0x10;
        let tc = if truncated { 0x02 } else { 0 };
        out.extend_from_slice(&request[..2]);
        out.push(0x80 | 0x04 | tc | rd);
        out.push(cd | rcode as u8);
        let additionals = u16::from(q.edns_payload.is_some());
        for count in [1, answers, authorities, additionals] {
            out.extend_from_slice(&count.to_be_bytes());
        }
    }

    /// The question as sent, the records `body` writes, then the OPT if one was asked for.
    fn question_and_opt(
        &self,
        request: &[u8],
        q: &Question,
        cookie: Option<&CookieAnswer>,
        out: &mut Vec<u8>,
        body: impl FnOnce(&mut Vec<u8>),
    ) {
        out.extend_from_slice(&request[HEADER..q.end]);
        body(out);
        if let Some(asked) = q.edns_payload {
            // RFC 6891 §6.1: root owner, our payload size, version 0; the DO bit copied
            // from the request (RFC 3225 §3), no other flag.
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&udp_payload(asked).to_be_bytes());
            out.extend_from_slice(&[0, 0, if q.dnssec_ok { 0x80 } else { 0 }, 0]);
            match cookie {
                None => out.extend_from_slice(&[0, 0]),
                Some(c) => {
                    let length = (4 + cookie::ANSWER_LEN) as u16;
                    out.extend_from_slice(&length.to_be_bytes());
                    out.extend_from_slice(&cookie::OPTION_CODE.to_be_bytes());
                    out.extend_from_slice(&(cookie::ANSWER_LEN as u16).to_be_bytes());
                    c.secret.answer_into(&c.client_cookie, c.src, c.now, out);
                }
            }
        }
    }

    /// The question, if the request is one the fast path answers.
    fn parse(&self, m: &[u8]) -> Option<Question> {
        let u16_at = |i: usize| m.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        // A query (QR 0, opcode 0, TC 0), RCODE 0, one question, no answers or authorities.
        if m.len() <= HEADER || m[2] & 0xfa != 0 || m[3] & 0x0f != 0 {
            return None;
        }
        let (qd, an, ns, ar) = (u16_at(4)?, u16_at(6)?, u16_at(8)?, u16_at(10)?);
        if qd != 1 || an != 0 || ns != 0 || ar > 1 {
            return None;
        }
        let code_len = usize::from(m[HEADER]);
        let code = m.get(HEADER + 1..HEADER + 1 + code_len)?;
        let key = CodeKey::from_digits(code)?;
        let origin_at = HEADER + 1 + code_len;
        let origin = m.get(origin_at..origin_at + self.origin.len())?;
        if !origin.eq_ignore_ascii_case(&self.origin) {
            return None;
        }
        let at = origin_at + self.origin.len();
        let (qtype, qclass) = (u16_at(at)?, u16_at(at + 2)?);
        if !matches!(qtype, TYPE_A | TYPE_AAAA) || qclass != CLASS_IN {
            return None;
        }
        let end = at + 4;
        let (edns_payload, cookie, dnssec_ok) = match ar {
            0 if end == m.len() => (None, None, false),
            1 => {
                let opt = opt(&m[end..])?;
                (
                    Some(opt.payload),
                    opt.cookie.map(|(from, to)| (end + from, end + to)),
                    opt.dnssec_ok,
                )
            }
            _ => return None,
        };
        Some(Question {
            key,
            qtype,
            end,
            origin_at,
            edns_payload,
            cookie,
            dnssec_ok,
        })
    }
}

/// The payload size of an OPT record that is the whole of `rr` (root owner, version 0),
/// and where the data of its one COOKIE option is within `rr`, if it has one. Any other
/// option, or a COOKIE of a length RFC 7873 does not allow, takes the full path.
fn opt(rr: &[u8]) -> Option<Opt> {
    let [
        0,
        t1,
        t2,
        c1,
        c2,
        _ext_rcode,
        version,
        flags1,
        _flags2,
        l1,
        l2,
        options @ ..,
    ] = rr
    else {
        return None;
    };
    if u16::from_be_bytes([*t1, *t2]) != TYPE_OPT || *version != 0 {
        return None;
    }
    let payload = u16::from_be_bytes([*c1, *c2]);
    if usize::from(u16::from_be_bytes([*l1, *l2])) != options.len() {
        return None;
    }
    let cookie = match options {
        [] => None,
        [o1, o2, n1, n2, data @ ..] => {
            let (code, len) = (
                u16::from_be_bytes([*o1, *o2]),
                usize::from(u16::from_be_bytes([*n1, *n2])),
            );
            if code != cookie::OPTION_CODE || len != data.len() || !cookie::well_formed(len) {
                return None;
            }
            // The data starts after the fixed part (11 bytes) and the option header (4).
            Some((15, 15 + len))
        }
        _ => return None,
    };
    Some(Opt {
        payload,
        cookie,
        dnssec_ok: flags1 & 0x80 != 0,
    })
}

/// What the fast path reads of a request's OPT record.
struct Opt {
    payload: u16,
    /// Where its COOKIE option's data is, within the record.
    cookie: Option<(usize, usize)>,
    /// The DO bit (RFC 3225), the top bit of the flags.
    dnssec_ok: bool,
}

impl Question {
    /// The largest UDP answer: 512 bytes without EDNS (RFC 1035 §4.2.1), else the asked
    /// size within our limits (RFC 6891 §6.2.5), as the full path computes it.
    fn udp_limit(&self) -> usize {
        usize::from(self.edns_payload.map_or(512, udp_payload))
    }
}

#[derive(Debug, Clone, Copy)]
enum Rcode {
    NoError = 0,
    NxDomain = 3,
}
