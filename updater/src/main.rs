//! `updater`: keep a terminal's directory entry current, print its machine id, or call
//! another terminal by its code.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;
use updater::config::{Flags, Settings, load_key};
use updater::daemon::Terminal;
use updater::dial::{self, Call};
use updater::network::{Network, Watch};
use updater::tls::Channel;
use updater::validate::TrustAnchor;
use zones::identity::{CallingCode, Kid, MacAddress, Mid};

#[derive(Parser)]
#[command(
    name = "updater",
    version,
    about = "Terminal updater for the calling-code directory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the man pages and the bash, zsh and fish completions (`packaging/docs.sh`).
    #[command(hide = true)]
    Generate {
        /// Directory for the man pages: one per command and subcommand, section 1.
        #[arg(long, value_name = "DIR")]
        man: std::path::PathBuf,
        /// Directory for the shell completions.
        #[arg(long, value_name = "DIR")]
        completions: std::path::PathBuf,
    },
    /// Print this terminal's machine id (MID), for `nameserver register --mid`.
    Identity {
        /// Customer id the MID is derived with.
        #[arg(long)]
        kid: Kid,
        /// The network card (default: the first non-loopback card with a MAC).
        #[arg(long, value_name = "IFACE", conflicts_with = "mac")]
        interface: Option<String>,
        /// A MAC address instead of a card's.
        #[arg(long)]
        mac: Option<MacAddress>,
        /// Print the MAC itself (12 hex digits) instead of the derived MID.
        #[arg(long)]
        raw: bool,
        /// Where cards are read from (default: netlink on Linux, poll elsewhere).
        #[arg(long, value_enum)]
        watch: Option<Watch>,
    },
    /// Enroll this terminal with a customer's token: agree a key with the directory (no
    /// secret crosses the wire), write it (mode 0600), print the code and the key's name.
    Enroll {
        /// Directory server.
        #[arg(long = "server", value_name = "ADDR:PORT", value_parser = zones::endpoint::parse)]
        server: std::net::SocketAddr,
        #[arg(long, default_value = "dial.example.")]
        zone: String,
        /// The token, as `nameserver token create` printed it (KID.ID.SECRET).
        #[arg(long, env = "DIAL_TOKEN", hide_env_values = true)]
        token: String,
        /// The calling code to ask for [default: one the directory picks].
        #[arg(long)]
        code: Option<CallingCode>,
        /// A MAC address instead of a card's.
        #[arg(long, conflicts_with = "interface")]
        mac: Option<MacAddress>,
        /// The network card whose MAC the key is bound to (default: the first non-loopback
        /// card with a MAC).
        #[arg(long, value_name = "IFACE")]
        interface: Option<String>,
        /// Where to write the key [default: CODE.key in this directory].
        #[arg(long, value_name = "FILE")]
        key_file: Option<std::path::PathBuf>,
        /// The key file's format: BIND's (`nsupdate -k`) or Knot's (`knsupdate -k`); the
        /// updater reads both.
        #[arg(long, value_enum, default_value_t)]
        key_format: updater::enroll::KeyFormat,
        /// Enroll over DNS over TLS, trusting the certificate with this SPKI pin.
        #[arg(long, value_name = "BASE64")]
        tls_pin: Option<zones::pin::Pin>,
        /// Where cards are read from (default: netlink on Linux, poll elsewhere).
        #[arg(long, value_enum)]
        watch: Option<Watch>,
    },
    /// Keep the directory entry current until SIGTERM or SIGINT, then withdraw it.
    Run {
        #[command(flatten)]
        flags: Flags,
    },
    /// Discover and publish once; exit 0 on success.
    Once {
        #[command(flatten)]
        flags: Flags,
    },
    /// Print a config file with every setting and its default value.
    SampleConfig,
    /// Look a code up, connect by TCP, and pipe stdin and stdout.
    #[command(after_help = DIAL_EXIT_STATUS)]
    Dial {
        /// Directory server (repeatable).
        #[arg(
            long = "server",
            value_name = "ADDR:PORT",
            required = true,
            value_parser = zones::endpoint::parse
        )]
        servers: Vec<std::net::SocketAddr>,
        #[arg(long, default_value = "dial.example.")]
        zone: String,
        /// Sign the lookups with this key (directories with --lookups signed).
        #[arg(long, value_name = "FILE")]
        key_file: Option<std::path::PathBuf>,
        /// Validate the answers (DNSSEC) from the DS or DNSKEY records in this file (what
        /// `nameserver dnssec ds` prints); an address that does not validate is refused.
        #[arg(long, value_name = "FILE")]
        trust_anchor: Option<std::path::PathBuf>,
        /// Look the code up by DNS over TLS (the servers' TLS port, usually 853), trusting
        /// the certificate with this SPKI pin (base64, as the directory logs it).
        #[arg(long, value_name = "BASE64")]
        tls_pin: Option<zones::pin::Pin>,
        /// The code to call.
        code: CallingCode,
        /// The TCP port to connect to.
        port: u16,
    },
}

/// `updater dial`'s exit statuses, one per outcome a script may act on.
const DIAL_EXIT_STATUS: &str = "Exit status:
  0  connected (the call ended)
  1  another error (stdin or stdout)
  2  bad arguments: a flag, the zone name, the key file or the trust anchor
  3  no such code
  4  the terminal is offline (registered, no address)
  5  the connection was refused or failed
  6  the directory is unreachable or refused the lookup (with --lookups signed, give --key-file)
  7  the answer does not validate (DNSSEC, with --trust-anchor)";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}"), 1),
    };
    runtime.block_on(dispatch(cli.command))
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("updater: {message}");
    ExitCode::from(code)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| zones::log_writer::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn dispatch(command: Command) -> ExitCode {
    let result = match command {
        Command::Generate { man, completions } => {
            generate(&man, &completions).map_err(|e| format!("cannot write the manual: {e}"))
        }
        Command::Identity {
            kid,
            interface,
            mac,
            raw,
            watch,
        } => identity(kid, interface, mac, raw, watch).await,
        Command::SampleConfig => {
            print!("{}", updater::sample::config());
            Ok(())
        }
        Command::Enroll {
            server,
            zone,
            token,
            code,
            mac,
            interface,
            key_file,
            key_format,
            tls_pin,
            watch,
        } => {
            let card = Card {
                mac,
                interface,
                watch,
            };
            let channel = tls_pin.map_or(Channel::Plain, Channel::tls);
            let key = KeyOut {
                path: key_file,
                format: key_format,
            };
            return enroll(server, zone, token, code, card, key, channel).await;
        }
        Command::Run { flags } => run(flags).await,
        Command::Once { flags } => once(flags).await,
        Command::Dial {
            servers,
            zone,
            key_file,
            trust_anchor,
            tls_pin,
            code,
            port,
        } => {
            let channel = tls_pin.map_or(Channel::Plain, Channel::tls);
            return call(servers, zone, key_file, trust_anchor, channel, code, port).await;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message, 1),
    }
}

async fn identity(
    kid: Kid,
    interface: Option<String>,
    mac: Option<MacAddress>,
    raw: bool,
    watch: Option<Watch>,
) -> Result<(), String> {
    let (card, mac) = Card {
        mac,
        interface,
        watch,
    }
    .read()
    .await?;
    let mid = if raw {
        Mid::raw(&mac)
    } else {
        Mid::derive(&kid, &mac)
    };
    eprintln!("card {card}, MAC {mac}");
    println!("{mid}");
    Ok(())
}

/// Where the enrolled key is written, and how.
struct KeyOut {
    path: Option<std::path::PathBuf>,
    format: updater::enroll::KeyFormat,
}

/// Where the MAC comes from: given, or read from a card.
struct Card {
    mac: Option<MacAddress>,
    interface: Option<String>,
    watch: Option<Watch>,
}

impl Card {
    /// The card's name (or `--mac`) and its MAC.
    async fn read(self) -> Result<(String, MacAddress), String> {
        if let Some(mac) = self.mac {
            return Ok(("--mac".to_owned(), mac));
        }
        let network = Network::open(self.watch.unwrap_or(Watch::platform_default()))
            .map_err(|e| e.to_string())?;
        network
            .card_mac(self.interface.as_deref())
            .await
            .map_err(|e| e.to_string())
    }
}

async fn enroll(
    server: std::net::SocketAddr,
    zone: String,
    token: String,
    code: Option<CallingCode>,
    card: Card,
    key_out: KeyOut,
    channel: Channel,
) -> ExitCode {
    use updater::enroll::{Enroll, enroll, write_key_file};
    let Ok(zone) = zones::zone::zone_name(&zone) else {
        return fail(&format!("zone {zone:?} is not a valid domain name"), 2);
    };
    let token: zones::enroll::Token = match token.parse() {
        Ok(token) => token,
        Err(e) => return fail(&e.to_string(), 2),
    };
    let (card, mac) = match card.read().await {
        Ok(read) => read,
        Err(e) => return fail(&e, 2),
    };
    let mid = Mid::derive(&token.kid, &mac);
    eprintln!("card {card}, MAC {mac}, MID {mid} (customer {})", token.kid);
    let request = Enroll {
        server,
        zone,
        token,
        mid,
        code,
        timeout: Duration::from_secs(5),
        channel,
    };
    let enrolled = match enroll(&request).await {
        Ok(enrolled) => enrolled,
        Err(e) => return fail(&e.to_string(), 1),
    };
    let path = key_out
        .path
        .unwrap_or_else(|| format!("{}.key", enrolled.code).into());
    if let Err(e) = write_key_file(&path, &enrolled.key, key_out.format) {
        return fail(
            &format!(
                "enrolled as {}, but the key cannot be written to {}: {e}; run `updater enroll` again (the code is kept)",
                enrolled.code,
                path.display()
            ),
            1,
        );
    }
    eprintln!("key written to {} (mode 0600)", path.display());
    println!("{} {}", enrolled.code, enrolled.key.name);
    ExitCode::SUCCESS
}

async fn run(flags: Flags) -> Result<(), String> {
    let settings = Settings::resolve(&flags).map_err(|e| e.to_string())?;
    let terminal = Terminal::new(settings).await.map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    terminal.run(shutdown).await.map_err(|e| e.to_string())
}

async fn once(flags: Flags) -> Result<(), String> {
    let settings = Settings::resolve(&flags).map_err(|e| e.to_string())?;
    let terminal = Terminal::new(settings).await.map_err(|e| e.to_string())?;
    terminal
        .sync(true)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn call(
    servers: Vec<std::net::SocketAddr>,
    zone: String,
    key_file: Option<std::path::PathBuf>,
    trust_anchor: Option<std::path::PathBuf>,
    channel: Channel,
    code: CallingCode,
    port: u16,
) -> ExitCode {
    let Ok(zone) = zones::zone::zone_name(&zone) else {
        return fail(&format!("zone {zone:?} is not a valid domain name"), 2);
    };
    let key = match key_file.as_deref().map(load_key).transpose() {
        Ok(key) => key,
        Err(e) => return fail(&e.to_string(), 2),
    };
    let trust = match trust_anchor
        .as_deref()
        .map(|path| TrustAnchor::load(path, &zone))
        .transpose()
    {
        Ok(trust) => trust,
        Err(e) => return fail(&e.to_string(), 2),
    };
    let call = Call {
        servers,
        zone,
        code,
        port,
        key,
        timeout: Duration::from_secs(3),
        channel,
        trust,
    };
    match dial::dial(&call).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string(), e.exit_code()),
    }
}

/// SIGTERM and SIGINT cancel the one shutdown token.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: going offline"),
        _ = int.recv() => info!("SIGINT: going offline"),
    }
    shutdown.cancel();
}

/// The man pages and shell completions, from the same definitions as `--help`.
fn generate(man: &std::path::Path, completions: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    zones::manual::generate(Cli::command(), "updater", man, completions)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Regression: exit statuses 2 and 7 of `updater dial` were in neither `--help` nor the
    /// README.
    #[test]
    fn dial_help_lists_every_exit_status() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("dial")
            .expect("a dial command")
            .render_long_help()
            .to_string();
        for status in 0..=7 {
            assert!(
                help.contains(&format!("\n  {status}  ")),
                "{status}: {help}"
            );
        }
    }
}
