//! `nameserver`: serve the directory, or administer a running one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use nameserver::config::{ServeFlags, Settings, default_data_dir};
use nameserver::control::{self, ControlReply, ControlRequest};
use nameserver::customers::CustomerRequest;
use nameserver::relay::ClusterChange;
use nameserver::{admin, backup, import, server};
use tokio_util::sync::CancellationToken;
use tracing::info;
use zones::identity::{CallingCode, Kid, Mid};
use zones::key::Algorithm;

#[derive(Parser)]
#[command(
    name = "nameserver",
    version,
    about = "Authoritative DNS directory of calling codes"
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
        man: PathBuf,
        /// Directory for the shell completions.
        #[arg(long, value_name = "DIR")]
        completions: PathBuf,
    },
    /// Serve the zone over UDP and TCP (default: dial.example. on 127.0.0.1:5353).
    Serve {
        #[command(flatten)]
        flags: ServeFlags,
        /// Check the config and zone, print the settings, and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Register a terminal's calling code and print its new TSIG key.
    Register {
        /// Calling code: 3 to 15 digits.
        #[arg(long)]
        code: CallingCode,
        /// Customer id.
        #[arg(long)]
        kid: Kid,
        /// Machine id: the MAC (12 hex digits) or `updater identity`'s MID (16 hex digits).
        #[arg(long)]
        mid: Mid,
        #[arg(long, default_value = "hmac-sha256")]
        algorithm: Algorithm,
        /// Write the key here (mode 0600) instead of printing it.
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// List registered terminals with their addresses.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a terminal; its name disappears from the zone.
    Unregister {
        #[arg(long)]
        code: CallingCode,
        #[command(flatten)]
        target: Target,
    },
    /// Register many terminals from a file of `CODE KID MID [ADDRESS ...]` lines, all or none.
    Import {
        /// The file to read.
        file: PathBuf,
        /// Write the new keys to this bundle file (mode 0600) [default: FILE.keys].
        #[arg(long, value_name = "BUNDLE", conflicts_with = "keys_dir")]
        keys: Option<PathBuf>,
        /// Write each new key to DIR/CODE.key (mode 0600) instead of one bundle.
        #[arg(long, value_name = "DIR")]
        keys_dir: Option<PathBuf>,
        #[arg(long, default_value = "hmac-sha256")]
        algorithm: Algorithm,
        #[command(flatten)]
        target: Target,
    },
    /// Print the zone as an RFC 1035 zone file (for backups or other servers).
    Export {
        /// Write it here instead of printing it.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Write a consistent backup of the running server, keys included (mode 0600), while it
    /// goes on serving and taking updates.
    Backup {
        /// The backup file to write (replaced atomically).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Rebuild a data directory from a backup (no server running on it; DIR new or empty).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data directory to create.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Read the config and zone files again and put in force what changed (as SIGHUP does);
    /// if they cannot be loaded, nothing changes and the reason is printed.
    Reload {
        #[command(flatten)]
        target: Target,
    },
    /// Print a config file with every setting and its default value.
    SampleConfig,
    /// DNSSEC (a server started with --dnssec): `ds` prints the DS records to give the
    /// parent zone (or a validator as its trust anchor), `keys` lists the zone's keys,
    /// `rollover` replaces the zone-signing key.
    Dnssec {
        #[command(subcommand)]
        what: DnssecCommand,
    },
    /// Enrollment tokens: `create` prints a new token (once; it is stored hashed), `list`
    /// shows them (never a secret), `revoke` stops one.
    Token {
        #[command(subcommand)]
        what: TokenCommand,
    },
    /// Approve a terminal enrolled with an `--approve` token: until then it has no records
    /// and its updates are refused.
    Approve {
        #[arg(long)]
        code: CallingCode,
        #[command(flatten)]
        target: Target,
    },
    /// Customers (KIDs): a terminal limit, suspension (every key of the customer refused,
    /// its tokens enroll nothing) and resumption.
    Customer {
        #[command(subcommand)]
        what: CustomerCommand,
    },
    /// A cluster (`[cluster]` in the config file): `status` prints the leader and each
    /// member's role and applied log index; `add` and `remove` change the members.
    Cluster {
        #[command(subcommand)]
        what: ClusterCommand,
    },
    /// Issue a new key for a terminal; the old one stops working at once.
    RotateKey {
        #[arg(long)]
        code: CallingCode,
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum DnssecCommand {
    /// Print the DS records of the zone's keys, for the parent zone.
    Ds {
        #[command(flatten)]
        target: Target,
    },
    /// List the zone's keys: tag, algorithm, role, state, creation time, DNSKEY.
    Keys {
        #[command(flatten)]
        target: Target,
    },
    /// Roll the zone-signing key by pre-publication (the DS at the parent does not change).
    Rollover {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The leader, and each member's role, applied log index, last log index and serial.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Add node ID, reached at IP:PORT (its `[cluster] listen`), as a voting member: it
    /// catches up from the log first. Start it with a config whose `peers` leaves it out.
    Add {
        /// `ID=IP:PORT`, as in `peers`.
        #[arg(value_parser = parse_member)]
        member: (u64, std::net::SocketAddr),
        #[command(flatten)]
        target: Target,
    },
    /// Remove node ID from the members.
    Remove {
        node: u64,
        #[command(flatten)]
        target: Target,
    },
}

/// `ID=IP:PORT`.
fn parse_member(text: &str) -> Result<(u64, std::net::SocketAddr), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or("expected ID=IP:PORT, e.g. 4=192.0.2.4:7101")?;
    let id = id
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or("the node id must be a positive integer")?;
    let addr = zones::endpoint::parse(addr).map_err(|e| e.to_string())?;
    Ok((id, addr))
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for customer KID and print it (one line, shown once).
    Create {
        /// The customer whose terminals it enrolls.
        #[arg(long)]
        kid: Kid,
        /// How many terminals it may enroll.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it may be used: 90s, 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = nameserver::customers::parse_duration)]
        expires: u64,
        /// The codes it may enroll, FIRST-LAST (same number of digits) [default: any free
        /// 9-digit code, or the one the terminal asks for].
        #[arg(long, value_name = "FIRST-LAST")]
        codes: Option<zones::enroll::CodeRange>,
        /// Terminals it enrolls wait for `nameserver approve`.
        #[arg(long)]
        approve: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List the tokens: id, customer, state, uses, expiry, codes (never a secret).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a token by its id; terminals it enrolled keep their keys.
    Revoke {
        /// The token's id (the middle part of the token, as `token list` shows it).
        id: zones::enroll::TokenId,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum CustomerCommand {
    /// Set the most terminals customer KID may have (`none`: no limit).
    Limit {
        kid: Kid,
        /// A number, or `none`.
        #[arg(value_parser = parse_limit)]
        limit: Limit,
        #[command(flatten)]
        target: Target,
    },
    /// Suspend customer KID: its keys are refused and its tokens enroll nothing.
    Suspend {
        kid: Kid,
        #[command(flatten)]
        target: Target,
    },
    /// Resume customer KID.
    Resume {
        kid: Kid,
        #[command(flatten)]
        target: Target,
    },
    /// List the customers with settings: terminals, limit, suspension.
    List {
        #[command(flatten)]
        target: Target,
    },
}

/// A customer's terminal limit as typed: a number or `none`.
#[derive(Clone, Copy, Debug)]
struct Limit(Option<u32>);

fn parse_limit(text: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Limit(None));
    }
    text.parse()
        .map(|n| Limit(Some(n)))
        .map_err(|_| format!("limit {text:?} is not valid: a number of terminals, or none"))
}

/// Which running server an admin command talks to.
#[derive(Args)]
struct Target {
    /// The server's data directory (finds its control socket).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The control socket itself.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("nameserver: {message}");
    ExitCode::FAILURE
}

/// Logs to stderr; nothing per query unless RUST_LOG asks (hickory logs each request at info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| zones::log_writer::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn dispatch(command: Command) -> Result<(), String> {
    match command {
        Command::Generate { man, completions } => {
            generate(&man, &completions).map_err(|e| format!("cannot write the manual: {e}"))
        }
        Command::Serve {
            flags,
            check_config,
        } => serve(flags, check_config).await,
        Command::Register {
            code,
            kid,
            mid,
            algorithm,
            key_file,
            target,
        } => {
            let slot = key_file
                .as_deref()
                .map(admin::KeyFileSlot::new_file)
                .transpose()?;
            let request = ControlRequest::Register {
                code: code.clone(),
                kid,
                mid,
                algorithm,
            };
            let reply = call(&target, &request).await?;
            if let Err(e) = print_key(reply, slot, false) {
                // The key never reached its file: the registration is undone.
                let undo = ControlRequest::Unregister { code: code.clone() };
                return match call(&target, &undo).await {
                    Ok(_) => Err(format!("{e}; the registration of {code} was undone")),
                    Err(u) => Err(format!(
                        "{e}; undoing the registration of {code} failed too ({u}): unregister it, then register it again"
                    )),
                };
            }
            Ok(())
        }
        Command::RotateKey {
            code,
            key_file,
            target,
        } => {
            let slot = key_file
                .as_deref()
                .map(|path| admin::KeyFileSlot::for_rotation(path, code.as_str()))
                .transpose()?;
            let request = ControlRequest::RotateKey { code };
            print_key(call(&target, &request).await?, slot, true)
        }
        Command::Unregister { code, target } => {
            call(&target, &ControlRequest::Unregister { code: code.clone() }).await?;
            println!("unregistered {code}");
            Ok(())
        }
        Command::Import {
            file,
            keys,
            keys_dir,
            algorithm,
            target,
        } => import(&file, keys, keys_dir, algorithm, &target).await,
        Command::Export { output, target } => {
            let ControlReply::Zone { text } = call(&target, &ControlRequest::Export).await? else {
                return Err("unexpected answer to export".into());
            };
            match output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Command::Dnssec { what } => {
            let (request, target) = match what {
                DnssecCommand::Ds { target } => (ControlRequest::DnssecDs, target),
                DnssecCommand::Keys { target } => (ControlRequest::DnssecKeys, target),
                DnssecCommand::Rollover { target } => (ControlRequest::DnssecRollover, target),
            };
            let ControlReply::Text { text } = call(&target, &request).await? else {
                return Err("unexpected answer to dnssec".into());
            };
            print!("{text}");
            Ok(())
        }
        Command::Token { what } => {
            let (request, target) = match what {
                TokenCommand::Create {
                    kid,
                    uses,
                    expires,
                    codes,
                    approve,
                    target,
                } => (
                    CustomerRequest::TokenCreate {
                        kid,
                        uses,
                        expires_in: expires,
                        codes,
                        approve,
                    },
                    target,
                ),
                TokenCommand::List { target } => (CustomerRequest::TokenList, target),
                TokenCommand::Revoke { id, target } => {
                    (CustomerRequest::TokenRevoke { id }, target)
                }
            };
            customers(&target, request).await
        }
        Command::Approve { code, target } => {
            customers(&target, CustomerRequest::Approve { code }).await
        }
        Command::Customer { what } => {
            let (request, target) = match what {
                CustomerCommand::Limit { kid, limit, target } => (
                    CustomerRequest::CustomerLimit {
                        kid,
                        limit: limit.0,
                    },
                    target,
                ),
                CustomerCommand::Suspend { kid, target } => {
                    (CustomerRequest::CustomerSuspend { kid }, target)
                }
                CustomerCommand::Resume { kid, target } => {
                    (CustomerRequest::CustomerResume { kid }, target)
                }
                CustomerCommand::List { target } => (CustomerRequest::CustomerList, target),
            };
            customers(&target, request).await
        }
        Command::Cluster { what } => {
            let (request, target) = match what {
                ClusterCommand::Status { target } => (ControlRequest::ClusterStatus, target),
                ClusterCommand::Add {
                    member: (node, addr),
                    target,
                } => (
                    ControlRequest::ClusterChange(ClusterChange::Add { node, addr }),
                    target,
                ),
                ClusterCommand::Remove { node, target } => (
                    ControlRequest::ClusterChange(ClusterChange::Remove { node }),
                    target,
                ),
            };
            let ControlReply::Text { text } = call(&target, &request).await? else {
                return Err("unexpected answer from the nameserver".into());
            };
            println!("{text}");
            Ok(())
        }
        Command::Reload { target } => {
            let ControlReply::Reloaded { outcome } = call(&target, &ControlRequest::Reload).await?
            else {
                return Err("unexpected answer to reload".into());
            };
            let list = |names: &[String]| {
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                }
            };
            println!(
                "reloaded: changed {}; serial {}",
                list(&outcome.changed),
                outcome.serial
            );
            if !outcome.needs_restart.is_empty() {
                println!(
                    "not changed until a restart: {}",
                    outcome.needs_restart.join(", ")
                );
            }
            Ok(())
        }
        Command::SampleConfig => {
            print!("{}", nameserver::sample::config());
            Ok(())
        }
        Command::Backup { output, target } => {
            let mut session = session(&target).await?;
            let started = std::time::Instant::now();
            let written = backup::write(&mut session, &output).await?;
            println!(
                "backup of {} terminal(s), {} journal entries, serial {} written to {} (mode 0600) in {:.2} s",
                written.terminals,
                written.journal,
                written.serial,
                output.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Restore { file, data } => {
            let started = std::time::Instant::now();
            let restored = tokio::task::spawn_blocking(move || backup::restore(&file, &data))
                .await
                .map_err(|e| e.to_string())??;
            println!(
                "restored {} terminal(s), {} journal entries, serial {} in {:.2} s",
                restored.terminals,
                restored.journal,
                restored.serial,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::List { json, target } => {
            let mut session = session(&target).await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            admin::print_list(&mut session, json, &mut out).await?;
            std::io::Write::flush(&mut out).map_err(|e| e.to_string())
        }
    }
}

async fn serve(flags: ServeFlags, check_config: bool) -> Result<(), String> {
    let settings = Settings::resolve(&flags).map_err(|e| e.to_string())?;
    if check_config {
        print!("{}", settings.to_config_text());
        return Ok(());
    }
    let (directory, listeners) = server::bind(&settings).await.map_err(|e| e.to_string())?;
    for addr in listeners.local_addrs() {
        info!("listening on {addr} (udp+tcp)");
    }
    info!(
        zone = %settings.zone.origin(),
        data = %settings.data.display(),
        control = %listeners.control_path.display(),
        terminals = directory.view().len(),
        lookups = ?settings.lookups,
        "serving"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let options = server::RunOptions {
        settings,
        flags: Some(flags),
    };
    server::run(directory, listeners, options, shutdown)
        .await
        .map_err(|e| e.to_string())
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
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// A control session with the server `target` names, for a streamed command.
async fn session(target: &Target) -> Result<control::Session, String> {
    let data = target.data.clone().unwrap_or_else(default_data_dir);
    let socket = control::socket_path(&data, target.control.as_deref());
    control::Session::connect(&data, &socket)
        .await
        .map_err(|e| e.to_string())
}

/// A token, approval or customer command: its text printed as it is.
async fn customers(target: &Target, request: CustomerRequest) -> Result<(), String> {
    let ControlReply::Text { text } = call(target, &ControlRequest::Customers(request)).await?
    else {
        return Err("unexpected answer from the nameserver".into());
    };
    print!("{text}");
    Ok(())
}

async fn call(target: &Target, request: &ControlRequest) -> Result<ControlReply, String> {
    let data = target.data.clone().unwrap_or_else(default_data_dir);
    let socket = control::socket_path(&data, target.control.as_deref());
    control::call(&data, &socket, request)
        .await
        .map_err(|e| e.to_string())
}

async fn import(
    file: &std::path::Path,
    keys: Option<PathBuf>,
    keys_dir: Option<PathBuf>,
    algorithm: Algorithm,
    target: &Target,
) -> Result<(), String> {
    let keys_to = match (keys, keys_dir) {
        (_, Some(dir)) => import::KeysTo::Dir(dir),
        (Some(bundle), None) => import::KeysTo::Bundle(bundle),
        (None, None) => import::KeysTo::Bundle(PathBuf::from(format!("{}.keys", file.display()))),
    };
    let mut session = session(target).await?;
    let count = import::run(file, &keys_to, algorithm, &mut session).await?;
    let keys = match &keys_to {
        import::KeysTo::Bundle(path) => format!("keys in {} (mode 0600)", path.display()),
        import::KeysTo::Dir(dir) => format!("keys in {}/CODE.key (mode 0600)", dir.display()),
    };
    println!("imported {count} terminal(s); {keys}");
    Ok(())
}

/// Writes the issued key to its file, or prints it. With `rescue`, a key that cannot be
/// written is printed (a rotated key's terminal would otherwise be locked out).
fn print_key(
    reply: ControlReply,
    slot: Option<admin::KeyFileSlot>,
    rescue: bool,
) -> Result<(), String> {
    let ControlReply::Key {
        code,
        key_file: text,
    } = reply
    else {
        return Err("unexpected answer: no key".into());
    };
    let Some(slot) = slot else {
        print!("{text}");
        return Ok(());
    };
    let (path, replaces) = (slot.path().to_path_buf(), slot.replaces());
    if let Err(e) = slot.fill(&text) {
        if rescue {
            print!("{text}");
            return Err(format!(
                "cannot write key file {}: {e}; the new key of {code} is printed above (the old one no longer works)",
                path.display()
            ));
        }
        return Err(format!("cannot write key file {}: {e}", path.display()));
    }
    let how = if replaces { "replaced" } else { "written to" };
    println!("key for {code} {how} {} (mode 0600)", path.display());
    Ok(())
}

/// The man pages and shell completions, from the same definitions as `--help`.
fn generate(man: &std::path::Path, completions: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    zones::manual::generate(Cli::command(), "nameserver", man, completions)
}
