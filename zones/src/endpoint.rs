//! Addresses with a port as people type them on the command line (`127.0.0.1:5353`,
//! `[::1]:5353`), with an error that says what to write instead of the standard library's
//! "invalid socket address syntax".

use std::net::{IpAddr, SocketAddr};

/// Parses `IP:PORT` (IPv6 in brackets); a host name, a bare port or a bare address gets an
/// error that shows the form expected.
pub fn parse(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint = if text.parse::<u16>().is_ok() {
        format!("a port alone; use IP:PORT, e.g. 127.0.0.1:{text}")
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        let ip = match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        format!("an address without a port; use IP:PORT, e.g. {ip}:53")
    } else {
        "not IP:PORT (a host name is not looked up); use e.g. 127.0.0.1:5353 or [::1]:5353".into()
    };
    Err(format!("{text:?} is {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `--listen localhost:5353`, `--listen 5353` and `--server 127.0.0.1` said
    /// only "invalid socket address syntax".
    #[test]
    fn socket_addresses_that_do_not_parse_say_use_ip_port() {
        assert_eq!(parse("127.0.0.1:53").unwrap().port(), 53);
        assert!(parse("[::1]:5353").unwrap().is_ipv6());
        for (text, expected) in [
            ("localhost:5353", "host name"),
            ("5353", "127.0.0.1:5353"),
            ("127.0.0.1", "127.0.0.1:53"),
            ("::1", "[::1]:53"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("IP:PORT"), "{err}");
            assert!(err.contains(expected), "{err}");
        }
    }
}
