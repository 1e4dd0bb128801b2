//! The soak run's samples (`cvs-bench soak`): what is read from /proc about one process, the
//! samples as CSV, the flatness verdict (a least-squares trend over the last three quarters of
//! the run) and the SVG plots. Pure functions except the /proc readers and the plot writer.

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// One sample of the operator process and of the run, taken every few seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the observed run started.
    pub t_s: f64,
    pub rss_mib: f64,
    /// What the operator holds on its heap, `cvs_heap_allocated_bytes` in MiB (0 from a build
    /// without the figure). RSS growing while this stays flat is the allocator keeping pages.
    #[serde(default)]
    pub heap_allocated_mib: f64,
    /// `cvs_heap_resident_bytes` in MiB: the allocator's pages in RAM.
    #[serde(default)]
    pub heap_resident_mib: f64,
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Of which sockets (any family).
    pub sockets: u64,
    /// TCP connections of the process (every state but LISTEN), IPv4 and IPv6.
    pub tcp: u64,
    /// Of which ESTABLISHED.
    pub tcp_established: u64,
    /// CPU since the previous sample, % of one core.
    pub cpu_pct: f64,
    /// StreamInstances existing (the bench's watch).
    pub instances: u64,
    /// Of which Healthy=True.
    pub healthy: u64,
    /// `cvs_probed_playlists`.
    pub probed_playlists: f64,
    /// `cvs_probe_tasks{kind="instance"}`.
    pub instance_tasks: f64,
    /// `cvs_probe_tasks{kind="rendition"}`.
    pub rendition_tasks: f64,
    /// `cvs_stale_renditions`.
    pub stale_playlists: f64,
    /// Faults applied and not healed yet.
    pub faults_active: u64,
    /// Running totals.
    pub faults: u64,
    pub faults_detected: u64,
    pub spurious: u64,
    pub creates: u64,
    pub deletes: u64,
}

/// The CSV header matching [`Sample::csv_row`].
pub const CSV_HEADER: &str = "t_s,rss_mib,heap_allocated_mib,heap_resident_mib,threads,fds,sockets,tcp,tcp_established,cpu_pct,instances,healthy,probed_playlists,instance_tasks,rendition_tasks,stale_playlists,faults_active,faults,faults_detected,spurious,creates,deletes";

impl Sample {
    pub fn csv_row(&self) -> String {
        format!(
            "{:.1},{:.1},{:.1},{:.1},{},{},{},{},{},{:.1},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t_s,
            self.rss_mib,
            self.heap_allocated_mib,
            self.heap_resident_mib,
            self.threads,
            self.fds,
            self.sockets,
            self.tcp,
            self.tcp_established,
            self.cpu_pct,
            self.instances,
            self.healthy,
            self.probed_playlists,
            self.instance_tasks,
            self.rendition_tasks,
            self.stale_playlists,
            self.faults_active,
            self.faults,
            self.faults_detected,
            self.spurious,
            self.creates,
            self.deletes
        )
    }
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

/// Open file descriptors of `pid` and the inodes of those that are sockets.
pub fn fds_and_sockets(pid: u32) -> Option<(u64, HashSet<u64>)> {
    let mut fds = 0;
    let mut sockets = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        fds += 1;
        if let Ok(target) = std::fs::read_link(entry.path())
            && let Some(inode) = socket_inode(&target.to_string_lossy())
        {
            sockets.insert(inode);
        }
    }
    Some((fds, sockets))
}

/// The inode of an fd link target `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// TCP sockets of a process, from /proc/net/tcp{,6} text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCount {
    /// Every state but LISTEN.
    pub connections: u64,
    pub established: u64,
}

/// Counts the rows of /proc/net/tcp or tcp6 (`text`) whose inode is in `inodes`. Rows that do
/// not parse are skipped.
pub fn count_tcp(text: &str, inodes: &HashSet<u64>) -> TcpCount {
    let mut out = TcpCount::default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local remote st tx:rx tr:when retrnsmt uid timeout inode ...
        let (Some(state), Some(inode)) = (f.get(3), f.get(9).and_then(|i| i.parse::<u64>().ok()))
        else {
            continue;
        };
        if !inodes.contains(&inode) {
            continue;
        }
        match *state {
            "0A" => {}
            "01" => {
                out.connections += 1;
                out.established += 1;
            }
            _ => out.connections += 1,
        }
    }
    out
}

/// TCP connections of `pid` (both families), read in its own network namespace.
pub fn tcp_of(pid: u32, inodes: &HashSet<u64>) -> TcpCount {
    let mut out = TcpCount::default();
    for file in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            let c = count_tcp(&text, inodes);
            out.connections += c.connections;
            out.established += c.established;
        }
    }
    out
}

/// A number field (`Threads:`, `VmRSS:` in KiB) of /proc/PID/status text.
pub fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Flatness
// ---------------------------------------------------------------------------------------------

/// Least-squares slope of `points` (x, y), or `None` with fewer than 3 points or no spread in x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The trend of one series over the judged window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Slope of the least-squares line, per hour.
    pub per_hour: f64,
    /// What that line grows by over the window (slope x window length).
    pub growth: f64,
    /// Growth allowed: the larger of `rel_tol` x the median and `abs_tol`.
    pub allowed: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// `growth <= allowed`: no upward trend beyond noise.
    pub flat: bool,
}

/// The trend of `points` (t in seconds, value): flat when the fitted line grows by no more than
/// the larger of `rel_tol` x the median value and `abs_tol` over the window. A falling line is
/// flat.
pub fn trend(points: &[(f64, f64)], rel_tol: f64, abs_tol: f64) -> Option<Trend> {
    let s = slope(points)?;
    let span = points.last()?.0 - points.first()?.0;
    let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    let growth = s * span;
    let allowed = (rel_tol * median.abs()).max(abs_tol);
    Some(Trend {
        per_hour: s * 3600.0,
        growth,
        allowed,
        median,
        min: values[0],
        max: values[values.len() - 1],
        flat: growth <= allowed,
    })
}

/// The samples of the judged window: the last three quarters of the run (the first quarter is
/// warm-up: pools, caches and allocator arenas filling).
pub fn judged(samples: &[Sample]) -> &[Sample] {
    let Some(last) = samples.last() else {
        return samples;
    };
    let from = last.t_s / 4.0;
    let start = samples.iter().position(|s| s.t_s >= from).unwrap_or(0);
    &samples[start..]
}

/// The flatness verdict of a soak run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flatness {
    pub window_s: f64,
    pub samples: usize,
    /// RSS in MiB: flat within 5 % of its median or 8 MiB.
    pub rss_mib: Option<Trend>,
    /// What the heap holds (jemalloc's `allocated`), MiB: the same tolerance as RSS. A leak
    /// shows here; RSS growing without it is memory the allocator keeps.
    #[serde(default)]
    pub heap_allocated_mib: Option<Trend>,
    /// Threads, open fds and TCP connections: flat within 10 % of the median or 16.
    pub threads: Option<Trend>,
    pub fds: Option<Trend>,
    pub tcp: Option<Trend>,
    /// Probe tasks: flat within 2 % of the median or 16 (instances come and go with churn).
    pub rendition_tasks: Option<Trend>,
    /// Largest gap, in the window, between the instance probe tasks and the StreamInstances
    /// the watch sees (churn in flight makes it a few).
    pub instance_task_gap_max: f64,
    pub flat: bool,
}

pub fn flatness(samples: &[Sample]) -> Flatness {
    let w = judged(samples);
    let series = |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        w.iter().map(|s| (s.t_s, f(s))).collect()
    };
    let rss_mib = trend(&series(&|s| s.rss_mib), 0.05, 8.0);
    let heap_allocated_mib = trend(&series(&|s| s.heap_allocated_mib), 0.05, 8.0);
    let threads = trend(&series(&|s| s.threads as f64), 0.10, 16.0);
    let fds = trend(&series(&|s| s.fds as f64), 0.10, 16.0);
    let tcp = trend(&series(&|s| s.tcp as f64), 0.10, 16.0);
    let rendition_tasks = trend(&series(&|s| s.rendition_tasks), 0.02, 16.0);
    let instance_task_gap_max = w
        .iter()
        .map(|s| (s.instance_tasks - s.instances as f64).abs())
        .fold(0.0, f64::max);
    let flat = [
        &rss_mib,
        &heap_allocated_mib,
        &threads,
        &fds,
        &tcp,
        &rendition_tasks,
    ]
    .iter()
    .all(|t| t.as_ref().is_some_and(|t| t.flat));
    Flatness {
        window_s: match (w.first(), w.last()) {
            (Some(a), Some(b)) => b.t_s - a.t_s,
            _ => 0.0,
        },
        samples: w.len(),
        rss_mib,
        heap_allocated_mib,
        threads,
        fds,
        tcp,
        rendition_tasks,
        instance_task_gap_max,
        flat,
    }
}

// ---------------------------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------------------------

/// One line of a plot panel.
pub struct Line<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// A panel: a title, a y-axis label and its lines, over time in minutes.
pub struct Panel<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub lines: Vec<Line<'a>>,
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    x_max_min: f64,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let y_max = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max_min.max(1.0 / 60.0), 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc(panel.y_label)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for line in &panel.lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().map(|&(t, v)| (t / 60.0, v)),
                color.stroke_width(2),
            ))?
            .label(line.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

/// Writes `panels` stacked in one SVG file, `width` wide and 260 px per panel.
pub fn write_svg(path: &Path, panels: &[Panel], width: u32) -> PlotResult {
    let x_max = panels
        .iter()
        .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)))
        .fold(0.0_f64, f64::max)
        / 60.0;
    let root = SVGBackend::new(path, (width, 260 * panels.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel, x_max)?;
    }
    root.present()?;
    Ok(())
}

/// The soak run's panels: RSS, probe tasks, fds and connections, CPU.
pub fn panels(samples: &[Sample]) -> Vec<Panel<'static>> {
    let pts = |f: fn(&Sample) -> f64| samples.iter().map(|s| (s.t_s, f(s))).collect();
    vec![
        Panel {
            title: "Operator memory",
            y_label: "MiB",
            lines: vec![
                Line {
                    name: "VmRSS",
                    color: BLUE,
                    points: pts(|s| s.rss_mib),
                },
                Line {
                    name: "heap resident (jemalloc)",
                    color: RGBColor(150, 150, 150),
                    points: pts(|s| s.heap_resident_mib),
                },
                Line {
                    name: "heap allocated (jemalloc)",
                    color: RED,
                    points: pts(|s| s.heap_allocated_mib),
                },
            ],
        },
        Panel {
            title: "Probe tasks and StreamInstances",
            y_label: "count",
            lines: vec![
                Line {
                    name: "rendition tasks",
                    color: BLUE,
                    points: pts(|s| s.rendition_tasks),
                },
                Line {
                    name: "7 x StreamInstances",
                    color: RGBColor(150, 150, 150),
                    points: pts(|s| 7.0 * s.instances as f64),
                },
                Line {
                    name: "instance tasks",
                    color: RED,
                    points: pts(|s| s.instance_tasks),
                },
                Line {
                    name: "StreamInstances",
                    color: RGBColor(0, 140, 0),
                    points: pts(|s| s.instances as f64),
                },
            ],
        },
        Panel {
            title: "Open file descriptors, TCP connections, threads",
            y_label: "count",
            lines: vec![
                Line {
                    name: "fds",
                    color: BLUE,
                    points: pts(|s| s.fds as f64),
                },
                Line {
                    name: "TCP connections",
                    color: RED,
                    points: pts(|s| s.tcp as f64),
                },
                Line {
                    name: "threads",
                    color: RGBColor(0, 140, 0),
                    points: pts(|s| s.threads as f64),
                },
            ],
        },
        Panel {
            title: "Operator CPU (10 s average)",
            y_label: "% of one core",
            lines: vec![Line {
                name: "CPU",
                color: BLUE,
                points: pts(|s| s.cpu_pct),
            }],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C351 0100007F:1F90 06 00000000:00000000 03:00000DAB 00000000     0        0 1003 3 0000000000000000
   3: 0100007F:C352 0100007F:1F91 01 00000000:00000000 00:00000000 00000000  1000        0 2002 1 0000000000000000 20 4 30 10 -1
   4: garbage
";

    #[test]
    fn tcp_rows_are_counted_for_the_process_sockets_only_and_listeners_are_not_connections() {
        let mine: HashSet<u64> = [1001, 1002, 1003].into_iter().collect();
        assert_eq!(
            count_tcp(NET_TCP, &mine),
            TcpCount {
                connections: 2,
                established: 1
            }
        );
        assert_eq!(count_tcp(NET_TCP, &HashSet::new()), TcpCount::default());
    }

    #[test]
    fn socket_links_name_their_inode_and_other_links_none() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("anon_inode:[eventpoll]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    #[test]
    fn status_fields_are_read_by_key() {
        let status = "Name:\tcvs-operator\nVmRSS:\t  152340 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(152_340));
        assert_eq!(status_field(status, "Threads:"), Some(7));
        assert_eq!(status_field(status, "VmHWM:"), None);
    }

    #[test]
    fn the_slope_is_the_least_squares_line() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(slope(&line[..2]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
    }

    fn run(rss: impl Fn(f64) -> f64) -> Vec<Sample> {
        // One hour, a sample every 10 s, noise of +-1 MiB around the trend.
        (0..=360)
            .map(|i| {
                let t = i as f64 * 10.0;
                Sample {
                    t_s: t,
                    rss_mib: rss(t) + if i % 2 == 0 { 1.0 } else { -1.0 },
                    threads: 6,
                    fds: 300 + (i % 7),
                    tcp: 250 + (i % 5),
                    instances: 1430,
                    instance_tasks: 1430.0,
                    rendition_tasks: 10_010.0,
                    ..Sample::default()
                }
            })
            .collect()
    }

    #[test]
    fn a_steady_run_is_flat_and_a_leak_of_20_mib_an_hour_is_not() {
        let steady = flatness(&run(|_| 150.0));
        assert!(steady.flat, "{steady:?}");
        assert_eq!(steady.samples, 271);
        assert!((steady.window_s - 2700.0).abs() < 1e-9);
        assert!(steady.rss_mib.as_ref().unwrap().per_hour.abs() < 1.0);
        // 20 MiB/h on 150 MiB: 15 MiB over the 45 judged minutes, above 5 % (7.5) and 8 MiB.
        let leak = flatness(&run(|t| 150.0 + 20.0 * t / 3600.0));
        assert!(!leak.flat, "{leak:?}");
        let rss = leak.rss_mib.unwrap();
        assert!((rss.per_hour - 20.0).abs() < 0.5, "{rss:?}");
        assert!(!rss.flat);
        // Warm-up growth in the first quarter is not judged.
        let warm = flatness(&run(|t| 100.0 + 50.0 * (t / 900.0).min(1.0)));
        assert!(warm.flat, "{warm:?}");
    }

    #[test]
    fn a_heap_that_keeps_growing_is_not_flat_even_while_rss_is() {
        // The allocator reusing pages it had kept can hide a leak from RSS for a while.
        let mut samples = run(|_| 150.0);
        for s in &mut samples {
            s.heap_allocated_mib = 60.0 + 20.0 * s.t_s / 3600.0;
        }
        let f = flatness(&samples);
        assert!(f.rss_mib.as_ref().unwrap().flat);
        let heap = f.heap_allocated_mib.clone().unwrap();
        assert!((heap.per_hour - 20.0).abs() < 0.5, "{heap:?}");
        assert!(!heap.flat);
        assert!(!f.flat);
        // A steady heap under the same RSS is flat.
        for s in &mut samples {
            s.heap_allocated_mib = 60.0;
        }
        assert!(flatness(&samples).flat);
    }

    #[test]
    fn connections_or_tasks_that_keep_growing_are_not_flat() {
        let mut samples = run(|_| 150.0);
        for (i, s) in samples.iter_mut().enumerate() {
            s.tcp += i as u64; // one more connection every 10 s
        }
        let f = flatness(&samples);
        assert!(!f.tcp.unwrap().flat);
        assert!(!f.flat);
        let mut samples = run(|_| 150.0);
        for (i, s) in samples.iter_mut().enumerate() {
            s.rendition_tasks += i as f64; // rendition tasks never ending
        }
        assert!(!flatness(&samples).flat);
    }

    #[test]
    fn samples_are_written_as_csv_rows_matching_the_header() {
        let mut s = run(|_| 150.0)[3].clone();
        s.heap_allocated_mib = 61.25;
        s.heap_resident_mib = 90.0;
        let row = s.csv_row();
        assert_eq!(row.split(',').count(), CSV_HEADER.split(',').count());
        assert!(
            row.starts_with("30.0,149.0,61.2,90.0,6,303,0,253,"),
            "{row}"
        );
    }

    #[test]
    fn the_plots_are_one_svg_with_a_panel_per_series_group() {
        let dir = std::env::temp_dir().join(format!("cvs-soak-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("soak.svg");
        let samples = run(|_| 150.0);
        write_svg(&path, &panels(&samples), 900).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for title in [
            "Operator memory",
            "heap allocated",
            "Probe tasks",
            "TCP connections",
            "Operator CPU",
        ] {
            assert!(svg.contains(title), "{title}");
        }
        assert!(svg.contains("<polyline"));
    }
}
