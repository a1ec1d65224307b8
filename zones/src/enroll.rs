//! Enrollment: a terminal obtains its TSIG key with a customer's token, and no secret
//! crosses the wire. Both sides of the exchange live here, so that the directory and the
//! updater cannot disagree on a byte of it.
//!
//! # The token
//! `nameserver token create --kid KID` prints `KID.ID.SECRET`: the customer id, a 16-hex-digit
//! token id, and 32 random bytes in unpadded base64url. The directory keeps only the
//! token's *verifier*, `SHA-256("dial-enroll-token-v1" || 0x00 || SECRET)`, never the text.
//! The terminal uses the verifier as an HMAC-SHA256 TSIG key named
//! `ID.KID._enroll.ZONE.`; the SECRET itself is never sent, and neither is the verifier.
//!
//! # The exchange (one RFC 2136 UPDATE and its answer)
//! 1. The terminal makes a fresh X25519 key pair and sends an UPDATE for ZONE whose update
//!    section adds one record, `_enroll.ZONE. 0 IN TXT "v=1" "mid=MID" "pub=BASE64"`, plus
//!    `"code=CODE"` when it asks for a code. MID follows the MID rule
//!    ([`crate::identity::Mid::derive`]) with the token's KID. The message is signed with
//!    the token's TSIG key (RFC 8945).
//! 2. The directory verifies the TSIG, checks the token (known, not revoked, not expired,
//!    uses left, code in its range) and the customer (not suspended, under its terminal
//!    limit), makes its own fresh X25519 key pair, derives the terminal's secret (below),
//!    stores the terminal durably, and answers NOERROR with
//!    `_enroll.ZONE. 0 IN TXT "v=1" "code=CODE" "key=KEYNAME" "alg=hmac-sha256" "pub=BASE64"`
//!    in the additional section, signed with the token's key.
//! 3. The terminal verifies the answer's TSIG and derives the same secret.
//!
//! The terminal's secret is HKDF-SHA256 (RFC 5869) with
//! `salt = the token's verifier`, `IKM = X25519(terminal, directory)` and
//! `info = "dial-enroll-v1" || 0x00 || KEYNAME || 0x00 || MID || 0x00 || terminal public || directory public`,
//! 32 bytes. KEYNAME is the terminal's key name as the answer gives it (lower case, with the
//! final dot). An eavesdropper sees two public keys and MACs: without the X25519 private
//! halves, which never leave either side and are used once, it learns no key. A replay of
//! the request is refused (the terminal's replay memory holds its MAC), and would yield a
//! key no one but the directory could derive anyway.
//!
//! Every failure of the token (unknown, wrong, expired, revoked, used up, or signed at a
//! time too far from the directory's) gets the same answer: NOTAUTH with an unsigned TSIG
//! BADKEY. Refusals after the token is proven (customer suspended, terminal limit, code
//! taken) are REFUSED, signed, with an Extended DNS Error (RFC 8914) whose text says why.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hickory_proto::rr::Name;
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{CallingCode, Kid, Mid, decode_hex, encode_hex};
use crate::key::{Algorithm, Secret, TsigKey};

/// The label under the zone that enrollment uses: the TXT owner and the token keys' parent.
pub const LABEL: &str = "_enroll";
/// The protocol version the TXT strings carry.
pub const VERSION: &str = "1";
/// The algorithm of token keys and of enrolled terminals' keys.
pub const ALGORITHM: Algorithm = Algorithm::HmacSha256;

const VERIFIER_CONTEXT: &[u8] = b"dial-enroll-token-v1\0";
const DERIVE_CONTEXT: &[u8] = b"dial-enroll-v1\0";

/// Why enrollment text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "token {0:?} is not valid: give it as `nameserver token create` printed it (KID.ID.SECRET)"
    )]
    Token(String),
    #[error("token id {0:?} is not valid: 16 hex digits, as `nameserver token list` shows")]
    TokenId(String),
    #[error(
        "code range {0:?} is not valid: FIRST-LAST, two codes of the same number of digits, FIRST not above LAST"
    )]
    Range(String),
    #[error("the enrollment message is not valid: {0}")]
    Message(String),
    #[error("key agreement failed (a public key of the wrong form)")]
    Agreement,
    #[error("cannot draw random bytes: {0}")]
    Random(String),
}

/// A token's id: 8 random bytes in hex. Not secret: it names the token in lists and logs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenId(String);

impl TokenId {
    pub fn generate() -> Result<Self, EnrollError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| EnrollError::Random(e.to_string()))?;
        Ok(Self(encode_hex(&bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TokenId {
    type Err = EnrollError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if lower.len() == 16 && decode_hex(&lower).is_some() {
            Ok(Self(lower))
        } else {
            Err(EnrollError::TokenId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for TokenId {
    type Error = EnrollError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TokenId> for String {
    fn from(id: TokenId) -> String {
        id.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.0)
    }
}

/// What the directory keeps of a token: a hash of its secret, usable as the HMAC key of the
/// token's TSIG but not as the token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier(pub [u8; 32]);

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(<secret>)")
    }
}

/// A token as the customer holds it: `KID.ID.SECRET`. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub kid: Kid,
    pub id: TokenId,
    secret: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}.{}.<secret>)", self.kid, self.id)
    }
}

impl Token {
    /// A new token of customer `kid`, from the operating system's random source.
    pub fn generate(kid: Kid) -> Result<Self, EnrollError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| EnrollError::Random(e.to_string()))?;
        Ok(Self {
            kid,
            id: TokenId::generate()?,
            secret,
        })
    }

    /// The one line `token create` prints; shown once.
    pub fn to_text(&self) -> String {
        format!(
            "{}.{}.{}",
            self.kid,
            self.id,
            URL_SAFE_NO_PAD.encode(self.secret)
        )
    }

    /// What the directory stores of it.
    pub fn verifier(&self) -> Verifier {
        let mut hash = Sha256::new();
        hash.update(VERIFIER_CONTEXT);
        hash.update(self.secret);
        Verifier(hash.finalize().into())
    }

    /// The TSIG key the terminal signs its enrollment with.
    pub fn tsig_key(&self, zone: &Name) -> TsigKey {
        token_key(&self.id, &self.kid, &self.verifier(), zone)
    }
}

impl FromStr for Token {
    type Err = EnrollError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The error never repeats the text: it holds the secret.
        let bad = || EnrollError::Token("<given>".into());
        let mut parts = s.trim().split('.');
        let (Some(kid), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let kid = kid.parse().map_err(|_| bad())?;
        let id = id.parse().map_err(|_| bad())?;
        let secret: [u8; 32] = URL_SAFE_NO_PAD
            .decode(secret)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        Ok(Self { kid, id, secret })
    }
}

/// The TSIG key of token `id` of customer `kid`, whose verifier is `verifier`.
pub fn token_key(id: &TokenId, kid: &Kid, verifier: &Verifier, zone: &Name) -> TsigKey {
    TsigKey {
        name: token_key_name(id, kid, zone),
        algorithm: ALGORITHM,
        secret: Secret::from_bytes(verifier.0.to_vec()),
    }
}

/// `ID.KID._enroll.ZONE.`, lower case.
pub fn token_key_name(id: &TokenId, kid: &Kid, zone: &Name) -> String {
    let zone = zone.to_lowercase().to_ascii();
    let zone = zone.trim_end_matches('.');
    format!("{id}.{kid}.{LABEL}.{zone}.")
}

/// The token id and KID of a token key name under `zone`, or `None` when it is not one.
pub fn parse_token_key_name(name: &str, zone: &Name) -> Option<(TokenId, Kid)> {
    let zone = zone.to_lowercase().to_ascii();
    let zone = zone.trim_end_matches('.');
    let name = name.trim_end_matches('.');
    let rest = name.strip_suffix(zone)?.strip_suffix('.')?;
    let rest = rest.strip_suffix(LABEL)?.strip_suffix('.')?;
    let (id, kid) = rest.split_once('.')?;
    Some((id.parse().ok()?, kid.parse().ok()?))
}

/// The owner of the enrollment TXT records: `_enroll.ZONE.`.
pub fn owner(zone: &Name) -> Name {
    Name::from_ascii(LABEL)
        .and_then(|label| label.append_domain(zone))
        .expect("_enroll under a valid zone is a valid name")
}

/// The codes a token may enroll: FIRST to LAST, both of the same number of digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRange {
    pub first: CallingCode,
    pub last: CallingCode,
}

impl CodeRange {
    pub fn contains(&self, code: &CallingCode) -> bool {
        let c = code.as_str();
        c.len() == self.first.as_str().len() && self.first.as_str() <= c && c <= self.last.as_str()
    }

    /// How many codes it holds.
    pub fn len(&self) -> u64 {
        self.value(&self.last) - self.value(&self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The code `offset` places after FIRST (`offset < len`).
    pub fn nth(&self, offset: u64) -> CallingCode {
        let digits = self.first.as_str().len();
        let value = self.value(&self.first) + offset;
        format!("{value:0digits$}")
            .parse()
            .expect("within the range, a valid code")
    }

    fn value(&self, code: &CallingCode) -> u64 {
        code.as_str().parse().expect("a code is digits")
    }
}

impl FromStr for CodeRange {
    type Err = EnrollError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EnrollError::Range(s.to_owned());
        let (first, last) = s.split_once('-').ok_or_else(bad)?;
        let first: CallingCode = first.trim().parse().map_err(|_| bad())?;
        let last: CallingCode = last.trim().parse().map_err(|_| bad())?;
        if first.as_str().len() != last.as_str().len() || first > last {
            return Err(bad());
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for CodeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// What the terminal asks for: the TXT strings of its UPDATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub mid: Mid,
    pub code: Option<CallingCode>,
    pub public: [u8; 32],
}

impl Request {
    pub fn to_strings(&self) -> Vec<String> {
        let mut strings = vec![
            format!("v={VERSION}"),
            format!("mid={}", self.mid),
            format!("pub={}", STANDARD.encode(self.public)),
        ];
        if let Some(code) = &self.code {
            strings.push(format!("code={code}"));
        }
        strings
    }

    pub fn from_strings<S: AsRef<str>>(strings: &[S]) -> Result<Self, EnrollError> {
        let fields = Fields::read(strings)?;
        Ok(Self {
            mid: fields
                .get("mid")?
                .parse()
                .map_err(|e: crate::identity::IdentityError| EnrollError::Message(e.to_string()))?,
            code: fields
                .optional("code")
                .map(|c| c.parse())
                .transpose()
                .map_err(|e: crate::identity::IdentityError| EnrollError::Message(e.to_string()))?,
            public: fields.public()?,
        })
    }
}

/// What the directory answers: the TXT strings of its answer's additional section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub code: CallingCode,
    pub key_name: String,
    pub public: [u8; 32],
}

impl Answer {
    pub fn to_strings(&self) -> Vec<String> {
        vec![
            format!("v={VERSION}"),
            format!("code={}", self.code),
            format!("key={}", self.key_name),
            format!("alg={}", ALGORITHM.as_str()),
            format!("pub={}", STANDARD.encode(self.public)),
        ]
    }

    pub fn from_strings<S: AsRef<str>>(strings: &[S]) -> Result<Self, EnrollError> {
        let fields = Fields::read(strings)?;
        let alg = fields.get("alg")?;
        if alg.parse::<Algorithm>().ok() != Some(ALGORITHM) {
            return Err(EnrollError::Message(format!("algorithm {alg:?}")));
        }
        Ok(Self {
            code: fields
                .get("code")?
                .parse()
                .map_err(|e: crate::identity::IdentityError| EnrollError::Message(e.to_string()))?,
            key_name: crate::key::normalise_name(fields.get("key")?)
                .map_err(|e| EnrollError::Message(e.to_string()))?,
            public: fields.public()?,
        })
    }
}

/// `name=value` strings of one version.
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    fn read<S: AsRef<str>>(strings: &'a [S]) -> Result<Self, EnrollError> {
        let mut fields = Vec::with_capacity(strings.len());
        for s in strings {
            let (name, value) = s.as_ref().split_once('=').ok_or_else(|| {
                EnrollError::Message(format!("{:?} is not name=value", s.as_ref()))
            })?;
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(EnrollError::Message(format!("{name} given twice")));
            }
            fields.push((name, value));
        }
        let fields = Self(fields);
        match fields.get("v")? {
            VERSION => Ok(fields),
            v => Err(EnrollError::Message(format!(
                "version {v:?}, not {VERSION}"
            ))),
        }
    }

    fn optional(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn get(&self, name: &str) -> Result<&'a str, EnrollError> {
        self.optional(name)
            .ok_or_else(|| EnrollError::Message(format!("no {name}=")))
    }

    fn public(&self) -> Result<[u8; 32], EnrollError> {
        STANDARD
            .decode(self.get("pub")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| EnrollError::Message("pub= is not 32 bytes of base64".into()))
    }
}

/// One side's X25519 key pair, used once: ring's ephemeral keys cannot be kept or reused.
pub struct Ephemeral {
    private: EphemeralPrivateKey,
    public: [u8; 32],
}

impl fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ephemeral(<private>)")
    }
}

impl Ephemeral {
    pub fn generate() -> Result<Self, EnrollError> {
        let rng = ring::rand::SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&X25519, &rng)
            .map_err(|_| EnrollError::Random("X25519 key".into()))?;
        let public = private
            .compute_public_key()
            .map_err(|_| EnrollError::Agreement)?
            .as_ref()
            .try_into()
            .map_err(|_| EnrollError::Agreement)?;
        Ok(Self { private, public })
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The terminal's secret, from our private half and the peer's public key (see the
    /// module's documentation for the derivation). `client` and `server` are the two public
    /// keys, in that order, whichever side we are.
    pub fn derive(self, peer: &[u8; 32], context: &Derivation<'_>) -> Result<Secret, EnrollError> {
        let peer = UnparsedPublicKey::new(&X25519, peer);
        agreement::agree_ephemeral(self.private, &peer, |shared| context.secret(shared))
            .map_err(|_| EnrollError::Agreement)
    }
}

/// What the derived secret is bound to.
#[derive(Debug)]
pub struct Derivation<'a> {
    pub verifier: &'a Verifier,
    pub key_name: &'a str,
    pub mid: &'a Mid,
    pub client: &'a [u8; 32],
    pub server: &'a [u8; 32],
}

impl Derivation<'_> {
    fn secret(&self, shared: &[u8]) -> Secret {
        let mut info = Vec::with_capacity(128);
        info.extend_from_slice(DERIVE_CONTEXT);
        info.extend_from_slice(self.key_name.as_bytes());
        info.push(0);
        info.extend_from_slice(self.mid.as_str().as_bytes());
        info.push(0);
        info.extend_from_slice(self.client);
        info.extend_from_slice(self.server);
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &self.verifier.0);
        let prk = salt.extract(shared);
        let info = [info.as_slice()];
        let okm = prk
            .expand(&info, hkdf::HKDF_SHA256)
            .expect("32 bytes is within HKDF-SHA256's limit");
        let mut out = vec![0u8; 32];
        okm.fill(&mut out)
            .expect("32 bytes is within HKDF-SHA256's limit");
        Secret::from_bytes(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Name {
        Name::from_ascii("dial.example.").unwrap()
    }

    #[test]
    fn a_token_reads_back_and_never_shows_its_secret() {
        let token = Token::generate("acme".parse().unwrap()).unwrap();
        let text = token.to_text();
        let read: Token = text.parse().unwrap();
        assert_eq!(read, token);
        let secret = text.rsplit('.').next().unwrap();
        assert!(!format!("{token:?}").contains(secret));
        assert!(!format!("{:?}", token.verifier()).contains(secret));
        let error = "acme.0011223344556677.short".parse::<Token>().unwrap_err();
        assert!(!error.to_string().contains("short"), "{error}");
        assert_ne!(token.verifier().0.to_vec(), token.secret.to_vec());
    }

    #[test]
    fn token_key_names_parse_back_only_under_the_zone() {
        let token = Token::generate("acme".parse().unwrap()).unwrap();
        let key = token.tsig_key(&zone());
        let (id, kid) = parse_token_key_name(&key.name, &zone()).unwrap();
        assert_eq!((id, kid.as_str()), (token.id.clone(), "acme"));
        let other = Name::from_ascii("other.example.").unwrap();
        assert_eq!(parse_token_key_name(&key.name, &other), None);
        assert_eq!(
            parse_token_key_name("5551234.3c22fb010203.acme.key.dial.example.", &zone()),
            None
        );
    }

    #[test]
    fn both_sides_derive_the_same_secret_and_a_stranger_does_not() {
        let token = Token::generate("acme".parse().unwrap()).unwrap();
        let verifier = token.verifier();
        let mid: Mid = "3c22fb010203".parse().unwrap();
        let (client, server) = (
            Ephemeral::generate().unwrap(),
            Ephemeral::generate().unwrap(),
        );
        let (cp, sp) = (client.public(), server.public());
        let context = Derivation {
            verifier: &verifier,
            key_name: "5551234.3c22fb010203.acme.key.dial.example.",
            mid: &mid,
            client: &cp,
            server: &sp,
        };
        let ours = client.derive(&sp, &context).unwrap();
        let theirs = server.derive(&cp, &context).unwrap();
        assert_eq!(ours, theirs);
        let stranger = Ephemeral::generate().unwrap();
        assert_ne!(stranger.derive(&sp, &context).unwrap(), ours);
        // A low-order public key gives no secret.
        let zero = Ephemeral::generate().unwrap();
        assert_eq!(zero.derive(&[0; 32], &context), Err(EnrollError::Agreement));
    }

    #[test]
    fn request_and_answer_strings_round_trip() {
        let request = Request {
            mid: "3c22fb010203".parse().unwrap(),
            code: Some("5551234".parse().unwrap()),
            public: [7; 32],
        };
        assert_eq!(
            Request::from_strings(&request.to_strings()).unwrap(),
            request
        );
        let answer = Answer {
            code: "5551234".parse().unwrap(),
            key_name: "5551234.3c22fb010203.acme.key.dial.example.".into(),
            public: [9; 32],
        };
        assert_eq!(Answer::from_strings(&answer.to_strings()).unwrap(), answer);
        assert!(Request::from_strings(&["v=2", "mid=3c22fb010203", "pub=AA"]).is_err());
        assert!(Request::from_strings(&["v=1", "v=1"]).is_err());
    }

    #[test]
    fn code_ranges_hold_codes_of_their_length() {
        let range: CodeRange = "5550000-5550099".parse().unwrap();
        assert!(range.contains(&"5550042".parse().unwrap()));
        assert!(!range.contains(&"5550100".parse().unwrap()));
        assert!(!range.contains(&"555004".parse().unwrap()));
        assert_eq!(range.len(), 100);
        assert_eq!(range.nth(7).as_str(), "5550007");
        assert!("0999-100".parse::<CodeRange>().is_err());
        assert!("200-100".parse::<CodeRange>().is_err());
    }
}
