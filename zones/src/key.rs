//! TSIG keys (RFC 8945): names, algorithms, secrets, and BIND's key-file format.
//!
//! A terminal's key is named `<code>.<mid>.<kid>.key.<zone>`, so the key itself says which
//! calling code, machine and customer it is bound to ([`TerminalKeyName`]). The same files
//! are read by `nsupdate -k`, `dig -k`, the updater and the nameserver:
//!
//! ```text
//! key "5551234.3f9a0c1d22e4b7a8.acme-0042.key.dial.example." {
//!         algorithm hmac-sha256;
//!         secret "base64...";
//! };
//! ```
//!
//! Secrets never reach logs: [`Secret`] prints as `<secret>` in `Debug`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hickory_proto::rr::Name;
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use serde::{Deserialize, Serialize};

use crate::identity::{CallingCode, Kid, Mid};

/// Why a key or key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported TSIG algorithm {0:?}: use hmac-sha256, hmac-sha384 or hmac-sha512")]
    Algorithm(String),
    #[error(
        "the key file has no `key \"NAME\" {{ ... }};` clause (BIND) nor an `ALGORITHM:NAME:SECRET` line (Knot)"
    )]
    NoKeyClause,
    #[error("the key file's key {0:?} has no `{1}` statement")]
    MissingStatement(String, &'static str),
    #[error("the key name {0:?} is not a valid domain name")]
    Name(String),
    #[error("the secret of key {0:?} is not valid base64")]
    SecretEncoding(String),
    #[error("the secret of key {0:?} is shorter than 16 bytes")]
    SecretTooShort(String),
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

/// The HMAC algorithms accepted for TSIG.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    /// The name used in key files and on the wire (without the trailing dot).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    /// Length of a full (untruncated) MAC in bytes.
    pub fn mac_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }

    /// hickory's name for the same algorithm.
    pub fn to_hickory(self) -> TsigAlgorithm {
        match self {
            Self::HmacSha256 => TsigAlgorithm::HmacSha256,
            Self::HmacSha384 => TsigAlgorithm::HmacSha384,
            Self::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }

    /// Our algorithm for hickory's, if we accept it.
    ///
    /// RFC 8945 §6: algorithm names are domain names, compared case-insensitively;
    /// hickory recognises only the lower-case spelling, so others arrive as `Unknown`.
    pub fn from_hickory(algorithm: &TsigAlgorithm) -> Option<Self> {
        match algorithm {
            TsigAlgorithm::HmacSha256 => Some(Self::HmacSha256),
            TsigAlgorithm::HmacSha384 => Some(Self::HmacSha384),
            TsigAlgorithm::HmacSha512 => Some(Self::HmacSha512),
            TsigAlgorithm::Unknown(name) => name.to_ascii().parse().ok(),
            _ => None,
        }
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(Self::HmacSha256),
            "hmac-sha384" => Ok(Self::HmacSha384),
            "hmac-sha512" => Ok(Self::HmacSha512),
            _ => Err(KeyError::Algorithm(s.to_owned())),
        }
    }
}

/// Key material. `Debug` never shows it; only [`Secret::to_base64`] does, for key files.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Length of generated secrets: 256 bits, the output size of HMAC-SHA256.
    pub const GENERATED_LEN: usize = 32;
    /// Shorter secrets are refused (RFC 8945 §6 asks for at least half the hash length).
    pub const MIN_LEN: usize = 16;

    /// A fresh random 256-bit secret from the operating system.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = vec![0u8; Self::GENERATED_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl TryFrom<String> for Secret {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        BASE64
            .decode(s.as_bytes())
            .map(Self)
            .map_err(|_| KeyError::SecretEncoding(String::new()))
    }
}

impl From<Secret> for String {
    fn from(secret: Secret) -> String {
        secret.to_base64()
    }
}

/// A named TSIG key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsigKey {
    /// Fully qualified, lower case, as text (`...key.dial.example.`).
    pub name: String,
    pub algorithm: Algorithm,
    pub secret: Secret,
}

impl TsigKey {
    /// The key's name as a DNS name.
    pub fn dns_name(&self) -> Result<Name, KeyError> {
        Name::from_ascii(&self.name).map_err(|_| KeyError::Name(self.name.clone()))
    }

    /// A hickory signer for this key with the given fudge (seconds).
    pub fn signer(&self, fudge: u16) -> Result<TSigner, KeyError> {
        TSigner::new(
            self.secret.as_bytes().to_vec(),
            self.algorithm.to_hickory(),
            self.dns_name()?,
            fudge,
        )
        .map_err(|_| KeyError::Algorithm(self.algorithm.as_str().to_owned()))
    }

    /// The key in BIND's key-file format, as `tsig-keygen` prints it.
    pub fn to_key_file(&self) -> String {
        format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            self.name,
            self.algorithm.as_str(),
            self.secret.to_base64()
        )
    }

    /// The key as Knot's tools take it (`knsupdate -k`, `kdig -k`, `-y`):
    /// `hmac-sha256:NAME:SECRET`, one line.
    pub fn to_knot_key_file(&self) -> String {
        format!(
            "{}:{}:{}\n",
            self.algorithm.as_str(),
            self.name,
            self.secret.to_base64()
        )
    }

    /// Reads the first key of a BIND key file (`nsupdate -k`, `tsig-keygen`, `rndc.key`),
    /// or a Knot key file's line (`[ALGORITHM:]NAME:SECRET`, as [`TsigKey::to_knot_key_file`]
    /// writes it).
    pub fn from_key_file(text: &str) -> Result<Self, KeyError> {
        let line = text.trim();
        if !line.contains('{') && line.lines().count() == 1 && line.contains(':') {
            return Self::from_knot_line(line);
        }
        let tokens = tokenize(text);
        let start = tokens
            .iter()
            .position(|t| t == "key")
            .ok_or(KeyError::NoKeyClause)?;
        let raw_name = tokens.get(start + 1).ok_or(KeyError::NoKeyClause)?;
        let name = normalise_name(raw_name)?;
        let body = &tokens[start + 2..];
        let value_of = |word: &'static str| {
            body.iter()
                .position(|t| t == word)
                .and_then(|i| body.get(i + 1))
                .ok_or_else(|| KeyError::MissingStatement(name.clone(), word))
        };
        let algorithm: Algorithm = value_of("algorithm")?.parse()?;
        let secret = value_of("secret")?.clone();
        Self::named(name, algorithm, &secret)
    }

    /// A key from its parts as a key file gives them: the secret in base64, long enough.
    fn named(name: String, algorithm: Algorithm, secret: &str) -> Result<Self, KeyError> {
        let secret = BASE64
            .decode(secret.as_bytes())
            .map_err(|_| KeyError::SecretEncoding(name.clone()))?;
        if secret.len() < Secret::MIN_LEN {
            return Err(KeyError::SecretTooShort(name));
        }
        Ok(Self {
            name,
            algorithm,
            secret: Secret(secret),
        })
    }
}

impl TsigKey {
    /// `[ALGORITHM:]NAME:SECRET` (the algorithm defaults to hmac-sha256, as in Knot).
    fn from_knot_line(line: &str) -> Result<Self, KeyError> {
        let parts: Vec<&str> = line.split(':').collect();
        let (algorithm, name, secret) = match parts.as_slice() {
            [name, secret] => (Algorithm::HmacSha256, *name, *secret),
            [algorithm, name, secret] => (algorithm.parse()?, *name, *secret),
            _ => return Err(KeyError::NoKeyClause),
        };
        Self::named(normalise_name(name)?, algorithm, secret)
    }
}

/// Lower-cases a key name and makes it fully qualified, checking it is a domain name.
pub fn normalise_name(raw: &str) -> Result<String, KeyError> {
    let mut name = Name::from_ascii(raw).map_err(|_| KeyError::Name(raw.to_owned()))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase().to_ascii())
}

/// Splits a key file into words, quoted strings (without quotes) and the punctuation `{};`,
/// skipping `#`, `//` and `/* */` comments outside quotes (base64 secrets may contain `//`).
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => tokens.push(chars.by_ref().take_while(|c| *c != '"').collect()),
            '#' => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        break;
                    }
                    previous = c;
                }
            }
            c => {
                let mut word = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{};\"#".contains(n) {
                        break;
                    }
                    word.push(n);
                    chars.next();
                }
                tokens.push(word);
            }
        }
    }
    tokens
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

/// The parts of a terminal key's name: `<code>.<mid>.<kid>.key.<zone>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalKeyName {
    pub code: CallingCode,
    pub mid: Mid,
    pub kid: Kid,
}

impl TerminalKeyName {
    /// The key name for a terminal of `zone` (fully qualified, lower case).
    pub fn format(code: &CallingCode, mid: &Mid, kid: &Kid, zone: &Name) -> String {
        let zone = zone.to_lowercase().to_ascii();
        let zone = zone.trim_end_matches('.');
        format!("{code}.{mid}.{kid}.key.{zone}.")
    }

    /// The code, MID and KID a key name carries, if it is a terminal key's name.
    pub fn parse(name: &str) -> Option<Self> {
        let mut labels = name.split('.');
        let code = labels.next()?.parse().ok()?;
        let mid = labels.next()?.parse().ok()?;
        let kid = labels.next()?.parse().ok()?;
        (labels.next()? == "key").then_some(Self { code, mid, kid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSIG_KEYGEN_OUTPUT: &str = r#"key "xfer-key" {
	algorithm hmac-sha256;
	secret "3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=";
};
"#;

    #[test]
    fn a_knot_key_line_reads_back_as_the_same_key() {
        let key = TsigKey::from_key_file(TSIG_KEYGEN_OUTPUT).unwrap();
        let line = key.to_knot_key_file();
        assert_eq!(line.lines().count(), 1);
        assert_eq!(TsigKey::from_key_file(&line).unwrap(), key);
        let short = TsigKey::from_key_file("xfer-key:3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=");
        assert_eq!(short.unwrap().algorithm, Algorithm::HmacSha256);
        assert!(TsigKey::from_key_file("a:b:c:d").is_err());
    }

    #[test]
    fn reads_tsig_keygen_output() {
        let key = TsigKey::from_key_file(TSIG_KEYGEN_OUTPUT).unwrap();
        assert_eq!(key.name, "xfer-key.");
        assert_eq!(key.algorithm, Algorithm::HmacSha256);
        assert_eq!(key.secret.as_bytes().len(), 32);
    }

    #[test]
    fn key_files_round_trip() {
        let key = TsigKey {
            name: "5551234.3f9a0c1d22e4b7a8.acme-0042.key.dial.example.".into(),
            algorithm: Algorithm::HmacSha512,
            secret: Secret::generate().unwrap(),
        };
        assert_eq!(TsigKey::from_key_file(&key.to_key_file()).unwrap(), key);
    }

    /// Random secrets hit every base64 character, `//` included.
    #[test]
    fn generated_keys_always_round_trip() {
        for _ in 0..500 {
            let key = TsigKey {
                name: "k.".into(),
                algorithm: Algorithm::HmacSha256,
                secret: Secret::generate().unwrap(),
            };
            assert_eq!(TsigKey::from_key_file(&key.to_key_file()).unwrap(), key);
        }
    }

    #[test]
    fn reads_key_files_with_comments_and_one_line() {
        let text = "# made by hand\nkey \"A.Example\" { algorithm HMAC-SHA384; secret \"AAECAwQFBgcICQoLDA0ODw==\"; }; // end";
        let key = TsigKey::from_key_file(text).unwrap();
        assert_eq!(key.name, "a.example.");
        assert_eq!(key.algorithm, Algorithm::HmacSha384);
    }

    /// Regression: a base64 secret containing `//` was cut short as if it began a comment.
    #[test]
    fn secrets_containing_comment_markers_survive() {
        let secret = "AQEBAQEB////AgICAgICAgICAgIC";
        let text =
            format!("key \"k\" {{ algorithm hmac-sha256; secret \"{secret}\"; }}; /* c */ # d");
        let key = TsigKey::from_key_file(&text).unwrap();
        assert_eq!(key.secret.to_base64(), secret);
    }

    #[test]
    fn refuses_bad_key_files() {
        assert!(matches!(
            TsigKey::from_key_file("nothing here"),
            Err(KeyError::NoKeyClause)
        ));
        let md5 = TSIG_KEYGEN_OUTPUT.replace("hmac-sha256", "hmac-md5");
        assert!(matches!(
            TsigKey::from_key_file(&md5),
            Err(KeyError::Algorithm(_))
        ));
        let short =
            TSIG_KEYGEN_OUTPUT.replace("3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGho=", "AAEC");
        assert!(matches!(
            TsigKey::from_key_file(&short),
            Err(KeyError::SecretTooShort(_))
        ));
        let no_secret = "key \"k\" { algorithm hmac-sha256; };";
        assert!(matches!(
            TsigKey::from_key_file(no_secret),
            Err(KeyError::MissingStatement(_, "secret"))
        ));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let key = TsigKey::from_key_file(TSIG_KEYGEN_OUTPUT).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("<secret>"));
        assert!(!debug.contains(&key.secret.to_base64()));
    }

    #[test]
    fn terminal_key_names_carry_code_mid_and_kid() {
        let code = "5551234".parse().unwrap();
        let mid = "3f9a0c1d22e4b7a8".parse().unwrap();
        let kid = "acme-0042".parse().unwrap();
        let zone = Name::from_ascii("Dial.Example.").unwrap();
        let name = TerminalKeyName::format(&code, &mid, &kid, &zone);
        assert_eq!(name, "5551234.3f9a0c1d22e4b7a8.acme-0042.key.dial.example.");
        let parsed = TerminalKeyName::parse(&name).unwrap();
        assert_eq!((parsed.code, parsed.mid, parsed.kid), (code, mid, kid));
        assert!(TerminalKeyName::parse("xfer-key.").is_none());
    }
}
