//! unbound as a validating resolver of one zone: a trust anchor and a stub zone.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{command_in, free_port, require, status_of};

const ZONE: &str = "dial.example";

/// An unbound resolver on a loopback port, validating `dial.example` from its DS, killed on
/// drop.
pub struct Unbound {
    port: u16,
    child: Child,
    log: PathBuf,
    /// The network namespace it runs in (`None`: this one).
    netns: Option<String>,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Unbound {
    /// Starts unbound with `ds` (a DS record line) as the trust anchor, sending the zone's
    /// queries to `upstream` (a loopback port). Nothing is cached, so every answer is asked
    /// and validated afresh.
    pub fn start(dir: &Path, ds: &str, upstream: u16) -> Self {
        Self::start_in(None, dir, ds, &[format!("127.0.0.1@{upstream}")])
    }

    /// Starts unbound as [`Unbound::start`] does, in the network namespace `netns` (on its
    /// loopback), sending the zone's queries to the servers `stubs` (`ADDRESS@PORT`).
    pub fn start_in(netns: Option<&str>, dir: &Path, ds: &str, stubs: &[String]) -> Self {
        require("unbound", "unbound");
        let port = free_port();
        let log = dir.join("unbound.log");
        let conf = dir.join("unbound.conf");
        let stubs: String = stubs
            .iter()
            .map(|s| format!("  stub-addr: {s}\n"))
            .collect();
        std::fs::write(
            &conf,
            format!(
                "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-not-query-localhost: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"{log}\"\n  verbosity: 1\n  val-log-level: 2\n  cache-max-ttl: 0\n  cache-max-negative-ttl: 0\n  module-config: \"validator iterator\"\n  trust-anchor: \"{ds}\"\nstub-zone:\n  name: \"{ZONE}\"\n{stubs}",
                dir = dir.display(),
                log = log.display(),
                ds = ds.trim(),
            ),
        )
        .unwrap();
        let child = command_in(netns, "unbound")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start unbound");
        let unbound = Self {
            port,
            child,
            log,
            netns: netns.map(str::to_owned),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !unbound.dig(&["+short", ZONE, "SOA"]).contains(ZONE) {
            assert!(
                Instant::now() < deadline,
                "unbound did not answer: {}",
                unbound.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        unbound
    }

    pub fn dig(&self, args: &[&str]) -> String {
        let out = command_in(self.netns.as_deref(), "dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+time=3",
                "+tries=1",
            ])
            .args(args)
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The status of a validated lookup, whether it carried AD, and its answer records.
    pub fn lookup(&self, name: &str, rtype: &str) -> Lookup {
        let out = self.dig(&["+dnssec", name, rtype]);
        let flags = out
            .lines()
            .find(|l| l.starts_with(";; flags:"))
            .unwrap_or_default()
            .to_owned();
        Lookup {
            status: status_of(&out),
            authenticated: flags
                .trim_start_matches(";; flags:")
                .split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .any(|f| f == "ad"),
            answers: out
                .split(";; ANSWER SECTION:")
                .nth(1)
                .map(|s| s.split("\n\n").next().unwrap_or_default().to_owned())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug)]
pub struct Lookup {
    pub status: String,
    pub authenticated: bool,
    pub answers: String,
}
