//! Charts (SVG, drawn with plotters) and a summary table from the JSON lines the load generator
//! wrote during `scripts/bench-servers.sh`, for `scripts/bench-suite.sh`.
//!
//! ```text
//! bench-report --servers target/bench/servers.jsonl --out docs/bench
//! ```
//!
//! Writes `throughput.svg` (each server's messages/s relative to sockeye, per scenario),
//! `cpu.svg` (server CPU per message as a multiple of the raw TCP floor) and `memory.svg` (server
//! RSS per idle connection), each from the median of the repeats. Text needs a TrueType font:
//! `--font` (default: DejaVu Sans, Debian's `fonts-dejavu-core`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use plotters::prelude::*;
use plotters::style::FontStyle;

#[derive(Parser)]
#[command(about = "Charts of a bench-servers.sh run")]
struct Cli {
    /// JSON lines of the run.
    #[arg(long, default_value = "target/bench/servers.jsonl")]
    servers: PathBuf,
    /// Directory for the SVG files.
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
    /// TrueType font for the labels.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
}

/// The servers in chart order, with their colours; the floor is drawn only where it applies.
const SERVERS: [(&str, RGBColor); 5] = [
    ("sockeye", RGBColor(0x1f, 0x6f, 0xb4)),
    ("uWebSockets", RGBColor(0x8e, 0x44, 0xad)),
    ("tokio-tungstenite", RGBColor(0xe0, 0x7b, 0x39)),
    ("fastwebsockets", RGBColor(0x3a, 0x9e, 0x5c)),
    ("raw TCP floor", RGBColor(0x88, 0x88, 0x88)),
];

/// One run of one server in one scenario.
struct Run {
    scenario: String,
    server: String,
    rate: f64,
    cpu_ns: Option<f64>,
    rss: Option<f64>,
}

fn num(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn text(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &line[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn size(bytes: f64) -> String {
    let b = bytes as u64;
    if b >= 1 << 20 {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}

fn parse(path: &Path) -> Vec<Run> {
    let body = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut runs = Vec::new();
    for line in body.lines().filter(|l| l.starts_with('{')) {
        let (Some(mode), Some(label)) = (text(line, "mode"), text(line, "label")) else {
            continue;
        };
        let server = match label.as_str() {
            "raw-echo" | "raw-fanout" => "raw TCP floor".to_owned(),
            l => l.to_owned(),
        };
        let conns = num(line, "connections").unwrap_or(0.0);
        let scenario = match mode.as_str() {
            "echo" | "echo-raw" => format!(
                "echo {conns}×{}×{}",
                num(line, "in_flight").unwrap_or(1.0),
                size(num(line, "size").unwrap_or(0.0))
            ),
            "broadcast" | "broadcast-raw" => {
                format!("broadcast {conns} w{}", num(line, "window").unwrap_or(16.0))
            }
            "churn" => "churn".to_owned(),
            "conns" => format!("idle {conns}"),
            _ => continue,
        };
        runs.push(Run {
            scenario,
            server,
            rate: num(line, "msgs_per_s").unwrap_or(0.0),
            cpu_ns: num(line, "server_cpu_ns_per_msg").filter(|v| *v > 0.0),
            rss: num(line, "rss_per_conn").filter(|v| *v > 0.0),
        });
    }
    runs
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Scenario -> server -> median of `metric`, scenarios in first-seen order.
type Table = Vec<(String, BTreeMap<String, f64>)>;

fn table(runs: &[Run], metric: impl Fn(&Run) -> Option<f64>) -> Table {
    let mut order: Vec<String> = Vec::new();
    let mut cells: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in runs {
        let Some(v) = metric(r) else { continue };
        if !order.contains(&r.scenario) {
            order.push(r.scenario.clone());
        }
        cells
            .entry((r.scenario.clone(), r.server.clone()))
            .or_default()
            .push(v);
    }
    order
        .into_iter()
        .map(|sc| {
            let row = cells
                .iter()
                .filter(|((s, _), _)| *s == sc)
                .filter_map(|((_, server), v)| Some((server.clone(), median(v.clone())?)))
                .collect();
            (sc, row)
        })
        .collect()
}

/// A grouped bar chart: one group per scenario, one bar per server, each bar labelled with
/// `value(v)`.
fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    rows: &Table,
    servers: &[&str],
    value: &dyn Fn(f64) -> String,
) {
    let rows: Vec<_> = rows.iter().filter(|(_, r)| !r.is_empty()).collect();
    if rows.is_empty() {
        return;
    }
    // Only servers the run measured get a bar slot and a legend entry (uWebSockets is
    // measured only when it is built).
    let servers: Vec<&str> = servers
        .iter()
        .copied()
        .filter(|s| rows.iter().any(|(_, r)| r.contains_key(*s)))
        .collect();
    let y_max = rows
        .iter()
        .flat_map(|(_, r)| r.values().copied())
        .fold(0.0f64, f64::max)
        * 1.4; // room for the legend above the bars
    let width = 160 + 110 * rows.len() as u32;
    let root = SVGBackend::new(path, (width.max(640), 420)).into_drawing_area();
    root.fill(&WHITE).expect("svg");
    let groups = rows.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..groups, 0.0..y_max)
        .expect("chart");
    let names: Vec<String> = rows.iter().map(|(s, _)| s.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .y_label_formatter(&|v| {
            if y_max > 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .label_style(("sans-serif", 12))
        .draw()
        .expect("mesh");
    let slot = 0.8 / servers.len() as f64;
    for (k, name) in servers.iter().enumerate() {
        let colour = SERVERS
            .iter()
            .find(|(n, _)| n == name)
            .map_or(BLACK, |(_, c)| *c);
        let series = rows.iter().enumerate().filter_map(|(i, (_, r))| {
            let v = *r.get(*name)?;
            let x0 = i as f64 + 0.1 + slot * k as f64;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + slot * 0.9, v)],
                colour.filled(),
            ))
        });
        chart
            .draw_series(series)
            .expect("bars")
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        let labels = rows.iter().enumerate().filter_map(|(i, (_, r))| {
            let v = *r.get(*name)?;
            let x = i as f64 + 0.1 + slot * k as f64;
            let style = ("sans-serif", 10).into_font().color(&BLACK);
            Some(Text::new(value(v), (x, v + y_max * 0.01), style))
        });
        chart.draw_series(labels).expect("labels");
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .expect("legend");
    root.present().expect("write svg");
}

fn main() {
    let cli = Cli::parse();
    let font = std::fs::read(&cli.font).unwrap_or_else(|e| {
        panic!(
            "cannot read the font {} ({e}); apt-get install fonts-dejavu-core or pass --font",
            cli.font.display()
        )
    });
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    if plotters::style::register_font("sans-serif", FontStyle::Normal, font).is_err() {
        panic!("{} is not a usable TrueType font", cli.font.display());
    }
    let runs = parse(&cli.servers);
    std::fs::create_dir_all(&cli.out).expect("output directory");

    // Throughput relative to sockeye (1.0), per scenario with a rate.
    let rates = table(&runs, |r| {
        (!r.scenario.starts_with("idle")).then_some(r.rate)
    });
    let relative: Table = rates
        .iter()
        .filter_map(|(sc, row)| {
            let base = *row.get("sockeye")?;
            (base > 0.0).then(|| {
                let rel = row.iter().map(|(s, v)| (s.clone(), v / base)).collect();
                (sc.clone(), rel)
            })
        })
        .collect();
    bars(
        &cli.out.join("throughput.svg"),
        "Messages per second relative to sockeye (one core each)",
        "× sockeye",
        &relative,
        &[
            "sockeye",
            "uWebSockets",
            "tokio-tungstenite",
            "fastwebsockets",
            "raw TCP floor",
        ],
        &|v| format!("{v:.2}"),
    );

    // Server CPU per message as a multiple of the floor's.
    let cpu = table(&runs, |r| r.cpu_ns);
    let over_floor: Table = cpu
        .iter()
        .filter_map(|(sc, row)| {
            let floor = *row.get("raw TCP floor")?;
            let rel = row
                .iter()
                .filter(|(s, _)| s.as_str() != "raw TCP floor")
                .map(|(s, v)| (s.clone(), v / floor))
                .collect();
            Some((sc.clone(), rel))
        })
        .collect();
    bars(
        &cli.out.join("cpu.svg"),
        "Server CPU per message, as a multiple of the raw TCP floor",
        "× floor (1.0 = kernel TCP work only)",
        &over_floor,
        &[
            "sockeye",
            "uWebSockets",
            "tokio-tungstenite",
            "fastwebsockets",
        ],
        &|v| format!("{v:.2}"),
    );

    let rss = table(&runs, |r| r.rss);
    bars(
        &cli.out.join("memory.svg"),
        "Server memory per idle connection",
        "bytes of RSS per connection",
        &rss,
        &[
            "sockeye",
            "uWebSockets",
            "tokio-tungstenite",
            "fastwebsockets",
        ],
        &|v| format!("{v:.0} B"),
    );
    for f in ["throughput.svg", "cpu.svg", "memory.svg"] {
        let p = cli.out.join(f);
        if p.exists() {
            println!("wrote {}", p.display());
        }
    }
}
