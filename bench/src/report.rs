//! The results table, with ratios ours/peer.

use crate::Options;

#[derive(Debug, Clone)]
pub struct QueryFigures {
    pub name: String,
    pub qps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub lost_at_rate: f64,
    pub cpu_us_per_query: f64,
    pub peak_rss_mib: f64,
    pub startup_s: f64,
}

#[derive(Debug, Clone)]
pub struct UpdateFigures {
    pub name: String,
    pub updates_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub acknowledged: usize,
    pub failed: usize,
}

#[derive(Debug)]
pub struct Table {
    header: String,
    pub queries: Vec<QueryFigures>,
    pub updates: Vec<UpdateFigures>,
}

impl Table {
    pub fn new(o: &Options) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_default();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        Self {
            header: format!(
                "Machine: {cores} cores ({cpu}), loopback; servers pinned to core 1, dnsperf to core 0.\n\
                 {} codes; queries 80% A, 10% AAAA, 10% nonexistent; {} s per dnsperf run; latency at {} queries/s.\n\
                 Updates: {} signed updates, {} at once, {} keys (the directory: one per terminal; peers: one).\n\
                 Command: cargo run --release -p bench -- --codes {} --seconds {} --rate {} --updates {} --concurrency {} --keys {}\n",
                o.codes,
                o.seconds,
                o.rate,
                o.updates,
                o.concurrency,
                o.keys,
                o.codes,
                o.seconds,
                o.rate,
                o.updates,
                o.concurrency,
                o.keys
            ),
            queries: Vec::new(),
            updates: Vec::new(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = self.header.clone();
        out.push_str("\n| lookups | queries/s | p50 µs | p99 µs | lost at rate | CPU µs/query | peak RSS MiB | start-up s |\n|---|---|---|---|---|---|---|---|\n");
        for q in &self.queries {
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} | {:.2} |\n",
                q.name,
                q.qps,
                q.p50_us,
                q.p99_us,
                q.lost_at_rate,
                q.cpu_us_per_query,
                q.peak_rss_mib,
                q.startup_s
            ));
        }
        if let Some(ours) = self.queries.first() {
            for peer in self.queries.iter().skip(1) {
                out.push_str(&format!(
                    "| ours/{} | {:.2} | {:.2} | {:.2} | | {:.2} | {:.2} | {:.2} |\n",
                    peer.name,
                    ratio(ours.qps, peer.qps),
                    ratio(ours.p50_us, peer.p50_us),
                    ratio(ours.p99_us, peer.p99_us),
                    ratio(ours.cpu_us_per_query, peer.cpu_us_per_query),
                    ratio(ours.peak_rss_mib, peer.peak_rss_mib),
                    ratio(ours.startup_s, peer.startup_s)
                ));
            }
        }
        out.push_str("\n| updates | durable updates/s | p50 ms | p99 ms | acknowledged | failed |\n|---|---|---|---|---|---|\n");
        for u in &self.updates {
            out.push_str(&format!(
                "| {} | {:.0} | {:.2} | {:.2} | {} | {} |\n",
                u.name, u.updates_per_s, u.p50_ms, u.p99_ms, u.acknowledged, u.failed
            ));
        }
        if let Some(ours) = self.updates.first() {
            for peer in self.updates.iter().skip(1) {
                out.push_str(&format!(
                    "| ours/{} | {:.2} | {:.2} | {:.2} | | |\n",
                    peer.name,
                    ratio(ours.updates_per_s, peer.updates_per_s),
                    ratio(ours.p50_ms, peer.p50_ms),
                    ratio(ours.p99_ms, peer.p99_ms)
                ));
            }
        }
        out
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}
