//! Who a terminal is: its calling code, its customer id (KID) and its machine id (MID).
//!
//! Each type is checked once, at construction, so the rest of the system can rely on it:
//!
//! - [`CallingCode`]: 3 to 15 decimal digits (15 is the longest E.164 number). It becomes
//!   the DNS label of the terminal's name, `<code>.<zone>`.
//! - [`Kid`]: 1 to 32 characters from `a-z`, `0-9` and `-`, not starting or ending with `-`
//!   (upper case is folded to lower case). It is a DNS label inside the key name.
//! - [`Mid`]: the machine id, lowercase hex. Either the raw 6-byte MAC address of the
//!   terminal's network card (12 hex digits; `3c:22:fb:01:02:03` and `3C-22-FB-01-02-03` are
//!   accepted and normalised) or the MAC address hashed by [`Mid::derive`] (16 hex digits).
//!
//! # The MID rule
//!
//! `MID = hex(first 8 bytes of HMAC-SHA256(key = KID as UTF-8, message = the 6 MAC bytes))`.
//! Keying the hash with the KID means the same card gives unrelated MIDs under different
//! customers, and the MAC address itself never leaves the terminal.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Why an identity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("calling code {0:?} is not valid: use 3 to 15 decimal digits")]
    Code(String),
    #[error(
        "customer id (KID) {0:?} is not valid: use 1 to 32 characters from a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    Kid(String),
    #[error(
        "machine id (MID) {0:?} is not valid: use a MAC address (12 hex digits, ':' or '-' separators allowed) or a derived MID (16 hex digits)"
    )]
    Mid(String),
    #[error("MAC address {0:?} is not valid: use 6 bytes in hex, like 3c:22:fb:01:02:03")]
    Mac(String),
}

/// A terminal's calling code: 3 to 15 decimal digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallingCode(String);

impl CallingCode {
    /// The shortest code accepted.
    pub const MIN_DIGITS: usize = 3;
    /// The longest code accepted (the longest E.164 number).
    pub const MAX_DIGITS: usize = 15;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CallingCode {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid_len = (Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&s.len());
        if valid_len && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentityError::Code(s.to_owned()))
        }
    }
}

/// A calling code as one integer, for the in-memory index: the digit count in the top byte
/// (so `0123` and `123` stay apart) and the value below it (15 digits need 50 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodeKey(u64);

impl CodeKey {
    /// The key of a label of 3 to 15 ASCII digits, or `None` (no allocation).
    pub fn from_digits(label: &[u8]) -> Option<Self> {
        let valid = (CallingCode::MIN_DIGITS..=CallingCode::MAX_DIGITS).contains(&label.len());
        if !valid || !label.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = label.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
        Some(Self(((label.len() as u64) << 56) | value))
    }

    /// The key as one integer, as a saved copy holds it.
    pub fn to_bits(self) -> u64 {
        self.0
    }

    /// The key of an integer from [`CodeKey::to_bits`], or `None` when no code gives it.
    pub fn from_bits(bits: u64) -> Option<Self> {
        let (digits, value) = Self(bits).split();
        let valid = (CallingCode::MIN_DIGITS as u32..=CallingCode::MAX_DIGITS as u32)
            .contains(&digits)
            && value < 10u64.pow(digits);
        valid.then_some(Self(bits))
    }

    /// Orders codes as their text sorts (the store's order: `0123` < `123` < `1230` <
    /// `124`): the digits left-aligned over 15 places, then the shorter first.
    pub fn text_order(self) -> (u64, u8) {
        let (digits, value) = self.split();
        let max = CallingCode::MAX_DIGITS as u32;
        (value * 10u64.pow(max - digits.min(max)), digits as u8)
    }

    /// The code's digits, with its leading zeros.
    pub fn to_code(self) -> CallingCode {
        let (digits, value) = self.split();
        let digits = digits as usize;
        CallingCode(format!("{value:0digits$}"))
    }

    /// The digit count (top byte) and the value (below it).
    fn split(self) -> (u32, u64) {
        ((self.0 >> 56) as u32, self.0 & ((1 << 56) - 1))
    }
}

impl From<&CallingCode> for CodeKey {
    fn from(code: &CallingCode) -> Self {
        Self::from_digits(code.as_str().as_bytes()).expect("a calling code is 3 to 15 digits")
    }
}

/// A customer id (KID): a lower-case DNS-label-safe string of 1 to 32 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Kid(String);

impl Kid {
    pub const MAX_LEN: usize = 32;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Kid {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        let valid = (1..=Self::MAX_LEN).contains(&lower.len())
            && lower.bytes().all(allowed)
            && !lower.starts_with('-')
            && !lower.ends_with('-');
        if valid {
            Ok(Self(lower))
        } else {
            Err(IdentityError::Kid(s.to_owned()))
        }
    }
}

/// A network card's MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = strip_separators(s);
        let bytes = decode_hex(&hex).ok_or_else(|| IdentityError::Mac(s.to_owned()))?;
        let octets: [u8; 6] = bytes
            .try_into()
            .map_err(|_| IdentityError::Mac(s.to_owned()))?;
        Ok(Self(octets))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        f.write_str(&parts.join(":"))
    }
}

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A machine id: the raw MAC (12 hex digits) or the MAC hashed by the MID rule (16 hex digits).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mid(String);

impl Mid {
    /// Length of a raw-MAC MID in hex digits.
    pub const RAW_LEN: usize = 12;
    /// Length of a derived MID in hex digits.
    pub const DERIVED_LEN: usize = 16;

    /// The MID rule: the first 8 bytes of HMAC-SHA256 keyed with the KID over the MAC bytes.
    pub fn derive(kid: &Kid, mac: &MacAddress) -> Self {
        let mut hmac = Hmac::<Sha256>::new_from_slice(kid.as_str().as_bytes())
            .expect("HMAC accepts keys of any length");
        hmac.update(&mac.0);
        let digest = hmac.finalize().into_bytes();
        Self(encode_hex(&digest[..8]))
    }

    /// The raw form: the MAC address itself.
    pub fn raw(mac: &MacAddress) -> Self {
        Self(encode_hex(&mac.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Mid {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = strip_separators(s).to_ascii_lowercase();
        let valid_len = hex.len() == Self::RAW_LEN || hex.len() == Self::DERIVED_LEN;
        if valid_len && decode_hex(&hex).is_some() {
            Ok(Self(hex))
        } else {
            Err(IdentityError::Mid(s.to_owned()))
        }
    }
}

macro_rules! string_newtype_impls {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), self.0)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = IdentityError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
    )*};
}

string_newtype_impls!(CallingCode, Kid, Mid);

fn strip_separators(s: &str) -> String {
    s.chars().filter(|c| *c != ':' && *c != '-').collect()
}

/// Lowercase hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of an even-length hex string, or `None`.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_codes_are_3_to_15_digits() {
        assert!("555".parse::<CallingCode>().is_ok());
        assert!("123456789012345".parse::<CallingCode>().is_ok());
        assert!("55".parse::<CallingCode>().is_err());
        assert!("1234567890123456".parse::<CallingCode>().is_err());
        assert!("555-1234".parse::<CallingCode>().is_err());
        assert!("".parse::<CallingCode>().is_err());
        assert!("５５５".parse::<CallingCode>().is_err(), "non-ASCII digits");
    }

    #[test]
    fn kids_are_lowercased_dns_labels() {
        assert_eq!("ACME-0042".parse::<Kid>().unwrap().as_str(), "acme-0042");
        assert!("-acme".parse::<Kid>().is_err());
        assert!("acme-".parse::<Kid>().is_err());
        assert!("acme.0042".parse::<Kid>().is_err());
        assert!("a".repeat(33).parse::<Kid>().is_err());
    }

    #[test]
    fn code_keys_keep_leading_zeros_and_round_trip() {
        for text in [
            "555",
            "0555",
            "5551234",
            "000000000000001",
            "999999999999999",
        ] {
            let code: CallingCode = text.parse().unwrap();
            let key = CodeKey::from(&code);
            assert_eq!(key.to_code(), code);
            assert_eq!(CodeKey::from_bits(key.to_bits()), Some(key));
        }
        let mut keys: Vec<CodeKey> = ["124", "0123", "1230", "123", "000", "999999999999999"]
            .iter()
            .map(|t| CodeKey::from_digits(t.as_bytes()).unwrap())
            .collect();
        keys.sort_by_key(|k| k.text_order());
        let texts: Vec<String> = keys
            .iter()
            .map(|k| k.to_code().as_str().to_owned())
            .collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted, "text order");
        let bits = |digits: u64, value: u64| (digits << 56) | value;
        assert_eq!(CodeKey::from_bits(bits(3, 1000)), None, "4 digits in 3");
        assert_eq!(CodeKey::from_bits(bits(2, 5)), None, "too short");
        assert_eq!(CodeKey::from_bits(bits(16, 5)), None, "too long");
        assert_ne!(
            CodeKey::from_digits(b"0555"),
            CodeKey::from_digits(b"555"),
            "different names"
        );
        assert_eq!(CodeKey::from_digits(b"55"), None);
        assert_eq!(CodeKey::from_digits(b"55a5"), None);
    }

    #[test]
    fn mids_accept_raw_macs_and_derived_ids() {
        let raw: Mid = "3C:22:FB:01:02:03".parse().unwrap();
        assert_eq!(raw.as_str(), "3c22fb010203");
        assert!("3f9a0c1d22e4b7a8".parse::<Mid>().is_ok());
        assert!("3f9a0c1d22e4b7".parse::<Mid>().is_err(), "14 digits");
        assert!("zz9a0c1d22e4b7a8".parse::<Mid>().is_err());
    }

    /// Fixed vectors for the MID rule, computed independently with
    /// `python3 -c 'import hmac,hashlib;print(hmac.new(b"acme-0042",bytes.fromhex("3c22fb010203"),hashlib.sha256).hexdigest()[:16])'`.
    #[test]
    fn mid_rule_matches_fixed_vectors() {
        let kid: Kid = "acme-0042".parse().unwrap();
        let mac: MacAddress = "3c:22:fb:01:02:03".parse().unwrap();
        assert_eq!(Mid::derive(&kid, &mac).as_str(), MID_ACME_0042);
        let other: Kid = "acme-0043".parse().unwrap();
        assert_ne!(Mid::derive(&other, &mac), Mid::derive(&kid, &mac));
        assert_eq!(Mid::raw(&mac).as_str(), "3c22fb010203");
    }

    const MID_ACME_0042: &str = "34d6aaa6266856e4";
}
