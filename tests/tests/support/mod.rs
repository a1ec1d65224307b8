//! Helpers for end-to-end tests: build and run the real binaries, and drive the real tools.
#![allow(dead_code)]

pub mod unbound;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Fails the test, naming the Debian package, when a tool is missing.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed; this test needs it: apt-get install {package}"
    );
}

/// The workspace's binaries, built once per test run with the same profile as the tests.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bins"])
            .current_dir(workspace())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bins failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let path = target.join("debug").join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A command, run inside network namespace `netns` when one is given.
pub fn command_in(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// A `nameserver serve` process with a port of its choosing (or the addresses given).
pub struct Nameserver {
    child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// The network namespace it runs in, if not this one.
    pub netns: Option<String>,
    log: Arc<Mutex<String>>,
}

impl Nameserver {
    /// Starts the server on `data` with extra `serve` flags; waits until it serves
    /// everything (a signed zone: its signatures too).
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_in(None, data, &["--listen", "127.0.0.1:0"], extra)
    }

    /// Starts the server inside a network namespace, listening where `listen` says.
    pub fn start_in(netns: Option<&str>, data: &Path, listen: &[&str], extra: &[&str]) -> Self {
        Self::spawn(
            command_in(netns, binary("nameserver")),
            netns,
            data,
            listen,
            extra,
        )
    }

    /// Starts the server under another program, e.g. `strace -o LOG`.
    pub fn start_under(wrapper: &[&str], data: &Path, extra: &[&str]) -> Self {
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(binary("nameserver"));
        Self::spawn(command, None, data, &["--listen", "127.0.0.1:0"], extra)
    }

    fn spawn(
        mut command: Command,
        netns: Option<&str>,
        data: &Path,
        listen: &[&str],
        extra: &[&str],
    ) -> Self {
        let mut child = command
            .arg("serve")
            .args(listen)
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "info,hickory_server=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nameserver");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut addr = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(bound) = line.split("listening on ").nth(1) {
                    let bound = bound.split_whitespace().next().unwrap_or_default();
                    addr.get_or_insert_with(|| bound.to_owned());
                }
                // Everything is served (a signed zone: its signatures are in force).
                if line.contains("nameserver::server: ready") {
                    let _ = tx.send(addr.clone().unwrap_or_default());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!("nameserver did not start:\n{}", log.lock().unwrap());
            }
        };
        Self {
            child,
            addr,
            data: data.to_path_buf(),
            netns: netns.map(str::to_owned),
            log,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Runs an admin subcommand against this server.
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(binary("nameserver"))
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .output()
            .expect("run nameserver admin command")
    }

    /// Registers a code and writes its key file; returns the key file's path.
    pub fn register(&self, code: &str, kid: &str, mid: &str, dir: &Path) -> PathBuf {
        let key = dir.join(format!("{code}.key"));
        let out = self.admin(&[
            "register",
            "--code",
            code,
            "--kid",
            kid,
            "--mid",
            mid,
            "--key-file",
            key.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "register failed: {}", text(&out));
        key
    }

    /// `dig` at this server; returns stdout.
    pub fn dig(&self, args: &[&str]) -> String {
        require("dig", "bind9-dnsutils");
        let out = command_in(self.netns.as_deref(), "dig")
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.port(), "+time=2", "+tries=2"])
            .args(args)
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `dig +short` for a name and type.
    pub fn short(&self, name: &str, rtype: &str) -> Vec<String> {
        self.dig(&["+short", name, rtype])
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The SOA serial this server answers for `zone`.
    pub fn serial(&self, zone: &str) -> u32 {
        let soa = self.short(zone, "SOA");
        soa.first()
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no SOA serial in {soa:?}"))
    }

    /// The status word of a dig answer (NOERROR, NXDOMAIN, REFUSED, ...).
    pub fn status(&self, args: &[&str]) -> String {
        status_of(&self.dig(args))
    }

    /// Runs `nsupdate` with a script (the `server` line is added), optionally with a key.
    pub fn nsupdate(&self, key: Option<&Path>, script: &str) -> Output {
        require("nsupdate", "bind9-dnsutils");
        let mut cmd = command_in(self.netns.as_deref(), "nsupdate");
        cmd.args(["-t", "3"]);
        if let Some(key) = key {
            cmd.arg("-k").arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nsupdate");
        let full = format!("server {} {}\n{script}", self.addr.ip(), self.port());
        child
            .stdin
            .take()
            .unwrap()
            .write_all(full.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `kill -9`: no shutdown path runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Nameserver {
    fn drop(&mut self) {
        // Under a wrapper (strace) the server is the wrapper's child, and killing the
        // wrapper alone would leave it running, detached: kill what runs beneath it first.
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process below `pid`, children before their own children.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut pending = vec![pid];
    while let Some(parent) = pending.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task"));
        for task in tasks.into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                pending.push(child);
            }
        }
    }
    found
}

/// The status word in dig's header line.
pub fn status_of(dig_output: &str) -> String {
    dig_output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("NO ANSWER")
        .to_owned()
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Scrapes `http://127.0.0.1:PORT/metrics` with curl and parses it with the Prometheus
/// project's own Python parser: every sample as `name{label="value",...}` (labels sorted)
/// to its value. Fails on anything the parser does not accept.
pub fn scrape(port: u16) -> std::collections::HashMap<String, f64> {
    scrape_in(None, port)
}

/// [`scrape`] in the network namespace `netns` (`None`: this one).
pub fn scrape_in(netns: Option<&str>, port: u16) -> std::collections::HashMap<String, f64> {
    require("curl", "curl");
    const PYTHON: &str = "/usr/bin/python3";
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} is not installed; apt-get install python3-prometheus-client"
    );
    let out = command_in(netns, "curl")
        .args(["-sS", "--fail", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl failed: {}", text(&out));
    const PARSE: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit("python3 lacks prometheus_client: apt-get install python3-prometheus-client")
samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        samples["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(samples))
"#;
    let mut python = Command::new(PYTHON)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    python.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let parsed = python.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "the Prometheus parser refused the scrape: {}\n{}",
        text(&parsed),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&parsed.stdout).expect("parser output")
}

/// A sample's value, 0 when absent (counters appear once counted).
pub fn sample(samples: &std::collections::HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

/// A transfer key as tsig-keygen writes it, in `dir`; returns its path and secret.
pub fn transfer_key(dir: &Path) -> (PathBuf, String) {
    let xfer = dir.join("xfer.key");
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut secret))
        .unwrap();
    let secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret);
    std::fs::write(
        &xfer,
        format!("key \"xfer\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
    )
    .unwrap();
    (xfer, secret)
}
