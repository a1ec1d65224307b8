//! The results table: per server, the median of every round with the min-max spread, and
//! ratios of medians ours/peer.

use crate::Options;

/// Everything measured in one run, round by round.
#[derive(serde::Serialize, serde::Deserialize, Debug, Default)]
pub struct Results {
    pub queries: Vec<QueryFigures>,
    pub updates: Vec<UpdateFigures>,
    pub imports: Vec<ImportFigures>,
    pub crashes: Vec<CrashFigures>,
    pub backups: Vec<BackupFigures>,
    pub enrollments: Vec<EnrollFigures>,
    pub scale: Vec<ScaleFigures>,
}

/// The directory at one fleet size in one round (`--parts scale`).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct ScaleFigures {
    pub terminals: usize,
    /// From the start of the process to its first answer.
    pub startup_s: f64,
    /// Resident memory once it answers.
    pub rss_mib: f64,
}

/// One round of enrollments.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct EnrollFigures {
    pub name: String,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The directory's CPU (user + system) per acknowledged enrollment.
    pub cpu_us_per_enrollment: f64,
    pub enrolled: usize,
    pub failed: usize,
}

/// One server's query figures from one round.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
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

/// One server's update figures from one round.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct UpdateFigures {
    pub name: String,
    pub updates_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub acknowledged: usize,
    pub failed: usize,
}

/// The directory's provisioning figures from one round.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct ImportFigures {
    /// Which build of the directory (`directory`, `directory+dnssec`).
    pub name: String,
    pub import_s: f64,
    /// The serving process's peak RSS by the end of the import.
    pub import_peak_rss_mib: f64,
    /// The store's allocated disk blocks (as `du` counts them) per terminal, after the
    /// import and a restart.
    pub bytes_per_terminal: f64,
    /// The same at the end of the round, after the lookups and the updates.
    pub bytes_per_terminal_after_updates: f64,
    /// The store file's length per terminal (redb extends it sparsely ahead of use).
    pub file_bytes_per_terminal: f64,
    /// With `--fleet-updates`: the store's allocated bytes per terminal after them, and the
    /// serving process's peak RSS through them above its RSS before them.
    pub after_fleet_updates: Option<(f64, f64)>,
}

/// One `nameserver backup` of the running server and one `nameserver restore` of it.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct BackupFigures {
    pub backup_s: f64,
    pub restore_s: f64,
    pub file_mib: f64,
}

/// One round of `kill -9` during updates.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct CrashFigures {
    pub kills: usize,
    /// Updates acknowledged before the kills.
    pub acknowledged: usize,
    /// Terminals whose last acknowledged address was looked up after a restart.
    pub checked: usize,
    pub lost: usize,
    /// Start-up after each kill to the first answer.
    pub restarts_s: Vec<f64>,
}

/// How to read one figure from a round's results, and how many decimals to show.
type Metric<T> = (fn(&T) -> f64, usize);

/// A figure over the rounds.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Self {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    fn show(self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}-{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

#[derive(Debug)]
pub struct Table {
    header: String,
    results: Results,
}

impl Table {
    pub fn new(o: &Options, results: Results) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        // The machine's cores, not this process's (the harness is pinned to one).
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        Self {
            header: format!(
                "Machine: {cores} cores ({cpu}), loopback; servers pinned to core 1, dnsperf to core 0.\n\
                 {} codes, fleet {}; queries 80% A, 10% AAAA, 10% nonexistent; {} s per dnsperf run; latency at {} queries/s.\n\
                 Updates: {} signed updates, {} at once, {} keys (the directory: one per terminal; peers: one).\n\
                 Enrollments (with --parts enroll): {} from {} clients at once, one token, into the directory holding the fleet.\n\
                 {} rounds, servers alternating; each cell: median (min-max).\n\
                 Command: cargo run --release -p bench -- --codes {} --fleet {} --fleet-updates {} --seconds {} --rate {} --updates {} --concurrency {} --keys {} --enrollments {} --rounds {} --servers {} --parts {}\n",
                o.codes,
                o.fleet.name(),
                o.seconds,
                o.rate,
                o.updates,
                o.concurrency,
                o.keys,
                o.enrollments,
                o.concurrency,
                o.rounds,
                o.codes,
                o.fleet.name(),
                o.fleet_updates,
                o.seconds,
                o.rate,
                o.updates,
                o.concurrency,
                o.keys,
                o.enrollments,
                o.rounds,
                o.servers.join(","),
                [
                    (o.lookups, "lookups"),
                    (o.updates_part, "updates"),
                    (o.kill9, "kill9"),
                    (o.backup, "backup"),
                    (o.enroll, "enroll"),
                    (!o.scale_codes.is_empty(), "scale"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, part)| *part)
                .collect::<Vec<_>>()
                .join(","),
            ),
            results,
        }
        .with_scale_command(o)
    }

    /// The header's command with the sizes of `--parts scale`.
    fn with_scale_command(mut self, o: &Options) -> Self {
        if !o.scale_codes.is_empty() {
            let sizes: Vec<String> = o.scale_codes.iter().map(ToString::to_string).collect();
            let command_end = self.header.trim_end().len();
            self.header
                .insert_str(command_end, &format!(" --scale-codes {}", sizes.join(",")));
        }
        self
    }

    pub fn render(&self) -> String {
        let mut out = self.header.clone();
        out.push_str(&self.render_queries());
        out.push_str(&self.render_updates());
        out.push_str(&self.render_enrollments());
        out.push_str(&self.render_imports());
        out.push_str(&self.render_crashes());
        out.push_str(&self.render_backups());
        out.push_str(&self.render_scale());
        out
    }

    /// The run's results, for the charts.
    pub fn results(&self) -> &Results {
        &self.results
    }

    fn render_scale(&self) -> String {
        let s = &self.results.scale;
        if s.is_empty() {
            return String::new();
        }
        let mut sizes: Vec<usize> = s.iter().map(|x| x.terminals).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut out = "\n| terminals | start-up to the first answer, s | RSS once answering, MiB |\n|---|---|---|\n".to_owned();
        for size in sizes {
            let at = || s.iter().filter(move |x| x.terminals == size);
            let startup = Spread::of(at().map(|x| x.startup_s));
            let rss = Spread::of(at().map(|x| x.rss_mib));
            out.push_str(&format!(
                "| {size} | {} | {} |\n",
                startup.show(2),
                rss.show(0)
            ));
        }
        out
    }

    fn render_backups(&self) -> String {
        let b = &self.results.backups;
        if b.is_empty() {
            return String::new();
        }
        format!(
            "\n| backup and restore | `nameserver backup` s (server running) | `nameserver restore` s | backup file MiB |\n|---|---|---|---|\n| directory | {} | {} | {} |\n",
            Spread::of(b.iter().map(|x| x.backup_s)).show(2),
            Spread::of(b.iter().map(|x| x.restore_s)).show(2),
            Spread::of(b.iter().map(|x| x.file_mib)).show(1),
        )
    }

    fn render_crashes(&self) -> String {
        let c = &self.results.crashes;
        if c.is_empty() {
            return String::new();
        }
        let sum = |f: fn(&CrashFigures) -> usize| c.iter().map(f).sum::<usize>();
        format!(
            "\n| kill -9 during updates | kills | updates acknowledged | terminals checked | acknowledged updates lost | restart to first answer s |\n|---|---|---|---|---|---|\n| directory, all rounds | {} | {} | {} | {} | {} |\n",
            sum(|x| x.kills),
            sum(|x| x.acknowledged),
            sum(|x| x.checked),
            sum(|x| x.lost),
            Spread::of(c.iter().flat_map(|x| x.restarts_s.iter().copied())).show(2),
        )
    }

    fn render_queries(&self) -> String {
        let metrics: [Metric<QueryFigures>; 7] = [
            (|x| x.cpu_us_per_query, 2),
            (|x| x.qps, 0),
            (|x| x.p50_us, 0),
            (|x| x.p99_us, 0),
            (|x| x.lost_at_rate, 0),
            (|x| x.peak_rss_mib, 1),
            (|x| x.startup_s, 2),
        ];
        let header = "| lookups | CPU µs/query | queries/s | p50 µs | p99 µs | lost at rate | peak RSS MiB | start-up s |";
        let mut out = render_table(header, &self.results.queries, &metrics, metrics.len());
        out.push_str(&self.render_above_floor());
        out
    }

    /// Each server's CPU per query above the floor's (medians): the server's own work.
    fn render_above_floor(&self) -> String {
        let q = &self.results.queries;
        let median = |name: &str| {
            Spread::of(
                q.iter()
                    .filter(|x| x.name == name)
                    .map(|x| x.cpu_us_per_query),
            )
            .median
        };
        if !q.iter().any(|x| x.name == "floor") {
            return String::new();
        }
        let floor = median("floor");
        let mut out = format!(
            "\n| lookups, CPU above the floor ({floor:.2} µs/query) | µs/query above | ours/peer above |\n|---|---|---|\n"
        );
        let ours = median("directory") - floor;
        let mut names: Vec<&str> = Vec::new();
        for x in q {
            if x.name != "floor" && !names.contains(&x.name.as_str()) {
                names.push(&x.name);
            }
        }
        for name in names {
            let above = median(name) - floor;
            out.push_str(&format!(
                "| {name} | {above:.2} | {:.2} |\n",
                ratio(ours, above)
            ));
        }
        out
    }

    fn render_updates(&self) -> String {
        let metrics: [Metric<UpdateFigures>; 5] = [
            (|x| x.updates_per_s, 0),
            (|x| x.p50_ms, 2),
            (|x| x.p99_ms, 2),
            (|x| x.acknowledged as f64, 0),
            (|x| x.failed as f64, 0),
        ];
        let header = "| updates | durable updates/s | p50 ms | p99 ms | acknowledged | failed |";
        render_table(header, &self.results.updates, &metrics, 3)
    }

    fn render_enrollments(&self) -> String {
        let metrics: [Metric<EnrollFigures>; 6] = [
            (|x| x.per_s, 0),
            (|x| x.p50_ms, 2),
            (|x| x.p99_ms, 2),
            (|x| x.cpu_us_per_enrollment, 1),
            (|x| x.enrolled as f64, 0),
            (|x| x.failed as f64, 0),
        ];
        let header = "| enrollments | durable enrollments/s | p50 ms | p99 ms | directory CPU µs per enrollment | acknowledged | failed |";
        render_table(header, &self.results.enrollments, &metrics, 0)
    }

    fn render_imports(&self) -> String {
        let mut fleet_rows = String::new();
        let mut out = "\n| directory provisioning | import s | serving process peak RSS MiB | store on disk, bytes per terminal | the same after the updates | store file length per terminal |\n|---|---|---|---|---|---|\n".to_owned();
        let mut names: Vec<&str> = Vec::new();
        for figures in &self.results.imports {
            if !names.contains(&figures.name.as_str()) {
                names.push(&figures.name);
            }
        }
        for name in names {
            let i: Vec<&ImportFigures> = self
                .results
                .imports
                .iter()
                .filter(|x| x.name == name)
                .collect();
            let fleet: Vec<(f64, f64)> = i.iter().filter_map(|x| x.after_fleet_updates).collect();
            if !fleet.is_empty() {
                fleet_rows.push_str(&format!(
                    "| {name} | {} | {} |\n",
                    Spread::of(fleet.iter().map(|f| f.0)).show(0),
                    Spread::of(fleet.iter().map(|f| f.1)).show(0),
                ));
            }
            out.push_str(&format!(
                "| `nameserver import` ({name}) | {} | {} | {} | {} | {} |\n",
                Spread::of(i.iter().map(|x| x.import_s)).show(2),
                Spread::of(i.iter().map(|x| x.import_peak_rss_mib)).show(0),
                Spread::of(i.iter().map(|x| x.bytes_per_terminal)).show(0),
                Spread::of(i.iter().map(|x| x.bytes_per_terminal_after_updates)).show(0),
                Spread::of(i.iter().map(|x| x.file_bytes_per_terminal)).show(0),
            ));
        }
        if !fleet_rows.is_empty() {
            out.push_str(&format!(
                "\n| after updates to random terminals of the fleet | store on disk, bytes per terminal | serving process growth MiB |\n|---|---|---|\n{fleet_rows}"
            ));
        }
        out
    }
}

/// Each server's spread of `f` over the rounds, in the order the servers first ran.
pub fn spreads<T: Named>(rows: &[T], f: impl Fn(&T) -> f64) -> Vec<(String, Spread)> {
    let mut names: Vec<&str> = Vec::new();
    for row in rows {
        if !names.contains(&row.name()) {
            names.push(row.name());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let values = rows.iter().filter(|x| x.name() == name).map(&f);
            (name.to_owned(), Spread::of(values))
        })
        .collect()
}

/// Figures that belong to one server.
pub trait Named {
    fn name(&self) -> &str;
}

impl Named for QueryFigures {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for EnrollFigures {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for UpdateFigures {
    fn name(&self) -> &str {
        &self.name
    }
}

/// One table: a row per server (median and spread of each metric), then the ratios of
/// medians ours/peer for the first `ratios` metrics.
fn render_table<T: Named>(
    header: &str,
    rows: &[T],
    metrics: &[Metric<T>],
    ratios: usize,
) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let spread =
        |name: &str, f: fn(&T) -> f64| Spread::of(rows.iter().filter(|x| x.name() == name).map(f));
    let mut names: Vec<&str> = Vec::new();
    for row in rows {
        if !names.contains(&row.name()) {
            names.push(row.name());
        }
    }
    let rule = "|---".repeat(metrics.len() + 1);
    let mut out = format!("\n{header}\n{rule}|\n");
    for name in &names {
        let cells: Vec<String> = metrics
            .iter()
            .map(|(f, d)| spread(name, *f).show(*d))
            .collect();
        out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    }
    // Ours against each peer (the directory's other rows are not peers).
    for peer in names.iter().filter(|n| !n.starts_with("directory")) {
        let cells: Vec<String> = (0..metrics.len())
            .map(|i| match metrics.get(i).filter(|_| i < ratios) {
                Some((f, _)) => {
                    let r = ratio(spread("directory", *f).median, spread(peer, *f).median);
                    format!("{r:.2}")
                }
                None => String::new(),
            })
            .collect();
        out.push_str(&format!("| ours/{peer} | {} |\n", cells.join(" | ")));
    }
    out
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of([4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(s.show(1), "2.0 (1.0-3.0)");
    }

    #[test]
    fn tables_have_a_row_per_server_and_ratios_of_medians() {
        let figures = |name: &str, per_s: f64| UpdateFigures {
            name: name.into(),
            updates_per_s: per_s,
            p50_ms: 1.0,
            p99_ms: 2.0,
            acknowledged: 10,
            failed: 0,
        };
        let rows = [
            figures("directory", 300.0),
            figures("bind", 100.0),
            figures("directory", 100.0),
            figures("bind", 50.0),
            figures("directory", 200.0),
            figures("bind", 200.0),
        ];
        let metrics: [Metric<UpdateFigures>; 2] =
            [(|x| x.updates_per_s, 0), (|x| x.failed as f64, 0)];
        let table = render_table("| updates | per s | failed |", &rows, &metrics, 1);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[2], "|---|---|---|");
        assert_eq!(lines[3], "| directory | 200 (100-300) | 0 (0-0) |");
        assert_eq!(lines[4], "| bind | 100 (50-200) | 0 (0-0) |");
        assert_eq!(lines[5], "| ours/bind | 2.00 |  |");
    }
}
