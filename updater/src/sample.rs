//! The sample config file (`updater sample-config`, and `updater/dist/updater.toml`), written
//! from the same defaults [`crate::config::Settings`] falls back on. The three settings
//! without a default (server, code, key file) are shown with example values. A test keeps
//! the copy in the repository equal to this output, and checks that reading it changes
//! nothing but those three.

use crate::config::{DEFAULT_LEASE, DEFAULT_RECHECK, DEFAULT_TTL, DEFAULT_ZONE};
use crate::network::Watch;

/// The example directory server, code and key file the sample shows.
pub const EXAMPLE_SERVER: &str = "192.0.2.53:53";
pub const EXAMPLE_CODE: &str = "5551234";
pub const EXAMPLE_KEY_FILE: &str = "/etc/dial/5551234.key";

/// The sample config: every setting, each with its default value (or an example) and what it
/// does.
pub fn config() -> String {
    format!(
        "# updater run --config FILE (and `once`). Settings without a default are required; the\n\
         # others show what the updater uses without them (from `updater sample-config`).\n\
         # Flags override them.\n\
         \n\
         # Required: the directory server(s), tried in order (an IPv4 and an IPv6 one let whoami\n\
         # see both families), this terminal's code, and the key `nameserver register` issued.\n\
         server = [\"{EXAMPLE_SERVER}\"]\n\
         code = \"{EXAMPLE_CODE}\"\n\
         key_file = \"{EXAMPLE_KEY_FILE}\"\n\
         \n\
         # The directory's zone.\n\
         zone = \"{DEFAULT_ZONE}\"\n\
         # The network card whose MAC the key is bound to and whose addresses count\n\
         # (default: the first non-loopback card with a MAC).\n\
         # interface = \"wlan0\"\n\
         # \"auto\" (discover: whoami and the card) and/or fixed addresses to publish.\n\
         address = [\"auto\"]\n\
         # TTL of the published records (the directory may clamp it).\n\
         ttl = {DEFAULT_TTL}\n\
         # Lease asked for, seconds (RFC 9664); refreshed at 80-85% of what is granted.\n\
         lease = {DEFAULT_LEASE}\n\
         # Also publish private, ULA and shared-range addresses (labs, company networks).\n\
         allow_private = false\n\
         # On SIGTERM or SIGINT, leave the addresses in the directory.\n\
         keep_on_exit = false\n\
         # Seconds between checks of what the directory answers.\n\
         recheck = {DEFAULT_RECHECK}\n\
         # Where addresses and their changes come from: \"netlink\" (Linux: the kernel's\n\
         # events) or \"poll\" (getifaddrs every second: Linux, macOS, the BSDs).\n\
         watch = \"{watch}\"\n\
         # DNS over TLS (RFC 7858) to the servers (their TLS port, usually 853), trusting the\n\
         # certificate with this SPKI pin (base64, as the directory logs it); absent: UDP, TCP.\n\
         # tls_pin = \"VotdS3YxGpx+Dx0vlULHHNO10Ptrl3VNY4/pw0DKAOs=\"\n",
        watch = Watch::platform_default().as_str()
    )
}
