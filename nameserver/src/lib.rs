//! The calling-code directory's authoritative DNS server.
//!
//! How a request flows:
//!
//! ```text
//!  UDP socket ─▶ udp::serve (a worker per core, mmsg batches) ─▶ Pipeline::answer_datagram
//!                 ─▶ fast::FastPath (A/AAAA/NXDOMAIN of a code, from the bytes) or on below
//!  TCP socket ─▶ tcp::serve (connection limits, framing, idle and slow-reader timeouts)
//!  TLS socket ─▶ tcp::serve with tls::Tls (a handshake first; DNS over TLS, RFC 7858)
//!    ─▶ pipeline::Pipeline::answer, one stage after another, each once:
//!         classify     (header, opcode, question → Kind; responses never answered)
//!         edns         (response OPT, COOKIE; BADVERS)
//!         authenticate (TSIG checked once → Principal: anonymous, terminal, transfer key,
//!                       enrollment token; a suspended or unapproved terminal's key refused)
//!         admit        (RRL verdict; signed lookups, transfer keys; update budget)
//!         handle_query ─▶ query::answer (zone + directory view; with DO in a signed zone:
//!                                       RRSIGs, NSEC3 or compact denial)
//!         handle_transfer ─▶ transfer::{axfr, ixfr}
//!         handle_update ─▶ zones::Directory::update (RFC 2136 steps, redb commit, group fdatasync)
//!         handle_enroll ─▶ zones::Directory::enroll (token, customer, X25519 + HKDF, group
//!                          fdatasync) ─▶ the answer's TXT, signed with the token's key
//!         finish       (Refusal → its RCODE, TSIG error, EDE, metric, log; slip; OPT;
//!                       truncation; TSIG) ─▶ Sink (datagram, TCP frame, stream)
//!
//!  a cluster's follower: UPDATE ─▶ Pipeline::answer ─▶ relay::Relay (cluster::Cluster)
//!         ─▶ the leader's cluster listener ─▶ Pipeline::answer_here ─▶ … ─▶ its answer
//!  a cluster's leader: Directory ─▶ Store::flush ─▶ Raft log entry (cluster::node) ─▶ a
//!         majority's logs ─▶ every node's StateMachine ─▶ Directory::apply_replicated
//!  directory serial changes ─▶ notify::Followers ─▶ NOTIFY (hickory-net client)
//!  admin command ─▶ control socket (JSON line) ─▶ control::execute ─▶ zones::Directory
//!  token, approve, customer ─▶ control socket ─▶ customers::execute ─▶ zones::Directory
//!  import ─▶ fleet_order (entries by code) ─▶ import-batch lines (staged) … import-commit
//!         ─▶ zones::Directory::commit_import
//!  backup ─▶ control `backup` ─▶ one read transaction streamed as lines ─▶ FILE (0600)
//!  restore FILE ─▶ zones::restore (no server) ─▶ DATA/store
//!  SIGHUP, control `reload` ─▶ reload::serve ─▶ config and zone files read again
//!                             ─▶ Directory::reload_zone, Pipeline::reload, notify::Notifier
//!  GET /metrics ─▶ scrape::serve ─▶ metrics::render (counters from the paths above)
//!  signed start ─▶ Directory::open_signing (terminals served; DO SERVFAIL, transfers wait;
//!                  the signatures read beside them: the copy saved at the stop, or the store)
//!               ─▶ SignedStart::finish, own thread ─▶ signatures in force ─▶ log `ready`
//!  shutdown ─▶ listeners drained ─▶ Directory::keep_signatures (SOA signature, saved copy)
//!           ─▶ flush
//!  signed zone, each second ─▶ Directory::advance_keys (rollover), refresh_signatures
//!  dnssec ds | keys | rollover ─▶ control socket ─▶ zones::Directory (keys in the store)
//! ```
//!
//! Modules:
//! - [`config`]: settings from defaults, the TOML file and flags.
//! - [`cluster`]: a cluster node: consensus (openraft), its log and state in the store,
//!   its encrypted channels, relaying to the leader, `cluster status`.
//! - [`relay`]: what a cluster's follower hands the leader (the pipeline's and the control
//!   socket's side of it).
//! - [`sample`]: the sample config file, written from those defaults.
//! - [`server`]: binds the sockets, runs the listeners, shuts down.
//! - [`udp`]: DNS over UDP: workers that answer inline, updates on their own tasks.
//! - [`tcp`]: DNS over TCP (and TLS) with connection limits and streaming answers.
//! - [`tls`]: DNS over TLS: the certificate (given, or self-signed in the data directory) and its pin.
//! - [`mmsg`]: datagrams in batches (`recvmmsg`, `sendmmsg`) for the UDP workers.
//! - [`fast`]: the wire-level path for the common answers, no decoding or allocation.
//! - [`pipeline`]: every request's stages, from bytes to the answer's bytes.
//! - [`query`]: answers from the zone and the directory.
//! - [`plan`]: a terminal's answer, decided once for the fast path and the full path.
//! - [`transfer`]: AXFR and IXFR to secondaries; zone-file export.
//! - [`notify`]: NOTIFY to secondaries after each change.
//! - [`tsig`]: TSIG verification (BADKEY, BADSIG, BADTIME) and response signing.
//! - [`response`]: a reply under construction.
//! - [`control`]: the control socket, server and client sides.
//! - [`customers`]: enrollment's administration: tokens, approval, customers.
//! - [`refusal`]: every reason a request is refused, and its RCODE, TSIG error, EDE, metric and log.
//! - [`ratelimit`]: response rate limiting (RRL) and the per-key update limit.
//! - [`cookie`]: DNS Cookies, server side.
//! - [`admin`]: what the admin commands print and write.
//! - [`key_text`]: the zone's DNSSEC keys and DS records as `dnssec keys` and `dnssec ds` print them.
//! - [`utc`]: Unix seconds as UTC text.
//! - [`import`]: `nameserver import`'s client: streamed batches, key bundle, progress.
//! - [`fleet_order`]: a fleet file's entries in the store's order, with bounded memory.
//! - [`backup`]: `nameserver backup` and `restore`: snapshot to a file, file to a store.
//! - [`reload`]: live reload of the config and zone files (control `reload`, SIGHUP).
//! - [`metrics`]: what is counted (atomics per label), and its Prometheus exposition.
//! - `testing` (feature `testing`): what the tests and the fuzzer share.
//! - [`scrape`]: the `--metrics` HTTP endpoint that serves it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backup;
pub mod cluster;
pub mod config;
pub mod control;
pub mod cookie;
pub mod customers;
pub mod fast;
pub mod fleet_order;
pub mod import;
pub mod key_text;
pub mod metrics;
pub mod mmsg;
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod query;
pub mod ratelimit;
pub mod refusal;
pub mod relay;
pub mod reload;
pub mod response;
pub mod sample;
pub mod scrape;
pub mod server;
pub mod tcp;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod transfer;
pub mod tsig;
pub mod udp;
pub mod utc;
