//! DNS Cookies, server side (RFC 7873, with RFC 9018's server cookie layout).
//!
//! A client sends an 8-byte client cookie; the server answers with the client cookie and a
//! server cookie bound to it and to the client's address:
//!
//! ```text
//! server cookie = version (1) | reserved (3) | timestamp (4) | MAC (8)
//! MAC = first 8 bytes of HMAC-SHA256(secret, client cookie | version | reserved | timestamp | client IP)
//! ```
//!
//! A request bearing a server cookie we made for it, less than an hour old, proves its source
//! address is real (an off-path spoofer never sees our answers), so it skips response rate
//! limiting. The secret is random per process: a restart only makes clients fetch a new one.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// EDNS option code of COOKIE.
pub const OPTION_CODE: u16 = 10;
const VERSION: u8 = 1;
/// The length of the COOKIE option data in a response: client cookie and server cookie.
pub const ANSWER_LEN: usize = 24;
/// Server cookies older than this are not trusted (RFC 9018 §4.3: one hour).
const MAX_AGE: u64 = 3600;
/// Nor those from more than this far in the future (clock steps).
const MAX_FUTURE: u64 = 300;

/// What a request's COOKIE option says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieState {
    /// No COOKIE option.
    Absent,
    /// A client cookie, with no server cookie or one we did not make (or too old).
    ClientOnly([u8; 8]),
    /// A client cookie and our valid server cookie for it.
    Valid([u8; 8]),
    /// The option's length is not 8 or 16 to 40: FORMERR (RFC 7873 §5.2.2).
    Malformed,
}

/// True for a COOKIE option length that is not [`CookieState::Malformed`].
pub fn well_formed(len: usize) -> bool {
    len == 8 || (16..=40).contains(&len)
}

/// The per-process secret.
pub struct CookieSecret([u8; 32]);

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSecret(<secret>)")
    }
}

impl CookieSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the operating system's random generator works");
        Self(secret)
    }

    /// Classifies the COOKIE option data (if any) of a request from `client`.
    pub fn check(&self, option: Option<&[u8]>, client: IpAddr, now: u64) -> CookieState {
        let Some(data) = option else {
            return CookieState::Absent;
        };
        if !well_formed(data.len()) {
            return CookieState::Malformed;
        }
        let mut client_cookie = [0u8; 8];
        client_cookie.copy_from_slice(&data[..8]);
        let server = &data[8..];
        let valid = server.len() == 16
            && server[0] == VERSION
            && {
                let stamp = u64::from(u32::from_be_bytes([
                    server[4], server[5], server[6], server[7],
                ]));
                stamp + MAX_AGE >= now && stamp <= now + MAX_FUTURE
            }
            && self.verify(&client_cookie, &server[..8], client, &server[8..]);
        if valid {
            CookieState::Valid(client_cookie)
        } else {
            CookieState::ClientOnly(client_cookie)
        }
    }

    /// The COOKIE option data of a response: the client cookie and a fresh server cookie.
    pub fn answer(&self, client_cookie: &[u8; 8], client: IpAddr, now: u64) -> Vec<u8> {
        let mut data = Vec::with_capacity(ANSWER_LEN);
        self.answer_into(client_cookie, client, now, &mut data);
        data
    }

    /// The same, appended to `out` ([`ANSWER_LEN`] bytes; no allocation when `out` has room).
    pub fn answer_into(
        &self,
        client_cookie: &[u8; 8],
        client: IpAddr,
        now: u64,
        out: &mut Vec<u8>,
    ) {
        let mut head = [0u8; 8];
        head[0] = VERSION;
        head[4..].copy_from_slice(&(now as u32).to_be_bytes());
        out.extend_from_slice(client_cookie);
        out.extend_from_slice(&head);
        out.extend_from_slice(
            &self
                .mac(client_cookie, &head, client)
                .finalize()
                .into_bytes()[..8],
        );
    }

    fn mac(&self, client_cookie: &[u8; 8], head: &[u8], client: IpAddr) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(client_cookie);
        mac.update(head);
        match client {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac
    }

    fn verify(&self, client_cookie: &[u8; 8], head: &[u8], client: IpAddr, tag: &[u8]) -> bool {
        // Constant-time comparison of the truncated MAC.
        self.mac(client_cookie, head, client)
            .verify_truncated_left(tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_cookie_is_valid_for_its_client_only_and_for_an_hour() {
        let secret = CookieSecret::generate();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let cc = [7u8; 8];
        let answer = secret.answer(&cc, client, 1_000_000);
        assert_eq!(answer.len(), 24);
        assert_eq!(
            secret.check(Some(&answer), client, 1_000_010),
            CookieState::Valid(cc)
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            secret.check(Some(&answer), other, 1_000_010),
            CookieState::ClientOnly(cc)
        );
        assert_eq!(
            secret.check(Some(&answer), client, 1_000_000 + 3601),
            CookieState::ClientOnly(cc)
        );
        let mut forged = answer.clone();
        forged[23] ^= 1;
        assert_eq!(
            secret.check(Some(&forged), client, 1_000_010),
            CookieState::ClientOnly(cc)
        );
        assert_eq!(
            CookieSecret::generate().check(Some(&answer), client, 1_000_010),
            CookieState::ClientOnly(cc)
        );
    }

    #[test]
    fn lengths_are_checked() {
        let secret = CookieSecret::generate();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(secret.check(None, client, 0), CookieState::Absent);
        assert_eq!(
            secret.check(Some(&[1; 8]), client, 0),
            CookieState::ClientOnly([1; 8])
        );
        for bad in [0usize, 7, 9, 15, 41] {
            assert_eq!(
                secret.check(Some(&vec![1; bad]), client, 0),
                CookieState::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        assert_eq!(
            format!("{:?}", CookieSecret::generate()),
            "CookieSecret(<secret>)"
        );
    }
}
