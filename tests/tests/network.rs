//! A small network built from Linux network namespaces that this test creates: a directory
//! host routing between two links, terminal A and terminal B, each with its own MAC and
//! addresses (10.77.0.0/16, inside the namespaces only). Needs root (CI runs as root).
//!
//! ```text
//!   A (va 10.77.1.2) ── (da 10.77.1.1) directory (db 10.77.2.1) ── (vb 10.77.2.2 → .3) B
//! ```

mod support;

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{Nameserver, binary, command_in, require, text};

const CODE: &str = "5550002";
const NAME: &str = "5550002.dial.example";
const B_MAC: &str = "02:00:00:77:00:0b";

/// The namespaces and links; removed on drop.
struct Lab {
    dir: String,
    a: String,
    b: String,
    children: Vec<Child>,
}

impl Lab {
    fn build() -> Self {
        require("ip", "iproute2");
        let uid = Command::new("id").arg("-u").output().expect("run id");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test creates network namespaces (ip netns add) and needs root; CI runs as root. \
             As another user, run it as root or in a VM."
        );
        // Namespaces are global: names unique to this process and to this lab in it.
        static LABS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = LABS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let lab = Self {
            dir: format!("dialdir{id}"),
            a: format!("diala{id}"),
            b: format!("dialb{id}"),
            children: Vec::new(),
        };
        for ns in [&lab.dir, &lab.a, &lab.b] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", &lab.a, "link", "add", "va", "type", "veth", "peer", "name", "da", "netns",
            &lab.dir,
        ]);
        ip(&[
            "-n", &lab.b, "link", "add", "vb", "address", B_MAC, "type", "veth", "peer", "name",
            "db", "netns", &lab.dir,
        ]);
        ip(&["-n", &lab.dir, "addr", "add", "10.77.1.1/24", "dev", "da"]);
        ip(&["-n", &lab.dir, "addr", "add", "10.77.2.1/24", "dev", "db"]);
        ip(&["-n", &lab.a, "addr", "add", "10.77.1.2/24", "dev", "va"]);
        ip(&["-n", &lab.b, "addr", "add", "10.77.2.2/24", "dev", "vb"]);
        for (ns, dev) in [
            (&lab.dir, "da"),
            (&lab.dir, "db"),
            (&lab.a, "va"),
            (&lab.b, "vb"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&["-n", &lab.a, "route", "add", "default", "via", "10.77.1.1"]);
        ip(&["-n", &lab.b, "route", "add", "default", "via", "10.77.2.1"]);
        sysctl(&lab.dir, "net.ipv4.ip_forward=1");
        // Keep the other addresses of the subnet when the primary one is removed.
        sysctl(&lab.b, "net.ipv4.conf.all.promote_secondaries=1");
        sysctl(&lab.b, "net.ipv4.conf.vb.promote_secondaries=1");
        lab
    }

    fn spawn(&mut self, ns: &str, program: &str, args: &[&str], stdin: Stdio) -> usize {
        let child = command_in(Some(ns), program)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.dir, &self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&out)
    );
}

fn sysctl(ns: &str, setting: &str) {
    let out = command_in(Some(ns), "sysctl")
        .args(["-q", "-w", setting])
        .output()
        .expect("run sysctl");
    assert!(out.status.success(), "sysctl {setting}: {}", text(&out));
}

fn run_in(ns: &str, program: &str, args: &[&str], input: &str) -> Output {
    let mut child = command_in(Some(ns), program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    wait_bounded(child, Duration::from_secs(15))
}

/// Waits for a child at most `limit`, then kills it; returns its output.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Polls dig at the directory until the A answer is `expected`; returns how long it took.
fn wait_for_a(server: &Nameserver, expected: &[&str], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if server.short(NAME, "A") == expected {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// B listens on `port`, answering `reply`; returns its index in the lab's children.
fn listen(lab: &mut Lab, port: &str, reply: &str) -> usize {
    let b = lab.b.clone();
    let script = format!("echo {reply} | nc -l -N {port}");
    let index = lab.spawn(&b, "sh", &["-c", &script], Stdio::null());
    std::thread::sleep(Duration::from_millis(300));
    index
}

fn finish(lab: &mut Lab, index: usize) -> Output {
    let child = std::mem::replace(
        &mut lab.children[index],
        Command::new("true").spawn().unwrap(),
    );
    wait_bounded(child, Duration::from_secs(10))
}

/// SIGTERM to B's updater, which must withdraw and exit 0.
fn stop_updater(lab: &mut Lab, daemon: usize) {
    let pid = lab.children[daemon].id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopped = finish(lab, daemon);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped));
}

impl Lab {
    /// The directory in the lab's own namespace, listening on `addrs`, its data in `dir`.
    fn directory(&self, dir: &std::path::Path, addrs: &[&str]) -> Nameserver {
        let listen: Vec<&str> = addrs.iter().flat_map(|a| ["--listen", a]).collect();
        Nameserver::start_in(Some(&self.dir), &dir.join("data"), &listen, &[])
    }
}

/// Registers terminal B under the MID its own updater prints for its card (`identity`,
/// with `flags`); returns the path of B's key file, written in `dir`.
fn register_b(
    lab: &Lab,
    server: &Nameserver,
    updater: &str,
    dir: &std::path::Path,
    flags: &[&str],
) -> std::path::PathBuf {
    let mut args = vec!["identity", "--kid", "fleet", "--interface", "vb"];
    args.extend_from_slice(flags);
    let identity = run_in(&lab.b, updater, &args, "");
    assert!(identity.status.success(), "{}", text(&identity));
    let mid = String::from_utf8_lossy(&identity.stdout).trim().to_owned();
    server.register(CODE, "fleet", &mid, dir)
}

#[test]
fn terminals_in_namespaces_follow_address_changes_and_call_each_other() {
    require("nc", "netcat-openbsd");
    require("dig", "bind9-dnsutils");
    let mut lab = Lab::build();
    let tmp = tempfile::tempdir().unwrap();
    let updater = binary("updater");
    let updater = updater.to_str().unwrap();

    // The directory listens on both links.
    let server = lab.directory(tmp.path(), &["10.77.2.1:5353", "10.77.1.1:5353"]);

    // The operator registers B with the MID that B's updater prints from its own card.
    let key = register_b(&lab, &server, updater, tmp.path(), &[]);
    let key = key.to_str().unwrap();

    // B runs the updater as a daemon.
    let b = lab.b.clone();
    let daemon_args = [
        "run",
        "--server",
        "10.77.2.1:5353",
        "--zone",
        "dial.example",
        "--code",
        CODE,
        "--key-file",
        key,
        "--interface",
        "vb",
        "--allow-private",
        "--lease",
        "600",
    ];
    let daemon = lab.spawn(&b, updater, &daemon_args, Stdio::null());
    let first = wait_for_a(&server, &["10.77.2.2"], Duration::from_secs(10));
    assert!(
        first.is_some(),
        "B's first address never reached the directory: {:?}",
        server.short(NAME, "A")
    );

    // B's address changes, as on a new connection.
    let changed = Instant::now();
    ip(&["-n", &lab.b, "addr", "add", "10.77.2.3/24", "dev", "vb"]);
    ip(&["-n", &lab.b, "addr", "del", "10.77.2.2/24", "dev", "vb"]);
    ip(&[
        "-n",
        &lab.b,
        "route",
        "replace",
        "default",
        "via",
        "10.77.2.1",
    ]);
    let seen = wait_for_a(&server, &["10.77.2.3"], Duration::from_secs(5));
    let seen = seen.map(|_| changed.elapsed());
    println!("address change reached the directory in {seen:?}");
    assert!(
        seen.is_some_and(|d| d <= Duration::from_secs(2)),
        "dig did not return B's new address within 2 s: {seen:?}, now {:?}",
        server.short(NAME, "A")
    );

    // A looks B up with dig and calls it with nc.
    let listener = listen(&mut lab, "7000", "reply-over-nc");
    let looked_up = run_in(
        &lab.a,
        "dig",
        &["@10.77.1.1", "-p", "5353", "+short", NAME, "A"],
        "",
    );
    let address = String::from_utf8_lossy(&looked_up.stdout).trim().to_owned();
    assert_eq!(address, "10.77.2.3");
    let a_side = run_in(&lab.a, "nc", &["-N", &address, "7000"], "hello-over-nc\n");
    let b_side = finish(&mut lab, listener);
    assert_eq!(
        String::from_utf8_lossy(&b_side.stdout),
        "hello-over-nc\n",
        "{}",
        text(&b_side)
    );
    assert_eq!(
        String::from_utf8_lossy(&a_side.stdout),
        "reply-over-nc\n",
        "{}",
        text(&a_side)
    );

    // A calls B with the updater's dial.
    let listener = listen(&mut lab, "7001", "reply-over-dial");
    let dial = [
        "dial",
        "--server",
        "10.77.1.1:5353",
        "--zone",
        "dial.example",
        CODE,
        "7001",
    ];
    let a_side = run_in(&lab.a, updater, &dial, "hello-over-dial\n");
    let b_side = finish(&mut lab, listener);
    assert!(a_side.status.success(), "{}", text(&a_side));
    assert_eq!(String::from_utf8_lossy(&b_side.stdout), "hello-over-dial\n");
    assert_eq!(String::from_utf8_lossy(&a_side.stdout), "reply-over-dial\n");

    // B stops: its code answers NODATA, and dial says "offline".
    stop_updater(&mut lab, daemon);
    assert_eq!(server.status(&[NAME, "A"]), "NOERROR");
    assert!(
        server.short(NAME, "A").is_empty(),
        "B is still listed after SIGTERM"
    );
    let offline = run_in(&lab.a, updater, &dial, "");
    assert_eq!(offline.status.code(), Some(4), "{}", text(&offline));
}

/// The portable source (`--watch poll`: getifaddrs read every second, as on macOS and the
/// BSDs) finds B's card and MAC and follows its address change, here on Linux.
#[test]
fn the_portable_watcher_follows_address_changes_too() {
    require("dig", "bind9-dnsutils");
    let mut lab = Lab::build();
    let tmp = tempfile::tempdir().unwrap();
    let updater = binary("updater");
    let updater = updater.to_str().unwrap();
    let server = lab.directory(tmp.path(), &["10.77.2.1:5353"]);
    let key = register_b(&lab, &server, updater, tmp.path(), &["--watch", "poll"]);
    let b = lab.b.clone();
    let daemon = lab.spawn(
        &b,
        updater,
        &[
            "run",
            "--server",
            "10.77.2.1:5353",
            "--code",
            CODE,
            "--key-file",
            key.to_str().unwrap(),
            "--interface",
            "vb",
            "--allow-private",
            "--watch",
            "poll",
        ],
        Stdio::null(),
    );
    assert!(
        wait_for_a(&server, &["10.77.2.2"], Duration::from_secs(10)).is_some(),
        "B's first address never reached the directory: {:?}",
        server.short(NAME, "A")
    );
    let changed = Instant::now();
    ip(&["-n", &lab.b, "addr", "add", "10.77.2.3/24", "dev", "vb"]);
    ip(&["-n", &lab.b, "addr", "del", "10.77.2.2/24", "dev", "vb"]);
    let seen =
        wait_for_a(&server, &["10.77.2.3"], Duration::from_secs(6)).map(|_| changed.elapsed());
    println!("address change reached the directory in {seen:?} (polling every second)");
    assert!(
        seen.is_some_and(|d| d <= Duration::from_secs(3)),
        "dig did not return B's new address within 3 s (a poll, then the update): {seen:?}, now {:?}",
        server.short(NAME, "A")
    );
    stop_updater(&mut lab, daemon);
    assert!(
        server.short(NAME, "A").is_empty(),
        "B is still listed after SIGTERM"
    );
}

/// `updater enroll` in terminal `ns` on card `dev`: its output (stdout `CODE KEYNAME`).
fn enroll_in(ns: &str, updater: &str, token: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "enroll",
        "--server",
        "10.77.1.1:5353",
        "--zone",
        "dial.example",
        "--token",
        token,
    ];
    args.extend_from_slice(extra);
    run_in(ns, updater, &args, "")
}

/// A token from `nameserver token create`, with `flags`.
fn create_token(server: &Nameserver, flags: &[&str]) -> String {
    let mut args = vec!["token", "create"];
    args.extend_from_slice(flags);
    let out = server.admin(&args);
    assert!(out.status.success(), "token create: {}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        token.lines().count(),
        1,
        "one line, nothing else: {token:?}"
    );
    token
}

/// How many terminals `nameserver list --json` shows.
fn registered(server: &Nameserver) -> usize {
    let out = server.admin(&["list", "--json"]);
    assert!(out.status.success(), "list: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"code\""))
        .count()
}

/// Two terminals enroll themselves with one token of two uses (no key carried by hand),
/// publish with the keys they derived, and call each other; a third enrollment, a revoked
/// token, a wrong token and a suspended customer are refused with a clear message and
/// change nothing; `nsupdate -k` works with an enrolled key.
#[test]
fn terminals_enroll_themselves_with_a_two_use_token_and_call_each_other() {
    require("nc", "netcat-openbsd");
    require("dig", "bind9-dnsutils");
    require("nsupdate", "bind9-dnsutils");
    let mut lab = Lab::build();
    let tmp = tempfile::tempdir().unwrap();
    let updater = binary("updater");
    let updater = updater.to_str().unwrap();
    let server = lab.directory(tmp.path(), &["10.77.2.1:5353", "10.77.1.1:5353"]);
    let token = create_token(&server, &["--kid", "fleet", "--uses", "2"]);
    let (a, b) = (lab.a.clone(), lab.b.clone());

    // Each terminal enrolls from its own namespace, on its own card.
    let a_key = tmp.path().join("a.key");
    let a_key_s = a_key.to_str().unwrap();
    let enrolled_a = enroll_in(
        &a,
        updater,
        &token,
        &["--interface", "va", "--key-file", a_key_s],
    );
    assert!(enrolled_a.status.success(), "{}", text(&enrolled_a));
    let a_line = String::from_utf8_lossy(&enrolled_a.stdout)
        .trim()
        .to_owned();
    let (a_code, a_key_name) = a_line.split_once(' ').expect("CODE KEYNAME");
    let b_key = tmp.path().join("b.key");
    let b_key_s = b_key.to_str().unwrap();
    let b_args = ["--interface", "vb", "--code", CODE, "--key-file", b_key_s];
    let enrolled_b = enroll_in(&b, updater, &token, &b_args);
    assert!(enrolled_b.status.success(), "{}", text(&enrolled_b));
    assert!(String::from_utf8_lossy(&enrolled_b.stdout).starts_with(&format!("{CODE} ")));
    use std::os::unix::fs::PermissionsExt;
    for key in [&a_key, &b_key] {
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let a_file = std::fs::read_to_string(&a_key).unwrap();
    assert!(a_file.contains(a_key_name), "{a_file}");
    assert_eq!(registered(&server), 2);

    // The third attempt with the same token is refused, and changes nothing.
    let third = enroll_in(&a, updater, &token, &["--mac", "02:00:00:77:00:99"]);
    assert_eq!(third.status.code(), Some(1), "{}", text(&third));
    assert!(
        text(&third).contains("did not accept the token"),
        "{}",
        text(&third)
    );
    // A revoked token, and a wrong one (the right id, another secret).
    let revoked = create_token(&server, &["--kid", "fleet"]);
    let id = revoked.split('.').nth(1).unwrap();
    let out = server.admin(&["token", "revoke", id]);
    assert!(out.status.success(), "{}", text(&out));
    let wrong = format!("{}.{}", revoked.rsplit_once('.').unwrap().0, "A".repeat(43));
    for (what, bad) in [("revoked", &revoked), ("wrong", &wrong)] {
        let out = enroll_in(&a, updater, bad, &["--mac", "02:00:00:77:00:98"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(
            text(&out).contains("did not accept the token"),
            "{what}: {}",
            text(&out)
        );
    }
    // A suspended customer: a fresh token enrolls nothing, and the terminals' keys stop.
    let fresh = create_token(&server, &["--kid", "fleet"]);
    let out = server.admin(&["customer", "suspend", "fleet"]);
    assert!(out.status.success(), "{}", text(&out));
    let suspended = enroll_in(&a, updater, &fresh, &["--mac", "02:00:00:77:00:97"]);
    assert_eq!(suspended.status.code(), Some(1), "{}", text(&suspended));
    assert!(
        text(&suspended).contains("customer fleet is suspended"),
        "{}",
        text(&suspended)
    );
    let update = "update add 5550002.dial.example. 60 A 10.77.2.2\nsend\n";
    let refused = run_in(
        &b,
        "nsupdate",
        &["-t", "3", "-k", b_key_s],
        &format!("server 10.77.2.1 5353\n{update}"),
    );
    assert!(
        !refused.status.success(),
        "a suspended customer's key updated"
    );
    assert_eq!(registered(&server), 2, "the refusals changed nothing");
    let out = server.admin(&["customer", "resume", "fleet"]);
    assert!(out.status.success(), "{}", text(&out));

    // nsupdate works with B's enrolled key.
    let script = format!("server 10.77.2.1 5353\n{update}");
    let nsupdate = run_in(&b, "nsupdate", &["-t", "3", "-k", b_key_s], &script);
    assert!(nsupdate.status.success(), "{}", text(&nsupdate));
    assert!(wait_for_a(&server, &["10.77.2.2"], Duration::from_secs(5)).is_some());

    // A publishes with its enrolled key; each calls the other with `updater dial`.
    let once = [
        "once",
        "--server",
        "10.77.1.1:5353",
        "--zone",
        "dial.example",
        "--code",
        a_code,
        "--key-file",
        a_key_s,
        "--interface",
        "va",
        "--allow-private",
    ];
    let published = run_in(&a, updater, &once, "");
    assert!(published.status.success(), "{}", text(&published));
    assert_eq!(
        server.short(&format!("{a_code}.dial.example"), "A"),
        ["10.77.1.2"]
    );

    // A calls B, then B calls A, each with `updater dial` through its own link.
    call(&mut lab, (&a, "10.77.1.1:5353"), (&b, CODE), "7002");
    call(&mut lab, (&b, "10.77.2.1:5353"), (&a, a_code), "7003");
}

/// `updater dial` from namespace `caller` (asking the directory at `server`) to `code`,
/// whose terminal listens on `port` in namespace `callee`; each side gets the other's line.
fn call(lab: &mut Lab, (caller, server): (&str, &str), (callee, code): (&str, &str), port: &str) {
    let updater = binary("updater");
    let script = format!("echo {callee}-answers | nc -l -N {port}");
    let listener = lab.spawn(callee, "sh", &["-c", &script], Stdio::null());
    std::thread::sleep(Duration::from_millis(300));
    let dial = [
        "dial",
        "--server",
        server,
        "--zone",
        "dial.example",
        code,
        port,
    ];
    let calling = format!("{caller}-calls\n");
    let caller_side = run_in(caller, updater.to_str().unwrap(), &dial, &calling);
    let callee_side = finish(lab, listener);
    assert!(caller_side.status.success(), "{}", text(&caller_side));
    assert_eq!(String::from_utf8_lossy(&callee_side.stdout), calling);
    assert_eq!(
        String::from_utf8_lossy(&caller_side.stdout),
        format!("{callee}-answers\n")
    );
}
