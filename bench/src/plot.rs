//! The run's figures as SVG charts, written beside its table (`NAME.md` → `NAME-*.svg`)
//! with plotters' SVG backend: each server's median with its min-max over the rounds, the
//! physical floor marked where the lookups ran it, and the directory's start-up and memory
//! against the number of terminals (`--parts scale`).

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Results, Spread, spreads};

const WIDTH: u32 = 720;
const BAR: RGBColor = RGBColor(0x3b, 0x6e, 0xa8);
const OURS: RGBColor = RGBColor(0xd0, 0x6a, 0x1f);
const FLOOR: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// One bar chart: its file name, its title, a bar per server, and the floor's value.
type Chart<'a> = (&'a str, &'a str, Vec<(String, Spread)>, Option<f64>);

/// Writes every chart the results allow; returns their paths.
pub fn write(table: &Path, results: &Results) -> Vec<PathBuf> {
    let stem = table.with_extension("");
    let path = |name: &str| PathBuf::from(format!("{}-{name}.svg", stem.display()));
    let mut written = Vec::new();
    let queries: Vec<_> = results
        .queries
        .iter()
        .filter(|q| q.name != "floor")
        .cloned()
        .collect();
    let floor = results
        .queries
        .iter()
        .find(|q| q.name == "floor")
        .map(|_| ());
    let floor_of = |f: fn(&crate::report::QueryFigures) -> f64| {
        floor.and_then(|()| {
            spreads(&results.queries, f)
                .into_iter()
                .find(|(name, _)| name == "floor")
                .map(|(_, s)| s.median)
        })
    };
    let charts: [Chart; 3] = [
        (
            "cpu-per-query",
            "Server CPU per answered query, µs (lower is better)",
            spreads(&queries, |q| q.cpu_us_per_query),
            floor_of(|q| q.cpu_us_per_query),
        ),
        (
            "queries-per-second",
            "Queries answered per second (dnsperf on the other core)",
            spreads(&queries, |q| q.qps),
            floor_of(|q| q.qps),
        ),
        (
            "p99",
            "Latency p99 at a fixed rate, µs (lower is better)",
            spreads(&queries, |q| q.p99_us),
            None,
        ),
    ];
    for (name, title, rows, floor) in charts {
        if !rows.is_empty() {
            bars(&path(name), title, &rows, floor);
            written.push(path(name));
        }
    }
    let updates = spreads(&results.updates, |u| u.updates_per_s);
    if !updates.is_empty() {
        let title = "Durable signed updates per second (higher is better)";
        bars(&path("updates"), title, &updates, None);
        written.push(path("updates"));
    }
    let enrollments = spreads(&results.enrollments, |e| e.per_s);
    if !enrollments.is_empty() {
        let title = "Durable enrollments per second";
        bars(&path("enrollments"), title, &enrollments, None);
        written.push(path("enrollments"));
    }
    if !results.scale.is_empty() {
        scale(&path("scale"), results);
        written.push(path("scale"));
    }
    written
}

/// Horizontal bars, one per server (the first at the top), with min-max whiskers, and a
/// dashed line at `floor`.
fn bars(path: &Path, title: &str, rows: &[(String, Spread)], floor: Option<f64>) {
    let height = 80 + 42 * rows.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).expect("draw");
    let top = rows
        .iter()
        .map(|(_, s)| s.max)
        .chain(floor)
        .fold(0.0f64, f64::max)
        * 1.15;
    let n = rows.len();
    // Category i of the axis (counted from the bottom) is row n - 1 - i.
    let row = |i: usize| &rows[n - 1 - i];
    let caption = match floor {
        Some(floor) => format!("{title}; dashed: the physical floor, {floor:.2}"),
        None => title.to_owned(),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(150)
        .build_cartesian_2d(
            0.0..top.max(1e-9),
            (0..n.saturating_sub(1)).into_segmented(),
        )
        .expect("chart");
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if *i < n => row(*i).0.clone(),
            _ => String::new(),
        })
        .draw()
        .expect("mesh");
    for i in 0..n {
        let (name, s) = row(i);
        let color = if name.starts_with("directory") {
            OURS
        } else {
            BAR
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (s.median, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        );
        bar.set_margin(8, 8, 0, 0);
        chart.draw_series([bar]).expect("bar");
        chart
            .draw_series(LineSeries::new(
                [
                    (s.min, SegmentValue::CenterOf(i)),
                    (s.max, SegmentValue::CenterOf(i)),
                ],
                BLACK.stroke_width(2),
            ))
            .expect("whisker");
        chart
            .draw_series([Text::new(
                shown(s.median),
                (s.max + top * 0.01, SegmentValue::CenterOf(i)),
                TextStyle::from(("sans-serif", 13).into_font())
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )])
            .expect("value");
    }
    if let Some(floor) = floor {
        chart
            .draw_series(DashedLineSeries::new(
                [
                    (floor, SegmentValue::Exact(0)),
                    (floor, SegmentValue::Exact(n)),
                ],
                6,
                4,
                FLOOR.stroke_width(2),
            ))
            .expect("floor");
    }
    root.present().expect("write the chart");
}

/// A value with the decimals its size deserves.
fn shown(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

/// Start-up and RSS against the number of terminals, side by side.
fn scale(path: &Path, results: &Results) {
    let root = SVGBackend::new(path, (WIDTH, 340)).into_drawing_area();
    root.fill(&WHITE).expect("draw");
    let (left, right) = root.split_horizontally(WIDTH / 2);
    let mut sizes: Vec<usize> = results.scale.iter().map(|s| s.terminals).collect();
    sizes.sort_unstable();
    sizes.dedup();
    type Pick = fn(&crate::report::ScaleFigures) -> f64;
    let panels: [(&DrawingArea<SVGBackend, plotters::coord::Shift>, &str, Pick); 2] = [
        (&left, "Start-up to the first answer, s", |s| s.startup_s),
        (&right, "RSS once answering, MiB", |s| s.rss_mib),
    ];
    for (area, title, pick) in panels {
        let points: Vec<(f64, Spread)> = sizes
            .iter()
            .map(|&size| {
                let at = results.scale.iter().filter(|s| s.terminals == size);
                (size as f64, Spread::of(at.map(pick)))
            })
            .collect();
        let top = points.iter().map(|(_, s)| s.max).fold(0.0, f64::max) * 1.15;
        let right_end = sizes.last().copied().unwrap_or(1) as f64 * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..right_end, 0.0..top.max(1e-9))
            .expect("chart");
        chart
            .configure_mesh()
            .x_desc("terminals")
            .x_labels(6)
            .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
            .draw()
            .expect("mesh");
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(x, s)| (*x, s.median)),
                OURS.stroke_width(2),
            ))
            .expect("line");
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(x, s)| Circle::new((*x, s.median), 4, OURS.filled())),
            )
            .expect("points");
        for (x, s) in &points {
            chart
                .draw_series(LineSeries::new(
                    [(*x, s.min), (*x, s.max)],
                    BLACK.stroke_width(2),
                ))
                .expect("whisker");
        }
    }
    root.present().expect("write the chart");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{QueryFigures, ScaleFigures};

    fn query(name: &str, cpu: f64) -> QueryFigures {
        QueryFigures {
            name: name.into(),
            qps: 100_000.0,
            p50_us: 50.0,
            p99_us: 400.0,
            lost_at_rate: 0.0,
            cpu_us_per_query: cpu,
            peak_rss_mib: 30.0,
            startup_s: 0.1,
        }
    }

    #[test]
    fn the_charts_name_every_server_and_the_floor() {
        let tmp = tempfile::tempdir().unwrap();
        let results = Results {
            queries: vec![
                query("directory", 6.0),
                query("knot", 7.2),
                query("floor", 5.5),
            ],
            scale: vec![ScaleFigures {
                terminals: 10_000,
                startup_s: 0.05,
                rss_mib: 13.0,
            }],
            ..Results::default()
        };
        let written = write(&tmp.path().join("run.md"), &results);
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "run-cpu-per-query.svg",
                "run-queries-per-second.svg",
                "run-p99.svg",
                "run-scale.svg"
            ]
        );
        let cpu = std::fs::read_to_string(&written[0]).unwrap();
        assert!(cpu.starts_with("<svg"), "{cpu}");
        for text in ["directory", "knot", "physical floor, 5.50", "6.00", "7.20"] {
            assert!(cpu.contains(text), "{text} is not in the chart");
        }
        assert!(
            !cpu.contains(">\nfloor\n<"),
            "the floor is a line, not a bar"
        );
    }
}
