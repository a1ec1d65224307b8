//! `--parts scale`: the directory's start-up and memory against the number of terminals.
//! For each size in `--scale-codes`, a fleet of that size and shape is generated, and in
//! each round imported into a fresh store; the server is restarted, and the time from the
//! start of the process to its first answer and its resident memory then are taken.

use std::path::Path;
use std::time::Duration;

use crate::report::ScaleFigures;
use crate::{Data, Options, Server, free_port};

/// Every size, every round.
pub fn run(nameserver: &Path, dir: &Path, o: &Options) -> Vec<ScaleFigures> {
    let mut figures = Vec::new();
    for &codes in &o.scale_codes {
        let sized = dir.join(format!("scale-{codes}"));
        std::fs::create_dir_all(&sized).expect("a directory for the size");
        let data = Data::generate(&sized, codes, 1, o.fleet);
        for round in 0..o.rounds {
            let data_dir = sized.join(format!("data-{round}"));
            let port = free_port();
            let server = Server::ours(nameserver, &sized, &data_dir, port, &[]);
            server.wait_ready(Duration::from_secs(30));
            crate::import(nameserver, &data.fleet, &data_dir);
            drop(server);
            let server = Server::ours(nameserver, &sized, &data_dir, port, &[]);
            let startup = server.wait_ready(Duration::from_secs(120));
            let figure = ScaleFigures {
                terminals: codes,
                startup_s: startup.as_secs_f64(),
                rss_mib: server.rss_kib() as f64 / 1024.0,
            };
            println!("scale: {figure:?}");
            figures.push(figure);
            drop(server);
            let _ = std::fs::remove_dir_all(&data_dir);
        }
    }
    figures
}
