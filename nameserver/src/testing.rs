//! What the wire tests, the pipeline tests, the differential test, the updater's tests and
//! the fuzzer share (feature `testing`): a directory with its pipeline in this process, a
//! server on loopback sockets in this process, registration as `nameserver register` does
//! it, and a small reproducible random generator.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use zones::Directory;
use zones::directory::Limits;
use zones::key::{Algorithm, TsigKey};
use zones::zone::Zone;

use crate::config::{FileConfig, ServeFlags, Settings};
use crate::control::{self, ControlReply, ControlRequest};
use crate::pipeline::{Pipeline, Policy};
use crate::server;

/// A directory of the embedded default zone in a temporary data directory, with the
/// pipeline that answers for it: requests without sockets.
#[derive(Debug)]
pub struct InProcess {
    pub directory: Directory,
    pub pipeline: Pipeline,
    pub data: tempfile::TempDir,
}

impl InProcess {
    /// An empty directory under `policy`.
    pub fn open(policy: Policy) -> Self {
        let data = tempfile::tempdir().expect("a temporary directory");
        let directory = Directory::open(data.path(), Zone::embedded_default(), Limits::default())
            .expect("a new store");
        let pipeline = Pipeline::new(directory.clone(), policy);
        Self {
            directory,
            pipeline,
            data,
        }
    }
}

/// Registers `code` for customer `acme` with a MID made from the code, the way
/// `nameserver register` does; returns the terminal's key.
pub async fn register(directory: &Directory, code: &str) -> TsigKey {
    let mid = format!("{code:0>16}");
    register_as(directory, code, "acme", &mid).await
}

/// The same, for customer `kid` and machine `mid`.
pub async fn register_as(directory: &Directory, code: &str, kid: &str, mid: &str) -> TsigKey {
    let request = ControlRequest::Register {
        code: code.parse().expect("a calling code"),
        kid: kid.parse().expect("a KID"),
        mid: mid.parse().expect("a MID"),
        algorithm: Algorithm::HmacSha256,
    };
    match control::execute(request, directory).await {
        Ok(ControlReply::Key { key_file, .. }) => {
            TsigKey::from_key_file(&key_file).expect("the key file reads back")
        }
        other => panic!("registration of {code} failed: {other:?}"),
    }
}

/// A whole server (listeners, control, expiry, NOTIFY, reload) running in this process on
/// loopback ports, with its own data directory. Dropped, it shuts down.
#[derive(Debug)]
pub struct Served {
    /// One address per `listen` address asked for, in order, with its port.
    pub addrs: Vec<SocketAddr>,
    /// The DNS over TLS addresses (`tls_listen`), and the certificate's pin.
    pub tls_addrs: Vec<SocketAddr>,
    pub tls_pin: Option<zones::pin::Pin>,
    pub directory: Directory,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    data: Option<tempfile::TempDir>,
}

impl Served {
    /// Starts a server listening on `listen` (port 0: a free one), keeping its data in
    /// `data`, with the settings as `configure` leaves them; returns once a signed zone's
    /// signatures are in force.
    pub async fn start(
        listen: &[SocketAddr],
        data: tempfile::TempDir,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let flags = ServeFlags {
            listen: listen.to_vec(),
            data: Some(data.path().to_path_buf()),
            ..ServeFlags::default()
        };
        let mut settings = Settings::merge(FileConfig::default(), &flags).expect("settings");
        configure(&mut settings);
        let (directory, listeners) = server::bind(&settings)
            .await
            .expect("the loopback sockets and the store");
        let addrs = listeners.local_addrs();
        let tls_addrs = listeners.tls_local_addrs();
        let tls_pin = listeners.tls_config.as_ref().map(|tls| tls.pin);
        directory
            .signatures_ready()
            .await
            .expect("a signed zone's signatures are put in force");
        let shutdown = CancellationToken::new();
        let options = server::RunOptions::from(&settings);
        let run = tokio::spawn(server::run(
            directory.clone(),
            listeners,
            options,
            shutdown.clone(),
        ));
        let task = tokio::spawn(async move {
            run.await
                .expect("the server does not panic")
                .expect("the server stops cleanly");
        });
        Self {
            addrs,
            tls_addrs,
            tls_pin,
            directory,
            shutdown,
            task: Some(task),
            data: Some(data),
        }
    }

    /// Stops the server, waits until it has, and returns its data directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("the server stops");
        }
        self.data.take().expect("data until stopped")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A small, fast, reproducible random generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// The same, for `u64`.
    pub fn below_u64(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}
