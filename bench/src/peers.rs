//! The peers: Knot and NSD answering the exported zone as primaries; BIND and Knot also
//! taking signed updates for it. Each is kept on core 1 ([`crate::confine`]), as the
//! directory is.

use std::path::Path;
use std::process::Stdio;

use crate::{Server, free_port};

#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Knot,
    /// Knot signing the zone (and each update): ECDSA P-256 CSK, NSEC3 as ours.
    KnotDnssec,
    Nsd,
    Bind,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Self::Knot => "knot",
            Self::KnotDnssec => "knot+dnssec",
            Self::Nsd => "nsd",
            Self::Bind => "bind",
        }
    }

    pub fn accepts_updates(self) -> bool {
        matches!(self, Self::Knot | Self::KnotDnssec | Self::Bind)
    }

    pub fn program(self) -> &'static str {
        match self {
            Self::Knot | Self::KnotDnssec => "knotd",
            Self::Nsd => "nsd",
            Self::Bind => "named",
        }
    }
}

/// True if `tool` is on the PATH (or in /usr/sbin).
pub fn installed(tool: &str) -> bool {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.iter().any(|d| d.join(tool).is_file())
}

fn secret_of(key_file: &Path) -> String {
    let text = std::fs::read_to_string(key_file).unwrap_or_default();
    text.split('"').nth(3).unwrap_or_default().to_owned()
}

/// Starts a peer on a free port with the zone file; `Err` says why it cannot run.
pub fn start(peer: Peer, work: &Path, zone_file: &Path, key_file: &Path) -> Result<Server, String> {
    if !installed(peer.program()) {
        return Err(format!("`{}` is not installed", peer.program()));
    }
    let dir = work.join(peer.name());
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let zone = dir.join("dial.example.zone");
    std::fs::copy(zone_file, &zone).map_err(|e| e.to_string())?;
    let port = free_port();
    let secret = secret_of(key_file);
    let (d, z) = (dir.display(), zone.display());
    let (conf, args): (String, Vec<String>) = match peer {
        Peer::Knot | Peer::KnotDnssec => {
            let (policy, signing) = if matches!(peer, Peer::KnotDnssec) {
                (
                    "policy:\n  - id: signed\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n    nsec3: on\n    nsec3-iterations: 0\n    nsec3-salt-length: 0\n",
                    "    dnssec-signing: on\n    dnssec-policy: signed\n",
                )
            } else {
                ("", "")
            };
            (
                format!(
                    "server:\n  listen: 127.0.0.1@{port}\n  rundir: \"{d}\"\n\
                     log:\n  - target: \"{d}/knot.log\"\n    any: warning\n\
                     database:\n  storage: \"{d}\"\n\
                     key:\n  - id: bench-updates\n    algorithm: hmac-sha256\n    secret: \"{secret}\"\n\
                     acl:\n  - id: updates\n    key: bench-updates\n    action: update\n\
                     {policy}\
                     template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n\
                     zone:\n  - domain: dial.example\n    file: \"{z}\"\n    acl: updates\n{signing}"
                ),
                vec!["-c".into()],
            )
        }
        Peer::Nsd => (
            format!(
                "server:\n  ip-address: 127.0.0.1@{port}\n  do-ip6: no\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  database: \"\"\n  username: \"\"\n  chroot: \"\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  rrl-ratelimit: 0\n\
                 remote-control:\n  control-enable: no\n\
                 zone:\n  name: \"dial.example\"\n  zonefile: \"{z}\"\n"
            ),
            vec!["-d".into(), "-c".into()],
        ),
        Peer::Bind => (
            format!(
                "options {{ directory \"{d}\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; \
                 pid-file \"{d}/named.pid\"; recursion no; notify no; dnssec-validation no; }};\n\
                 controls {{ }};\n\
                 key \"bench-updates\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
                 zone \"dial.example\" {{ type primary; file \"{z}\"; update-policy {{ grant bench-updates zonesub ANY; }}; }};\n"
            ),
            vec!["-g".into(), "-c".into()],
        ),
    };
    let conf_path = dir.join(format!("{}.conf", peer.name()));
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let child = crate::confine::on_core_one(peer.program())
        .args(&args)
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    Ok(Server::new(child, port))
}
