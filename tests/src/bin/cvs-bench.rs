//! `cvs-bench`: benchmarks of the operator's stale-playlist detector, run against the local
//! environment (`tests/env/up.sh --no-aws`), the HLS origin simulator (`hls-origin-sim`) and the
//! release operator (`cvs-operator run`), each as its own process.
//!
//! - `detection`: freezes one rendition of one stream at a time (many streams in parallel) and
//!   times how long the StreamInstance's `Healthy` condition takes to turn False, as a watch on
//!   the real API server sees it.
//! - `scale`: one operator probing about N media playlists: its CPU, peak RSS and probe request
//!   rate in a steady window, then detection latency while at that scale.
//! - `false-verdicts`: healthy but imperfect origins (segment publication jitter, a few requests
//!   failing, never twice in a row for one playlist) for a long run, with real freezes injected
//!   meanwhile: counts every `Healthy=False` nobody caused, and times the freezes.
//! - `parse-cost`: one operator probing long media playlists (a DVR window of N segments, or
//!   a hostile one): its CPU in consecutive windows (median, min, max), and what each instance
//!   was judged, so two operator builds can be compared on the same origin.
//! - `soak`: one operator at scale for a long run (an hour by default) with periodic faults
//!   (freezes of a rendition, whole-region outages) and churn (streams deleted and created):
//!   samples its RSS, threads, fds, TCP connections, CPU and probe tasks every 10 s into CSV and
//!   SVG plots, and judges whether they stay flat.
//! - `report`: prints the JSON lines the others appended (`--json-out`) as Markdown tables.
//!
//! Benchmarks print figures; nothing here is a timed assertion. Everything is on loopback, every
//! phase has a deadline, and the whole run has `--max-runtime`; the operator and the simulator
//! are stopped on every exit path (they are also killed if this process is dropped).
//! `make bench` runs the standard set (see BENCHMARKS.md).

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cvs_e2e::{Dist, dist};
use cvs_operator::resources::{ClusteredStream, StreamInstance};
use futures::StreamExt;
use hls_sim::api::{
    FaultApplied, FaultKind, FaultParams, FaultRequest, FlakyFailure, Ready, ResourceFilter,
};
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
/// Renditions a freeze picks from: the three video renditions (each also covers its I-frame
/// playlist) and the audio rendition.
const FREEZABLE: [&str; 4] = ["1080p", "720p", "360p", "audio-en"];
/// Media playlists per instance: 3 video + 1 audio + 3 I-frame.
const PLAYLISTS_PER_INSTANCE: usize = 7;

#[derive(Parser)]
#[command(
    name = "cvs-bench",
    about = "Benchmarks of the stale-playlist detector (loopback, bounded, prints figures)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detection latency: freeze a rendition, time until the instance's Healthy turns False.
    Detection(DetectionArgs),
    /// One operator probing ~N playlists: CPU, peak RSS, probe rate, then detection at scale.
    Scale(ScaleArgs),
    /// Healthy but imperfect origins (publication jitter, flaky requests) for a long run with
    /// real freezes injected meanwhile: false Stale verdicts, and detection of the freezes.
    FalseVerdicts(FalseVerdictArgs),
    /// One operator probing long media playlists (`long_window` on every one): its CPU.
    ParseCost(ParseCostArgs),
    /// A long run at scale with periodic faults and instance churn: RSS, threads, fds, TCP
    /// connections, CPU and probe tasks sampled every 10 s (CSV and SVG plots), and whether
    /// they stay flat.
    Soak(SoakArgs),
    /// Print the JSON lines written with --json-out as Markdown tables.
    Report {
        /// The JSON-lines file.
        file: PathBuf,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// The operator binary [default: <target>/release/cvs-operator].
    #[arg(long, env = "CVS_OPERATOR_BIN")]
    operator_bin: Option<PathBuf>,
    /// The simulator binary [default: <target>/release/hls-origin-sim].
    #[arg(long, env = "CVS_SIM_BIN")]
    sim_bin: Option<PathBuf>,
    /// Extra argument for `cvs-operator run`, repeatable: --operator-arg=--probe-concurrency=512
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Name of this run in the results [default: the scenario and its target duration].
    #[arg(long)]
    label: Option<String>,
    /// Hard limit on the whole run: when reached it kills the operator and the simulator and fails.
    #[arg(long, default_value = "15m")]
    max_runtime: humantime::Duration,
    /// Serve LL-HLS with this part target, in seconds (the operator then probes with blocking
    /// reloads and judges parts; detection is measured from the last part published, against
    /// the part bound: 3 x the part target, at most 1.5 x TD).
    #[arg(long)]
    part_target: Option<f64>,
    /// What the detection campaigns inject: `freeze` (a media playlist stops advancing) or
    /// `segment-404` (the playlist keeps advancing while its segments answer 404; detection is
    /// then measured from the moment the fault was applied).
    #[arg(long, value_enum, default_value_t = BenchFault::Freeze)]
    fault: BenchFault,
    /// Create the ClusteredStreams with `spec.health.segmentChecks: false`, to measure what the
    /// segment checks cost against the same run with them.
    #[arg(long)]
    no_segment_checks: bool,
}

/// The region outages of a soak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OutageKinds {
    /// `refuse` and `hang` taking turns, two of each kind in a row across the regions.
    Alternate,
    Refuse,
    Hang,
}

/// The fault a detection campaign injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BenchFault {
    Freeze,
    #[value(name = "segment-404")]
    Segment404,
}

#[derive(Args, Clone)]
struct DetectionArgs {
    /// Segment duration of the simulated streams, in seconds.
    #[arg(long, default_value_t = 2.0)]
    target_duration: f64,
    /// Number of freezes to time.
    #[arg(long, default_value_t = 100)]
    freezes: usize,
    /// Freezes in flight at once, each on its own stream (the simulator serves this many streams
    /// in two regions, so 2 x this many StreamInstances).
    #[arg(long, default_value_t = 25)]
    parallel: usize,
    /// Wait after every instance is Healthy before the first freeze [default: 20 x TD, at most
    /// 120 s], so first freezes meet a prober that has settled on the origin's segment clock.
    #[arg(long)]
    settle: Option<humantime::Duration>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone)]
struct ScaleArgs {
    /// Segment duration of the simulated streams, in seconds.
    #[arg(long, default_value_t = 6.0)]
    target_duration: f64,
    /// Media playlists to probe, 7 per StreamInstance, instances in two regions.
    #[arg(long, default_value_t = 10_000)]
    playlists: usize,
    /// Steady-state measuring window (CPU, probe rate, status writes).
    #[arg(long, default_value = "120s")]
    duration: humantime::Duration,
    /// Time after every instance is Healthy before the window starts.
    #[arg(long, default_value = "20s")]
    warmup: humantime::Duration,
    /// Freezes timed at scale, after the window.
    #[arg(long, default_value_t = 30)]
    freezes: usize,
    /// Freezes in flight at once, each on its own stream.
    #[arg(long, default_value_t = 15)]
    parallel: usize,
    /// Longest wait for every instance to become Healthy after the operator starts.
    #[arg(long, default_value = "240s")]
    healthy_timeout: humantime::Duration,
    /// Streams (2 StreamInstances each) created per batch while the operator runs; each batch
    /// is Healthy before the next is created.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Create every object before starting the operator instead (a restart at full scale: every
    /// instance's first status write at once).
    #[arg(long)]
    cold_start: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone)]
struct ParseCostArgs {
    /// Streams, one StreamInstance each in us-east-1, with 3 media playlists each (video,
    /// audio, I-frames).
    #[arg(long, default_value_t = 34)]
    streams: usize,
    /// Segments every media playlist lists (the simulator's `long_window`).
    #[arg(long, default_value_t = 10_800)]
    segments: u64,
    /// Segment duration of the simulated streams, in seconds.
    #[arg(long, default_value_t = 2.0)]
    target_duration: f64,
    /// Time after the operator starts before the first window.
    #[arg(long, default_value = "30s")]
    warmup: humantime::Duration,
    /// Consecutive CPU windows, and the length of each.
    #[arg(long, default_value_t = 6)]
    windows: usize,
    #[arg(long, default_value = "10s")]
    window: humantime::Duration,
    /// The operator binary [default: <target>/release/cvs-operator].
    #[arg(long, env = "CVS_OPERATOR_BIN")]
    operator_bin: Option<PathBuf>,
    /// The simulator binary [default: <target>/release/hls-origin-sim].
    #[arg(long, env = "CVS_SIM_BIN")]
    sim_bin: Option<PathBuf>,
    /// Extra argument for `cvs-operator run`, repeatable.
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// Name of this run in the output.
    #[arg(long, default_value = "parse-cost")]
    label: String,
    /// Hard limit on the whole run.
    #[arg(long, default_value = "10m")]
    max_runtime: humantime::Duration,
}

#[derive(Args, Clone)]
struct FalseVerdictArgs {
    /// Segment duration of the simulated streams, in seconds.
    #[arg(long, default_value_t = 2.0)]
    target_duration: f64,
    /// Media playlists to probe, 7 per StreamInstance, instances in two regions.
    #[arg(long, default_value_t = 1_000)]
    playlists: usize,
    /// Length of the observed run (after every instance is Healthy).
    #[arg(long, default_value = "30m")]
    duration: humantime::Duration,
    /// Spread of the time between two segment publications, in % of the target duration
    /// (the simulator's `jitter` fault: each publication moves by up to half of it).
    #[arg(long, default_value_t = 30)]
    jitter_percent: u32,
    /// About one request in this many fails (the simulator's `flaky` fault: a 500, a reset
    /// connection or a 10 s hang, never twice in a row for one playlist).
    #[arg(long, default_value_t = 100)]
    fail_one_in: u32,
    /// Freezes in flight at once during the run, each on its own stream.
    #[arg(long, default_value_t = 3)]
    parallel: usize,
    /// Streams (2 StreamInstances each) created per batch while the operator runs.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone)]
struct SoakArgs {
    /// Segment duration of the simulated streams, in seconds.
    #[arg(long, default_value_t = 6.0)]
    target_duration: f64,
    /// Media playlists to probe, 7 per StreamInstance, instances in two regions.
    #[arg(long, default_value_t = 10_000)]
    playlists: usize,
    /// Length of the observed run (after every instance is Healthy).
    #[arg(long, default_value = "1h")]
    duration: humantime::Duration,
    /// Time between the starts of two injected faults; one fault at a time.
    #[arg(long, default_value = "120s")]
    fault_every: humantime::Duration,
    /// How long a fault lasts before it is healed.
    #[arg(long, default_value = "40s")]
    fault_for: humantime::Duration,
    /// Every this many faults, a whole-region outage (taking turns: `refuse`, the region's
    /// listener closed, and `hang`, every request held) instead of a freeze of one rendition.
    #[arg(long, default_value_t = 4)]
    outage_every: u32,
    /// Which outages: both in turn, or only one kind (to measure it alone).
    #[arg(long, value_enum, default_value_t = OutageKinds::Alternate)]
    outage_kind: OutageKinds,
    /// StreamInstances created, and as many deleted, spread evenly over the run: a stream (its
    /// ClusteredStream and one StreamInstance per region) is deleted, then another created, so
    /// the set stays at its size.
    #[arg(long, default_value_t = 500)]
    churn: usize,
    /// Time between two samples.
    #[arg(long, default_value = "10s")]
    sample_every: humantime::Duration,
    /// Directory for samples.csv, soak.svg and summary.json [default:
    /// <target>/soak/<label>-<unix time>].
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Longest wait for every instance to become Healthy after the operator starts.
    #[arg(long, default_value = "600s")]
    healthy_timeout: humantime::Duration,
    /// Streams (2 StreamInstances each) created per batch while the operator runs.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    #[command(flatten)]
    common: Common,
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Checks that the environment is up and returns the operator and simulator binaries to run:
/// the ones given, else the release builds in the target directory; both must exist.
fn environment_and_binaries(
    operator_bin: Option<&PathBuf>,
    sim_bin: Option<&PathBuf>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if std::env::var("CVS_ENV_UP").as_deref() != Ok("1") {
        bail!(
            "the environment is not up: run `make bench`, or `eval \"$(tests/env/up.sh --no-aws)\"` first"
        );
    }
    let operator_bin = operator_bin
        .cloned()
        .unwrap_or_else(|| target_dir().join("release/cvs-operator"));
    let sim_bin = sim_bin
        .cloned()
        .unwrap_or_else(|| target_dir().join("release/hls-origin-sim"));
    for b in [&operator_bin, &sim_bin] {
        if !b.exists() {
            bail!("{} does not exist: run `make bench-build`", b.display());
        }
    }
    Ok((operator_bin, sim_bin))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cvs_e2e::repo_root().join("target"))
}

fn logs_dir() -> PathBuf {
    let dir = std::env::var_os("CVS_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn say(msg: impl AsRef<str>) {
    eprintln!("[cvs-bench {}] {}", clock(), msg.as_ref());
}

fn clock() -> String {
    let ms = now_ms();
    let s = (ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

fn fmt_dist(d: &Option<Dist>) -> String {
    match d {
        Some(d) => format!(
            "n={:<4} p50={:>6} p90={:>6} p99={:>6} max={:>6} (ms)",
            d.n, d.p50, d.p90, d.p99, d.max
        ),
        None => "no samples".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A child process with its output in a log file. Dropping it kills it (SIGKILL); `stop` asks
/// it to finish first (SIGTERM).
struct Proc {
    name: &'static str,
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
}

impl Proc {
    fn spawn(
        name: &'static str,
        cmd: &mut tokio::process::Command,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("child has no pid")?;
        Ok(Self {
            name,
            child,
            pid,
            log: log.to_path_buf(),
        })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `within`. Returns the exit code if it exited by itself.
    async fn stop(mut self, within: Duration) -> Option<i32> {
        if let Some(status) = self.exited() {
            return status.code();
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                say(format!(
                    "{} did not exit within {within:?} of SIGTERM; killing it",
                    self.name
                ));
                let _ = self.child.kill().await;
                None
            }
        }
    }
}

/// The simulator, started from its release binary.
async fn start_sim(
    bin: &Path,
    streams: usize,
    td: f64,
    part_target: Option<f64>,
    tag: &str,
) -> anyhow::Result<(Proc, Ready)> {
    let ready_file = logs_dir().join(format!("{tag}-sim.ready.json"));
    let _ = std::fs::remove_file(&ready_file);
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--regions",
        &REGIONS.join(","),
        "--streams",
        &streams.to_string(),
        "--renditions",
        "3",
        "--audio-renditions",
        "1",
        "--target-duration",
        &td.to_string(),
        "--ready-file",
    ])
    .arg(&ready_file)
    .args(
        part_target
            .map(|p| {
                vec![
                    "--ll-hls".to_string(),
                    "--part-target".into(),
                    p.to_string(),
                ]
            })
            .unwrap_or_default(),
    )
    .env("RUST_LOG", "warn");
    let mut sim = Proc::spawn(
        "hls-origin-sim",
        &mut cmd,
        &logs_dir().join(format!("{tag}-sim.log")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready_file) {
            let ready: Ready = serde_json::from_str(&text).context("parsing the ready file")?;
            return Ok((sim, ready));
        }
        if let Some(status) = sim.exited() {
            bail!("the simulator exited with {status}:\n{}", sim.log_tail());
        }
        if Instant::now() > deadline {
            bail!(
                "the simulator was not ready within 30 s:\n{}",
                sim.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator, as `cvs-operator run` with JSON logs, once its /readyz answers.
async fn start_operator(
    bin: &Path,
    ns: &str,
    extra: &[String],
    tag: &str,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", cvs_e2e::free_port()).parse()?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "run",
        "--namespace",
        ns,
        "--listen",
        &addr.to_string(),
        "--log-format",
        "json",
        "--allow-private-origins",
    ])
    .args(extra)
    .env("CVS_LOG", "info,kube=warn")
    .env("NO_PROXY", "127.0.0.1,localhost");
    let mut op = Proc::spawn(
        "cvs-operator",
        &mut cmd,
        &logs_dir().join(format!("{tag}-operator.log")),
    )?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok((op, addr));
        }
        if let Some(status) = op.exited() {
            bail!("the operator exited with {status}:\n{}", op.log_tail());
        }
        if Instant::now() > deadline {
            bail!("the operator was not ready within 60 s:\n{}", op.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A `VmHWM:`/`VmRSS:` line of /proc/PID/status, in KiB.
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// (busy, total) clock ticks of the whole machine, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Pid of a component of the local environment (kube-apiserver, etcd).
fn env_pid(component: &str) -> Option<u32> {
    let dir = std::env::var_os("CVS_STATE_DIR")?;
    std::fs::read_to_string(Path::new(&dir).join("run").join(format!("{component}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// CPU of a set of named processes over a window.
struct CpuMeter {
    pids: Vec<(&'static str, u32)>,
    start: Instant,
    ticks: Vec<Option<u64>>,
    machine: (u64, u64),
    hz: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct CpuReport {
    seconds: f64,
    /// Percent of one core, per process.
    processes: BTreeMap<String, f64>,
    /// Cores busy on the whole machine (0..nproc).
    machine_cores_busy: f64,
    /// Cores busy with processes not listed (other work on the shared machine).
    other_cores_busy: f64,
}

impl CpuMeter {
    fn start(pids: Vec<(&'static str, u32)>, hz: f64) -> Self {
        Self {
            ticks: pids.iter().map(|(_, p)| proc_ticks(*p)).collect(),
            pids,
            start: Instant::now(),
            machine: machine_ticks(),
            hz,
        }
    }

    fn read(&self) -> CpuReport {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let mut processes = BTreeMap::new();
        let mut listed = 0.0;
        for ((name, pid), before) in self.pids.iter().zip(&self.ticks) {
            if let (Some(b), Some(a)) = (before, proc_ticks(*pid)) {
                let pct = (a.saturating_sub(*b)) as f64 / self.hz / secs * 100.0;
                listed += pct / 100.0;
                processes.insert((*name).to_string(), (pct * 10.0).round() / 10.0);
            }
        }
        let (busy, total) = machine_ticks();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let dt = total.saturating_sub(self.machine.1).max(1) as f64;
        let busy_cores = busy.saturating_sub(self.machine.0) as f64 / dt * cores;
        CpuReport {
            seconds: (secs * 10.0).round() / 10.0,
            processes,
            machine_cores_busy: (busy_cores * 100.0).round() / 100.0,
            other_cores_busy: ((busy_cores - listed).max(0.0) * 100.0).round() / 100.0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The operator's /metrics
// ---------------------------------------------------------------------------------------------

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Sum of every sample of `metric` whose labels include all of `with` and none of `without`.
fn metric_sum(text: &str, metric: &str, with: &[(&str, &str)], without: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some(end) = r.find('}') else { continue };
            (&r[..end], r[end + 1..].trim())
        } else if rest.starts_with(' ') {
            ("", rest.trim())
        } else {
            continue;
        };
        let has = |(k, v): &(&str, &str)| labels.split(',').any(|l| l == format!("{k}=\"{v}\""));
        if with.iter().all(has) && !without.iter().any(has) {
            sum += value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    sum
}

#[derive(Clone, Debug, Default)]
struct OpCounters {
    media_requests: f64,
    /// LL-HLS blocking reloads.
    blocking_requests: f64,
    master_requests: f64,
    failed_requests: f64,
    instance_writes: f64,
    cluster_writes: f64,
    probed_playlists: f64,
    stale_playlists: f64,
    instance_errors: f64,
    cluster_errors: f64,
    state_writes: f64,
    state_errors: f64,
    /// HEADs of the newest segment or init segment (`cvs_segment_checks_total`).
    segment_checks: f64,
}

async fn scrape(http: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<OpCounters> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let probes = "cvs_probe_requests_total";
    let writes = "cvs_status_writes_total";
    Ok(OpCounters {
        media_requests: metric_sum(&text, probes, &[("playlist", "media")], &[]),
        blocking_requests: metric_sum(&text, probes, &[("playlist", "media_blocking")], &[]),
        master_requests: metric_sum(&text, probes, &[("playlist", "master")], &[]),
        failed_requests: metric_sum(&text, probes, &[], &[("outcome", "ok")]),
        instance_writes: metric_sum(&text, writes, &[("controller", "instance")], &[]),
        cluster_writes: metric_sum(&text, writes, &[("controller", "cluster")], &[]),
        probed_playlists: metric_sum(&text, "cvs_probed_playlists", &[], &[]),
        stale_playlists: metric_sum(&text, "cvs_stale_renditions", &[], &[]),
        instance_errors: metric_sum(
            &text,
            "cvs_reconcile_errors_total",
            &[("controller", "instance")],
            &[],
        ),
        cluster_errors: metric_sum(
            &text,
            "cvs_reconcile_errors_total",
            &[("controller", "cluster")],
            &[],
        ),
        state_writes: metric_sum(&text, "cvs_state_writes_total", &[], &[]),
        state_errors: metric_sum(&text, "cvs_state_errors_total", &[], &[]),
        segment_checks: metric_sum(&text, "cvs_segment_checks_total", &[], &[]),
    })
}

// ---------------------------------------------------------------------------------------------
// What the API server says: every StreamInstance's Healthy condition, as a watch sees it
// ---------------------------------------------------------------------------------------------

/// The Healthy condition of one instance and the wall time (unix ms) this process saw it change.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Obs {
    healthy: Option<bool>,
    at_ms: u64,
}

#[derive(Default)]
struct BoardInner {
    slots: HashMap<String, watch::Sender<Obs>>,
    /// Instances a freeze worker is working on; a False anywhere else is spurious.
    expected: HashSet<String>,
    /// Regions under an outage: a False on any of their instances is expected.
    expected_regions: HashSet<String>,
    spurious: Vec<(String, u64)>,
    updates: u64,
}

/// Every instance's Healthy condition, fed by one watch on the namespace.
#[derive(Default)]
struct Board(Mutex<BoardInner>);

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BoardInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn observe(&self, name: &str, healthy: Option<bool>, at_ms: u64) {
        let mut b = self.lock();
        b.updates += 1;
        let tx = b
            .slots
            .entry(name.to_string())
            .or_insert_with(|| {
                watch::channel(Obs {
                    healthy: None,
                    at_ms: 0,
                })
                .0
            })
            .clone();
        if tx.borrow().healthy != healthy {
            tx.send_replace(Obs { healthy, at_ms });
            let in_outage = b
                .expected_regions
                .iter()
                .any(|r| name.ends_with(&format!("-{r}")));
            if healthy == Some(false) && !b.expected.contains(name) && !in_outage {
                b.spurious.push((name.to_string(), at_ms));
            }
        }
    }

    fn subscribe(&self, name: &str) -> watch::Receiver<Obs> {
        self.lock()
            .slots
            .entry(name.to_string())
            .or_insert_with(|| {
                watch::channel(Obs {
                    healthy: None,
                    at_ms: 0,
                })
                .0
            })
            .subscribe()
    }

    fn count(&self, healthy: Option<bool>) -> usize {
        self.lock()
            .slots
            .values()
            .filter(|s| s.borrow().healthy == healthy)
            .count()
    }

    fn expect(&self, name: &str, on: bool) {
        let mut b = self.lock();
        if on {
            b.expected.insert(name.to_string());
        } else {
            b.expected.remove(name);
        }
    }

    fn expect_region(&self, region: &str, on: bool) {
        let mut b = self.lock();
        if on {
            b.expected_regions.insert(region.to_string());
        } else {
            b.expected_regions.remove(region);
        }
    }

    /// Forgets a deleted instance.
    fn forget(&self, name: &str) {
        let mut b = self.lock();
        b.updates += 1;
        b.slots.remove(name);
    }

    /// Instances the watch knows.
    fn len(&self) -> usize {
        self.lock().slots.len()
    }

    fn spurious_since(&self, since_ms: u64) -> Vec<(String, u64)> {
        self.lock()
            .spurious
            .iter()
            .filter(|(_, at)| *at >= since_ms)
            .cloned()
            .collect()
    }

    fn updates(&self) -> u64 {
        self.lock().updates
    }
}

fn healthy_of(si: &StreamInstance) -> Option<bool> {
    let c = si
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Healthy")?;
    match c.status.as_str() {
        "True" => Some(true),
        "False" => Some(false),
        _ => None,
    }
}

fn spawn_watch(client: kube::Client, ns: &str, board: Arc<Board>) -> tokio::task::JoinHandle<()> {
    let api: Api<StreamInstance> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Apply(si) | watcher::Event::InitApply(si)) => {
                    let at = now_ms();
                    if let Some(name) = si.metadata.name.as_deref() {
                        board.observe(name, healthy_of(&si), at);
                    }
                }
                Ok(watcher::Event::Delete(si)) => {
                    if let Some(name) = si.metadata.name.as_deref() {
                        board.forget(name);
                    }
                }
                Ok(_) => {}
                Err(e) => say(format!("watch error (retrying): {e}")),
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The rig: simulator, objects in a namespace, watch, operator
// ---------------------------------------------------------------------------------------------

fn instance_name(stream: &str, region: &str) -> String {
    format!("{stream}-{region}")
}

/// Creates ClusteredStreams (`true`) and StreamInstances (`false`), 16 requests at a time, each
/// retried a few times. Every ClusteredStream exists before any StreamInstance is created, so
/// no instance is ever reconciled without its ClusteredStream.
async fn create_objects(
    clusters: &Api<ClusteredStream>,
    instances: &Api<StreamInstance>,
    objects: Vec<(bool, serde_json::Value)>,
) -> anyhow::Result<()> {
    let (cluster_objects, instance_objects): (Vec<_>, Vec<_>) =
        objects.into_iter().partition(|(is_cluster, _)| *is_cluster);
    create_some(clusters, instances, cluster_objects).await?;
    create_some(clusters, instances, instance_objects).await
}

async fn create_some(
    clusters: &Api<ClusteredStream>,
    instances: &Api<StreamInstance>,
    objects: Vec<(bool, serde_json::Value)>,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(objects)
        .map(|(is_cluster, obj)| async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let r = if is_cluster {
                    clusters
                        .create(
                            &PostParams::default(),
                            &serde_json::from_value(obj.clone())?,
                        )
                        .await
                        .map(|_| ())
                } else {
                    instances
                        .create(
                            &PostParams::default(),
                            &serde_json::from_value(obj.clone())?,
                        )
                        .await
                        .map(|_| ())
                };
                match r {
                    Ok(()) => return Ok(()),
                    Err(e) if attempt < 5 => {
                        say(format!("create failed (attempt {attempt}, retrying): {e}"));
                        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                    }
                    Err(e) => return Err(anyhow::Error::from(e).context("creating an object")),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The ClusteredStream (`true`) and the StreamInstances, one per region, of each stream.
fn stream_objects(
    streams: &[String],
    cluster_spec: &serde_json::Value,
    region_urls: &BTreeMap<String, String>,
) -> Vec<(bool, serde_json::Value)> {
    let mut out: Vec<(bool, serde_json::Value)> = Vec::new();
    for s in streams {
        out.push((
            true,
            serde_json::json!({
                "apiVersion": "cvs.dev/v1alpha1", "kind": "ClusteredStream",
                "metadata": {"name": s},
                "spec": cluster_spec
            }),
        ));
        for region in REGIONS {
            let url = format!("{}/{s}/master.m3u8", region_urls[region]);
            out.push((
                false,
                serde_json::json!({
                    "apiVersion": "cvs.dev/v1alpha1", "kind": "StreamInstance",
                    "metadata": {"name": instance_name(s, region)},
                    "spec": {
                        "clusteredStream": s, "region": region,
                        "cloudfront": {"domain": format!("{s}-{region}.bench.cloudfront.net")},
                        "origin": {"url": url}
                    }
                }),
            ));
        }
    }
    out
}

struct Rig {
    client: kube::Client,
    ns: String,
    tag: String,
    sim: Option<Proc>,
    ready: Ready,
    operator: Option<Proc>,
    op_addr: SocketAddr,
    op_log: PathBuf,
    http: reqwest::Client,
    board: Arc<Board>,
    watch: tokio::task::JoinHandle<()>,
    streams: Vec<String>,
    /// Streams the simulator serves that were not created (see `Rig::start_with_spare`).
    spare_streams: Vec<String>,
    /// The spec of every ClusteredStream the rig creates.
    cluster_spec: serde_json::Value,
    td_ms: u64,
    /// LL-HLS part target (ms), when the simulator serves LL-HLS.
    part_ms: Option<u64>,
    /// What the detection campaigns inject.
    fault: BenchFault,
    create_seconds: f64,
    time_to_healthy_seconds: f64,
    /// Unix ms the operator was started (its probes' first sight of every playlist).
    probing_since_ms: u64,
    /// Highest VmRSS of the operator while the instances were becoming Healthy.
    startup_rss_max_mib: f64,
}

impl Rig {
    /// Starts the simulator with `streams` streams, creates one ClusteredStream per stream and
    /// one StreamInstance per stream and region, starts the operator and waits until every
    /// instance is Healthy. `prelude` faults are applied to the simulator before any object
    /// exists.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        common: &Common,
        scenario: &str,
        streams: usize,
        td: f64,
        healthy_timeout: Duration,
        cold_start: bool,
        batch: usize,
        prelude: &[FaultRequest],
    ) -> anyhow::Result<Rig> {
        Self::start_with_spare(
            common,
            scenario,
            streams,
            0,
            td,
            healthy_timeout,
            cold_start,
            batch,
            prelude,
        )
        .await
    }

    /// [`Rig::start`] with `spare` more streams served by the simulator but not created (the
    /// soak's churn creates them): they are in `spare_streams`.
    #[allow(clippy::too_many_arguments)]
    async fn start_with_spare(
        common: &Common,
        scenario: &str,
        streams: usize,
        spare: usize,
        td: f64,
        healthy_timeout: Duration,
        cold_start: bool,
        batch: usize,
        prelude: &[FaultRequest],
    ) -> anyhow::Result<Rig> {
        let (operator_bin, sim_bin) =
            environment_and_binaries(common.operator_bin.as_ref(), common.sim_bin.as_ref())?;
        let client = kube::Client::try_default()
            .await
            .context("kube client from KUBECONFIG")?;
        let probe: Api<StreamInstance> = Api::all(client.clone());
        probe
            .list(&ListParams::default().limit(1))
            .await
            .context("listing StreamInstances (are the CRDs installed? kubectl apply -f crds/)")?;

        let ns = format!("bench-{scenario}-{}", now_ms() / 1000);
        let tag = ns.clone();
        say(format!(
            "{scenario}: {streams} streams x {} regions = {} StreamInstances ({} media playlists), TD {td} s, namespace {ns}",
            REGIONS.len(),
            streams * REGIONS.len(),
            streams * REGIONS.len() * PLAYLISTS_PER_INSTANCE
        ));
        let (sim, ready) =
            start_sim(&sim_bin, streams + spare, td, common.part_target, &tag).await?;
        // Faults that shape the origins from the start (before the operator sees them).
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        for req in prelude {
            let r = http
                .post(format!("{}/faults", ready.control))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(req)?)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("POST /faults: {}: {}", r.status(), r.text().await?);
            }
            say(format!(
                "origin shaped from the start: {}",
                serde_json::to_string(req)?
            ));
        }
        // Named as the simulator names them.
        let width = (streams + spare).to_string().len().max(4);
        let mut stream_names: Vec<String> = (1..=streams + spare)
            .map(|i| format!("s{i:0width$}"))
            .collect();
        let spare_streams = stream_names.split_off(streams);

        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?,
            )
            .await
            .context("creating the namespace")?;

        let clusters: Api<ClusteredStream> = Api::namespaced(client.clone(), &ns);
        let instances: Api<StreamInstance> = Api::namespaced(client.clone(), &ns);
        let region_urls = ready.regions.clone();
        let mut cluster_spec = serde_json::json!({
            "stateTable": {"name": "cvs-bench", "region": "us-east-1", "create": true}
        });
        if common.no_segment_checks {
            cluster_spec["health"] = serde_json::json!({"segmentChecks": false});
        }
        let objects = |streams: &[String]| stream_objects(streams, &cluster_spec, &region_urls);

        let board = Arc::new(Board::default());
        let watch = spawn_watch(client.clone(), &ns, board.clone());
        let created = Instant::now();
        let mut create_seconds = 0.0;
        if cold_start {
            let all = objects(&stream_names);
            let total = all.len();
            create_objects(&clusters, &instances, all).await?;
            create_seconds = created.elapsed().as_secs_f64();
            say(format!(
                "created {total} objects in {create_seconds:.1} s; starting the operator"
            ));
        }
        let started = Instant::now();
        let probing_since_ms = now_ms();
        let (operator, op_addr) =
            start_operator(&operator_bin, &ns, &common.operator_args, &tag).await?;
        let op_log = operator.log.clone();
        let mut rig = Rig {
            client,
            ns,
            tag,
            sim: Some(sim),
            ready,
            operator: Some(operator),
            op_addr,
            op_log,
            http,
            board,
            watch,
            streams: stream_names.clone(),
            spare_streams,
            cluster_spec: cluster_spec.clone(),
            td_ms: (td * 1000.0).round() as u64,
            part_ms: common.part_target.map(|p| (p * 1000.0).round() as u64),
            fault: common.fault,
            create_seconds,
            time_to_healthy_seconds: 0.0,
            probing_since_ms,
            startup_rss_max_mib: 0.0,
        };
        let want = streams * REGIONS.len();
        let deadline = started + healthy_timeout;
        if cold_start {
            rig.wait_healthy(want, deadline).await?;
        } else {
            // The operator is running: add the events batch by batch, each Healthy before the
            // next, as they would arrive in production.
            let started = Instant::now();
            let mut made = 0;
            for (i, chunk) in stream_names.chunks(batch.max(1)).enumerate() {
                create_objects(&clusters, &instances, objects(chunk)).await?;
                made += chunk.len() * REGIONS.len();
                rig.wait_healthy(made, deadline).await?;
                if i % 5 == 4 {
                    say(format!("{made} of {want} instances created and Healthy"));
                }
            }
            rig.create_seconds = started.elapsed().as_secs_f64();
        }
        rig.time_to_healthy_seconds = started.elapsed().as_secs_f64();
        say(format!(
            "all {want} instances Healthy=True {:.1} s after the operator started ({})",
            rig.time_to_healthy_seconds,
            if cold_start {
                "cold start: every object existed before it"
            } else {
                "objects created in batches while it ran"
            }
        ));
        Ok(rig)
    }

    /// Waits until `want` instances are Healthy=True, sampling the operator's RSS meanwhile.
    async fn wait_healthy(&mut self, want: usize, deadline: Instant) -> anyhow::Result<()> {
        let mut next_note = Instant::now() + Duration::from_secs(10);
        loop {
            let rss = proc_status_kib(self.operator_pid(), "VmRSS:").unwrap_or(0) as f64 / 1024.0;
            self.startup_rss_max_mib = self.startup_rss_max_mib.max((rss * 10.0).round() / 10.0);
            let healthy = self.board.count(Some(true));
            if healthy >= want {
                return Ok(());
            }
            if let Some(op) = self.operator.as_mut()
                && let Some(status) = op.exited()
            {
                bail!("the operator exited with {status}:\n{}", op.log_tail());
            }
            if Instant::now() > deadline {
                let unhealthy = self.board.count(Some(false));
                bail!(
                    "only {healthy} of {want} instances Healthy=True in time (False: {unhealthy}, Unknown: {})",
                    want.saturating_sub(healthy + unhealthy)
                );
            }
            if Instant::now() > next_note {
                say(format!("{healthy} of {want} instances Healthy=True"));
                next_note += Duration::from_secs(10);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn operator_pid(&self) -> u32 {
        self.operator.as_ref().map_or(0, |o| o.pid)
    }

    fn sim_pid(&self) -> u32 {
        self.sim.as_ref().map_or(0, |o| o.pid)
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in [self.operator.as_mut(), self.sim.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(status) = p.exited() {
                bail!("{} exited with {status}:\n{}", p.name, p.log_tail());
            }
        }
        Ok(())
    }

    async fn fault(&self, req: &FaultRequest) -> anyhow::Result<FaultApplied> {
        let r = self
            .http
            .post(format!("{}/faults", self.ready.control))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(req)?)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("POST /faults: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    async fn heal(&self, id: u64) -> anyhow::Result<u64> {
        let r = self
            .http
            .delete(format!("{}/faults/{id}", self.ready.control))
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("DELETE /faults/{id}: {status}: {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(v["healed_at_unix_ms"].as_u64().unwrap_or_else(now_ms))
    }

    /// Stops the operator (SIGTERM), removes the objects, stops the simulator.
    async fn teardown(mut self) {
        self.watch.abort();
        if let Some(op) = self.operator.take() {
            let code = op.stop(Duration::from_secs(30)).await;
            say(format!(
                "operator stopped (exit code {code:?}); log: {}",
                self.op_log.display()
            ));
        }
        let dp = DeleteParams::default();
        let lp = ListParams::default();
        let si: Api<StreamInstance> = Api::namespaced(self.client.clone(), &self.ns);
        let cs: Api<ClusteredStream> = Api::namespaced(self.client.clone(), &self.ns);
        let ev: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let ns: Api<Namespace> = Api::all(self.client.clone());
        let cleanup = async {
            let _ = si.delete_collection(&dp, &lp).await;
            let _ = cs.delete_collection(&dp, &lp).await;
            let _ = ev.delete_collection(&dp, &lp).await;
            let _ = ns.delete(&self.ns, &dp).await;
        };
        if tokio::time::timeout(Duration::from_secs(60), cleanup)
            .await
            .is_err()
        {
            say("removing the benchmark objects took over 60 s; left as they are");
        }
        if let Some(sim) = self.sim.take() {
            sim.stop(Duration::from_secs(10)).await;
        }
        say(format!("{}: stopped and cleaned up", self.tag));
    }
}

// ---------------------------------------------------------------------------------------------
// Freezes
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
struct FreezeSample {
    instance: String,
    rendition: String,
    /// Random wait before the freeze, so freezes land anywhere within a segment.
    offset_ms: u64,
    /// Time since the prober first saw this instance's playlists, or since the instance last
    /// recovered from an earlier freeze, at the freeze.
    prober_age_ms: u64,
    applied_at_ms: u64,
    /// Publication instant of the last segment the frozen playlist shows.
    last_segment_ms: u64,
    /// When the watch saw Healthy=False.
    detected_at_ms: Option<u64>,
    /// When the operator logged the health change (its own clock).
    engine_at_ms: Option<u64>,
    healed_at_ms: Option<u64>,
    /// When the watch saw Healthy=True again.
    recovered_at_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct DetectionSummary {
    td_ms: u64,
    /// LL-HLS part target; then every "from last segment" figure is from the last part.
    #[serde(default)]
    part_ms: Option<u64>,
    /// Media playlist requests (plain and blocking) per probed playlist per second over the
    /// campaign.
    #[serde(default)]
    requests_per_playlist_per_s: Option<f64>,
    /// StreamInstances probed by the operator.
    #[serde(default)]
    instances: usize,
    goal_ms: u64,
    freezes: usize,
    detected: usize,
    missed: usize,
    /// Watch saw Healthy=False, minus the freeze instant.
    from_freeze: Option<Dist>,
    /// Watch saw Healthy=False, minus the last visible segment's publication (the RFC 8216 view).
    from_last_segment: Option<Dist>,
    /// Prober age (see `FreezeSample::prober_age_ms`) that separates the two groups below.
    #[serde(default)]
    settled_after_ms: u64,
    /// `from_last_segment` of freezes whose prober was at least `settled_after_ms` old.
    #[serde(default)]
    settled: Option<Dist>,
    /// `from_last_segment` of freezes soon after the operator started or the instance recovered.
    #[serde(default)]
    recent: Option<Dist>,
    /// The operator's own "instance health changed" log line, minus the last segment.
    engine_from_last_segment: Option<Dist>,
    /// Watch saw Healthy=False, minus the operator's log line: status write and watch delivery.
    status_path: Option<Dist>,
    /// Watch saw Healthy=True, minus the heal.
    recovery_from_heal: Option<Dist>,
    /// Healthy=False on an instance nobody froze.
    spurious: usize,
    goal_met: bool,
}

/// Waits at most `within` for the instance's Healthy verdict to be `healthy`; when the watch
/// delivered it.
async fn wait_health(
    rx: &mut watch::Receiver<Obs>,
    healthy: bool,
    within: Duration,
) -> Option<u64> {
    match tokio::time::timeout(within, rx.wait_for(|o| o.healthy == Some(healthy))).await {
        Ok(Ok(o)) => Some(o.at_ms),
        _ => None,
    }
}

/// Runs `freezes` freezes, `parallel` at a time, each worker on its own stream (picked at random
/// from the rig's streams), region and rendition at random, at a random instant within a segment.
async fn freeze_campaign(rig: &Rig, freezes: usize, parallel: usize) -> Vec<FreezeSample> {
    freeze_campaign_until(rig, freezes, parallel, None).await
}

/// [`freeze_campaign`] that starts no freeze after `until`.
async fn freeze_campaign_until(
    rig: &Rig,
    freezes: usize,
    parallel: usize,
    until: Option<Instant>,
) -> Vec<FreezeSample> {
    let mut rng = fastrand::Rng::new();
    let mut streams = rig.streams.clone();
    rng.shuffle(&mut streams);
    let parallel = parallel.clamp(1, streams.len());
    let next = AtomicUsize::new(0);
    let td = rig.td_ms;
    let detect_timeout = Duration::from_millis(td * 3 / 2 + 30_000);
    let recover_timeout = Duration::from_millis(td * 6 + 60_000);
    let done = AtomicUsize::new(0);
    let workers = streams.iter().take(parallel).map(|stream| {
        let (next, done) = (&next, &done);
        async move {
            let mut rng = fastrand::Rng::new();
            let mut out = Vec::new();
            let mut recovered: HashMap<String, u64> = HashMap::new();
            while next.fetch_add(1, Ordering::Relaxed) < freezes
                && until.is_none_or(|u| Instant::now() < u)
            {
                let region = REGIONS[rng.usize(..REGIONS.len())];
                let rendition = FREEZABLE[rng.usize(..FREEZABLE.len())];
                let name = instance_name(stream, region);
                let mut rx = rig.board.subscribe(&name);
                // Never start from an unhealthy instance.
                if wait_health(&mut rx, true, recover_timeout).await.is_none() {
                    say(format!("{name} is not Healthy before its freeze; skipped"));
                    continue;
                }
                let offset_ms = rng.u64(0..td);
                tokio::time::sleep(Duration::from_millis(offset_ms)).await;
                rig.board.expect(&name, true);
                let req = match rig.fault {
                    BenchFault::Freeze => FaultRequest::new(FaultKind::Freeze)
                        .region(region)
                        .stream(stream.as_str())
                        .rendition(rendition)
                        .resource(ResourceFilter::Media),
                    BenchFault::Segment404 => FaultRequest::new(FaultKind::Http404)
                        .region(region)
                        .stream(stream.as_str())
                        .rendition(rendition)
                        .resource(ResourceFilter::Segment),
                };
                let applied = match rig.fault(&req).await {
                    Ok(a) => a,
                    Err(e) => {
                        say(format!("freeze of {name}/{rendition} failed: {e:#}"));
                        rig.board.expect(&name, false);
                        continue;
                    }
                };
                // With LL-HLS the bound runs from the last part published. Segments answering
                // 404 are timed from the fault: the playlist keeps advancing.
                let last_segment_ms = if rig.fault == BenchFault::Segment404 {
                    Some(applied.applied_at_unix_ms)
                } else {
                    None
                };
                let last_segment_ms = last_segment_ms
                    .or_else(|| {
                        applied.frozen.as_ref().and_then(|f| {
                            let s = f.streams.get(stream.as_str());
                            if rig.part_ms.is_some() {
                                s.and_then(|s| s.last_part_published_unix_ms)
                                    .or(f.last_part_published_unix_ms)
                            } else {
                                s.and_then(|s| s.last_segment_published_unix_ms)
                                    .or(f.last_segment_published_unix_ms)
                            }
                        })
                    })
                    .unwrap_or(applied.applied_at_unix_ms);
                let detected_at_ms = wait_health(&mut rx, false, detect_timeout).await;
                if detected_at_ms.is_none() {
                    say(format!(
                        "{name}/{rendition}: not detected within {detect_timeout:?}"
                    ));
                }
                let healed_at_ms = match rig.heal(applied.id).await {
                    Ok(at) => Some(at),
                    Err(e) => {
                        say(format!("heal of fault {} failed: {e:#}", applied.id));
                        None
                    }
                };
                let recovered_at_ms = wait_health(&mut rx, true, recover_timeout).await;
                if recovered_at_ms.is_none() {
                    say(format!(
                        "{name}: not Healthy again within {recover_timeout:?}"
                    ));
                }
                rig.board.expect(&name, false);
                let since = recovered
                    .get(&name)
                    .copied()
                    .unwrap_or(rig.probing_since_ms);
                if let Some(at) = recovered_at_ms {
                    recovered.insert(name.clone(), at);
                }
                out.push(FreezeSample {
                    instance: name,
                    rendition: rendition.to_string(),
                    offset_ms,
                    prober_age_ms: applied.applied_at_unix_ms.saturating_sub(since),
                    applied_at_ms: applied.applied_at_unix_ms,
                    last_segment_ms,
                    detected_at_ms,
                    engine_at_ms: None,
                    healed_at_ms,
                    recovered_at_ms,
                });
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 10 == 0 || n == freezes {
                    if freezes == usize::MAX {
                        say(format!("{n} freezes done"));
                    } else {
                        say(format!("{n} of {freezes} freezes done"));
                    }
                }
            }
            out
        }
    });
    let mut samples: Vec<FreezeSample> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    // The operator's own view: its "instance health changed" log lines.
    let changes = operator_health_log(&rig.op_log, &rig.ns);
    for s in &mut samples {
        s.engine_at_ms = changes
            .get(&s.instance)
            .and_then(|v| v.iter().copied().find(|&at| at >= s.applied_at_ms));
    }
    samples
}

/// Unix ms of every "instance health changed ... healthy=false" line of the operator's JSON log,
/// per instance name in `ns`.
fn operator_health_log(log: &Path, ns: &str) -> HashMap<String, Vec<u64>> {
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    let Ok(text) = std::fs::read_to_string(log) else {
        return out;
    };
    let prefix = format!("{ns}/");
    for line in text.lines() {
        if !line.contains("instance health changed") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &v["fields"];
        if fields["healthy"].as_bool() != Some(false) {
            continue;
        }
        let (Some(instance), Some(ts)) = (fields["instance"].as_str(), v["timestamp"].as_str())
        else {
            continue;
        };
        let Some(name) = instance.strip_prefix(&prefix) else {
            continue;
        };
        if let Ok(t) = ts.parse::<jiff::Timestamp>() {
            out.entry(name.to_string())
                .or_default()
                .push(t.as_millisecond() as u64);
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

/// Prober age after which a freeze counts as "settled": 20 segments, at most 120 s.
fn settled_after_ms(td_ms: u64) -> u64 {
    (td_ms * 20).min(120_000)
}

fn summarize(
    samples: &[FreezeSample],
    td_ms: u64,
    part_ms: Option<u64>,
    fault: BenchFault,
    instances: usize,
    spurious: usize,
) -> DetectionSummary {
    // The bound (1.5 x TD, or with LL-HLS the part bound: 3 x the part target, at most
    // 1.5 x TD, the operator's defaults) + 250 ms. Segments answering 404 are found by the
    // sampled checks: a rendition's turn comes within one segment per rendition of its instance,
    // then `failureThreshold` (3) failed checks, one per new segment, and the segment that
    // reveals the last of them: (7 + 3) x TD + 250 ms from the fault.
    let goal_ms = match fault {
        BenchFault::Segment404 => (PLAYLISTS_PER_INSTANCE as u64 + 3) * td_ms,
        BenchFault::Freeze => part_ms.map_or(td_ms * 3 / 2, |p| (3 * p).min(td_ms * 3 / 2)),
    } + 250;
    let settled_after = settled_after_ms(td_ms);
    let latency = |s: &FreezeSample| Some(s.detected_at_ms? as i64 - s.last_segment_ms as i64);
    let group = |settled: bool| {
        dist(
            samples
                .iter()
                .filter(|s| (s.prober_age_ms >= settled_after) == settled)
                .filter_map(latency),
        )
    };
    let detected: Vec<&FreezeSample> = samples
        .iter()
        .filter(|s| s.detected_at_ms.is_some())
        .collect();
    let d = |f: &dyn Fn(&FreezeSample) -> Option<i64>| dist(samples.iter().filter_map(f));
    let from_last_segment = d(&|s| Some(s.detected_at_ms? as i64 - s.last_segment_ms as i64));
    let missed = samples.len() - detected.len();
    DetectionSummary {
        td_ms,
        part_ms,
        requests_per_playlist_per_s: None,
        instances,
        goal_ms,
        freezes: samples.len(),
        detected: detected.len(),
        missed,
        from_freeze: d(&|s| Some(s.detected_at_ms? as i64 - s.applied_at_ms as i64)),
        goal_met: missed == 0
            && from_last_segment
                .as_ref()
                .is_some_and(|d| d.p99 <= goal_ms as i64),
        from_last_segment,
        settled_after_ms: settled_after,
        settled: group(true),
        recent: group(false),
        engine_from_last_segment: d(&|s| Some(s.engine_at_ms? as i64 - s.last_segment_ms as i64)),
        status_path: d(&|s| Some(s.detected_at_ms? as i64 - s.engine_at_ms? as i64)),
        recovery_from_heal: d(&|s| Some(s.recovered_at_ms? as i64 - s.healed_at_ms? as i64)),
        spurious,
    }
}

fn print_detection(title: &str, s: &DetectionSummary) {
    println!("{title}");
    let bound = match s.part_ms {
        Some(p) => format!("LL-HLS part {p} ms, from the last PART; goal p99 <= part bound"),
        None => "goal p99 <= 1.5 x TD".into(),
    };
    println!(
        "  freezes {} detected {} missed {} spurious {}; {bound} + 250 ms = {} ms: {}",
        s.freezes,
        s.detected,
        s.missed,
        s.spurious,
        s.goal_ms,
        if s.goal_met { "MET" } else { "NOT MET" }
    );
    if let Some(r) = s.requests_per_playlist_per_s {
        println!("  media playlist requests per playlist per second: {r}");
    }
    println!(
        "  from last segment published   {}",
        fmt_dist(&s.from_last_segment)
    );
    println!(
        "    prober age >= {:>3} s         {}",
        s.settled_after_ms / 1000,
        fmt_dist(&s.settled)
    );
    println!(
        "    prober age <  {:>3} s         {}",
        s.settled_after_ms / 1000,
        fmt_dist(&s.recent)
    );
    println!(
        "  from freeze applied           {}",
        fmt_dist(&s.from_freeze)
    );
    println!(
        "  operator log, from last seg.  {}",
        fmt_dist(&s.engine_from_last_segment)
    );
    println!(
        "  status write + watch delivery {}",
        fmt_dist(&s.status_path)
    );
    println!(
        "  recovery after heal           {}",
        fmt_dist(&s.recovery_from_heal)
    );
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct ResultLine {
    kind: String,
    label: String,
    finished_unix_ms: u64,
    args: Vec<String>,
    operator_args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detection: Option<DetectionSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scale: Option<ScaleSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    false_verdicts: Option<FalseVerdictSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    soak: Option<SoakSummary>,
    /// CPU over the freeze campaign.
    #[serde(default)]
    campaign_cpu: CpuReport,
    samples: Vec<FreezeSample>,
}

fn write_result(path: &Option<PathBuf>, line: &ResultLine) -> anyhow::Result<()> {
    if let Some(path) = path {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(line)?)?;
        say(format!("result appended to {}", path.display()));
    }
    Ok(())
}

fn meter_pids(rig: &Rig) -> Vec<(&'static str, u32)> {
    let mut pids = vec![
        ("operator", rig.operator_pid()),
        ("simulator", rig.sim_pid()),
        ("bench", std::process::id()),
    ];
    if let Some(p) = env_pid("kube-apiserver") {
        pids.push(("kube-apiserver", p));
    }
    if let Some(p) = env_pid("etcd") {
        pids.push(("etcd", p));
    }
    pids
}

async fn detection(args: DetectionArgs) -> anyhow::Result<()> {
    let label = args
        .common
        .label
        .clone()
        .unwrap_or_else(|| format!("detection-td{}", args.target_duration));
    let rig = Rig::start(
        &args.common,
        "detection",
        args.parallel.max(1),
        args.target_duration,
        Duration::from_secs(120),
        false,
        args.parallel.max(1),
        &[],
    )
    .await?;
    let result = async {
        let settle: Duration = args.settle.map_or_else(
            || Duration::from_millis(settled_after_ms(rig.td_ms)),
            Into::into,
        );
        say(format!("letting the probes settle for {settle:?}"));
        tokio::time::sleep(settle).await;
        let since = now_ms();
        let meter = CpuMeter::start(meter_pids(&rig), clk_tck());
        let before = scrape(&rig.http, rig.op_addr).await.ok();
        let samples = freeze_campaign(&rig, args.freezes, args.parallel).await;
        let after = scrape(&rig.http, rig.op_addr).await.ok();
        let cpu = meter.read();
        let mut summary = summarize(
            &samples,
            rig.td_ms,
            rig.part_ms,
            rig.fault,
            rig.streams.len() * REGIONS.len(),
            rig.board.spurious_since(since).len(),
        );
        if let (Some(b), Some(a)) = (before, after) {
            let secs = (now_ms().saturating_sub(since) as f64 / 1000.0).max(1.0);
            let requests =
                (a.media_requests + a.blocking_requests) - (b.media_requests + b.blocking_requests);
            summary.requests_per_playlist_per_s =
                Some(((requests / a.probed_playlists.max(1.0) / secs) * 100.0).round() / 100.0);
        }
        print_detection(
            &format!(
                "== {label}: TD {} ms, {} instances, {} in parallel",
                rig.td_ms,
                rig.streams.len() * REGIONS.len(),
                args.parallel
            ),
            &summary,
        );
        println!("  CPU % of one core over the campaign: {:?}", cpu.processes);
        write_result(
            &args.common.json_out,
            &ResultLine {
                kind: "detection".into(),
                label,
                finished_unix_ms: now_ms(),
                args: std::env::args().skip(1).collect(),
                operator_args: args.common.operator_args.clone(),
                detection: Some(summary),
                scale: None,
                false_verdicts: None,
                soak: None,
                campaign_cpu: cpu,
                samples,
            },
        )
    }
    .await;
    rig.teardown().await;
    result
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ScaleSummary {
    td_ms: u64,
    /// Objects created before the operator started (else in batches while it ran).
    #[serde(default)]
    cold_start: bool,
    streams: usize,
    instances: usize,
    /// Media playlists the operator reports probing (cvs_probed_playlists).
    probed_playlists: f64,
    create_seconds: f64,
    time_to_all_healthy_seconds: f64,
    window: CpuReport,
    operator_cpu_pct: f64,
    /// Highest 10-second average in the window.
    operator_cpu_max_10s_pct: f64,
    operator_peak_rss_mib: f64,
    probe_requests_per_s: f64,
    media_requests_per_s: f64,
    master_requests_per_s: f64,
    /// Segment availability checks (HEADs) per second.
    #[serde(default)]
    segment_checks_per_s: f64,
    failed_requests_in_window: f64,
    /// Media playlist fetches per playlist per target duration.
    polls_per_playlist_per_segment: f64,
    instance_status_writes_per_s: f64,
    cluster_status_writes_per_s: f64,
    /// Failed reconciliations per second (`cvs_reconcile_errors_total`), e.g. the state table
    /// unreachable when the environment runs without the AWS emulators.
    #[serde(default)]
    instance_errors_per_s: f64,
    #[serde(default)]
    cluster_errors_per_s: f64,
    /// State-table writes and failed state-table requests per second.
    #[serde(default)]
    state_writes_per_s: f64,
    #[serde(default)]
    state_errors_per_s: f64,
    /// Highest VmRSS seen while the instances were becoming Healthy (sampled every 100 ms).
    #[serde(default)]
    operator_rss_mib_startup_max: f64,
    /// VmRSS at the end of the steady-state window.
    #[serde(default)]
    operator_rss_mib_window_end: f64,
    /// Size of one StreamInstance as JSON (with its managedFields), as every watch cache of the
    /// operator keeps it; and the managedFields part of it.
    #[serde(default)]
    instance_json_bytes: usize,
    #[serde(default)]
    instance_managed_fields_bytes: usize,
    /// StreamInstance updates the bench's watch received per second.
    watch_updates_per_s: f64,
    /// Healthy=False on an instance nobody froze, during the window.
    spurious_in_window: usize,
    healthy_at_window_end: usize,
    /// Media playlists the operator counts as stale at the window's end (cvs_stale_renditions).
    stale_playlists_at_window_end: f64,
    cpu_goal_met: bool,
    rss_goal_met: bool,
}

async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let label = args
        .common
        .label
        .clone()
        .unwrap_or_else(|| format!("scale-td{}-{}", args.target_duration, args.playlists));
    let instances = args.playlists.div_ceil(PLAYLISTS_PER_INSTANCE);
    let streams = instances.div_ceil(REGIONS.len()).max(1);
    let mut rig = Rig::start(
        &args.common,
        "scale",
        streams,
        args.target_duration,
        args.healthy_timeout.into(),
        args.cold_start,
        args.batch,
        &[],
    )
    .await?;
    let result = async {
        let hz = clk_tck();
        let warmup: Duration = args.warmup.into();
        say(format!("warming up for {warmup:?}"));
        tokio::time::sleep(warmup).await;
        rig.check_alive()?;

        let window: Duration = args.duration.into();
        say(format!("steady-state window of {window:?}"));
        let since = now_ms();
        let before = scrape(&rig.http, rig.op_addr).await?;
        let updates_before = rig.board.updates();
        let meter = CpuMeter::start(meter_pids(&rig), hz);
        let end = Instant::now() + window;
        let mut max_slice: f64 = 0.0;
        while Instant::now() < end {
            let slice = CpuMeter::start(vec![("operator", rig.operator_pid())], hz);
            let step = Duration::from_secs(10).min(end - Instant::now());
            tokio::time::sleep(step).await;
            let r = slice.read();
            let pct = r.processes.get("operator").copied().unwrap_or(0.0);
            if step >= Duration::from_secs(5) {
                max_slice = max_slice.max(pct);
            }
            say(format!(
                "operator {pct:.1} % of a core, machine {:.2} cores busy, {} Healthy",
                r.machine_cores_busy,
                rig.board.count(Some(true))
            ));
            rig.check_alive()?;
        }
        let cpu = meter.read();
        let after = scrape(&rig.http, rig.op_addr).await?;
        let rss_window_end =
            (proc_status_kib(rig.operator_pid(), "VmRSS:").unwrap_or(0) as f64 / 102.4).round()
                / 10.0;
        let (instance_json_bytes, instance_managed_fields_bytes) = {
            let api: Api<StreamInstance> = Api::namespaced(rig.client.clone(), &rig.ns);
            match api.get(&instance_name(&rig.streams[0], REGIONS[0])).await {
                Ok(si) => (
                    serde_json::to_vec(&si).map_or(0, |v| v.len()),
                    serde_json::to_vec(&si.metadata.managed_fields).map_or(0, |v| v.len()),
                ),
                Err(_) => (0, 0),
            }
        };
        let secs = cpu.seconds.max(1e-3);
        let rate = |a: f64, b: f64| ((a - b) / secs * 10.0).round() / 10.0;
        let media_rps = rate(after.media_requests, before.media_requests);
        let spurious_in_window = rig.board.spurious_since(since).len();
        let healthy_at_window_end = rig.board.count(Some(true));
        let operator_cpu_pct = cpu.processes.get("operator").copied().unwrap_or(0.0);

        say(format!(
            "detection at scale: {} freezes, {} in parallel",
            args.freezes, args.parallel
        ));
        let since = now_ms();
        let campaign_meter = CpuMeter::start(meter_pids(&rig), hz);
        let samples = freeze_campaign(&rig, args.freezes, args.parallel).await;
        let campaign_cpu = campaign_meter.read();
        let detection = summarize(
            &samples,
            rig.td_ms,
            rig.part_ms,
            rig.fault,
            rig.streams.len() * REGIONS.len(),
            rig.board.spurious_since(since).len(),
        );
        let peak_rss_mib =
            proc_status_kib(rig.operator_pid(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;

        let summary = ScaleSummary {
            td_ms: rig.td_ms,
            cold_start: args.cold_start,
            streams,
            instances: streams * REGIONS.len(),
            probed_playlists: after.probed_playlists,
            create_seconds: (rig.create_seconds * 10.0).round() / 10.0,
            time_to_all_healthy_seconds: (rig.time_to_healthy_seconds * 10.0).round() / 10.0,
            operator_cpu_pct,
            operator_cpu_max_10s_pct: max_slice,
            operator_peak_rss_mib: (peak_rss_mib * 10.0).round() / 10.0,
            probe_requests_per_s: rate(
                after.media_requests + after.master_requests,
                before.media_requests + before.master_requests,
            ),
            media_requests_per_s: media_rps,
            master_requests_per_s: rate(after.master_requests, before.master_requests),
            segment_checks_per_s: rate(after.segment_checks, before.segment_checks),
            failed_requests_in_window: after.failed_requests - before.failed_requests,
            polls_per_playlist_per_segment: if after.probed_playlists > 0.0 {
                ((media_rps * rig.td_ms as f64 / 1000.0 / after.probed_playlists) * 100.0).round()
                    / 100.0
            } else {
                0.0
            },
            instance_status_writes_per_s: rate(after.instance_writes, before.instance_writes),
            cluster_status_writes_per_s: rate(after.cluster_writes, before.cluster_writes),
            instance_errors_per_s: rate(after.instance_errors, before.instance_errors),
            cluster_errors_per_s: rate(after.cluster_errors, before.cluster_errors),
            state_writes_per_s: rate(after.state_writes, before.state_writes),
            state_errors_per_s: rate(after.state_errors, before.state_errors),
            operator_rss_mib_startup_max: rig.startup_rss_max_mib,
            operator_rss_mib_window_end: rss_window_end,
            instance_json_bytes,
            instance_managed_fields_bytes,
            watch_updates_per_s: rate(rig.board.updates() as f64, updates_before as f64),
            spurious_in_window,
            healthy_at_window_end,
            stale_playlists_at_window_end: after.stale_playlists,
            cpu_goal_met: operator_cpu_pct <= 100.0,
            rss_goal_met: peak_rss_mib <= 256.0,
            window: cpu,
        };
        print_scale(&label, &summary, &detection, &campaign_cpu);
        write_result(
            &args.common.json_out,
            &ResultLine {
                kind: "scale".into(),
                label,
                finished_unix_ms: now_ms(),
                args: std::env::args().skip(1).collect(),
                operator_args: args.common.operator_args.clone(),
                detection: Some(detection),
                scale: Some(summary),
                false_verdicts: None,
                soak: None,
                campaign_cpu,
                samples,
            },
        )
    }
    .await;
    rig.teardown().await;
    result
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct FalseVerdictSummary {
    td_ms: u64,
    instances: usize,
    probed_playlists: f64,
    /// The observed run, in seconds (after every instance was Healthy).
    run_seconds: f64,
    jitter_percent: u32,
    fail_one_in: u32,
    /// `Healthy=False` on an instance no freeze was working on: false verdicts.
    false_stale: usize,
    /// Which instances, and when (unix ms).
    false_stale_at: Vec<(String, u64)>,
    media_requests: f64,
    failed_requests: f64,
    retries_recovered: f64,
    retries_confirmed: f64,
    /// Machine load average (1, 5, 15 min) at the end of the run.
    loadavg_end: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn false_verdicts(args: FalseVerdictArgs) -> anyhow::Result<()> {
    let label = args.common.label.clone().unwrap_or_else(|| {
        format!(
            "false-verdicts-td{}-{}",
            args.target_duration, args.playlists
        )
    });
    let instances = args.playlists.div_ceil(PLAYLISTS_PER_INSTANCE);
    let streams = instances.div_ceil(REGIONS.len()).max(1);
    let prelude = [
        FaultRequest::new(FaultKind::Jitter).params(FaultParams {
            percent: Some(args.jitter_percent),
            ..FaultParams::default()
        }),
        FaultRequest::new(FaultKind::Flaky).params(FaultParams {
            one_in: Some(args.fail_one_in),
            failure: Some(FlakyFailure::Mixed),
            ..FaultParams::default()
        }),
    ];
    let mut rig = Rig::start(
        &args.common,
        "falseverdicts",
        streams,
        args.target_duration,
        Duration::from_secs(300),
        false,
        args.batch,
        &prelude,
    )
    .await?;
    let result = async {
        let http = rig.http.clone();
        let text = |addr: SocketAddr| {
            let http = http.clone();
            async move {
                anyhow::Ok(
                    http.get(format!("http://{addr}/metrics"))
                        .send()
                        .await?
                        .text()
                        .await?,
                )
            }
        };
        let retries = |t: &str, outcome: &str| {
            metric_sum(t, "cvs_probe_retries_total", &[("outcome", outcome)], &[])
        };
        let run: Duration = args.duration.into();
        say(format!(
            "observing for {run:?}: jitter +-{} %, one request in {} failing, freezes {} at a time",
            args.jitter_percent, args.fail_one_in, args.parallel
        ));
        let since = now_ms();
        let started = Instant::now();
        let before = scrape(&rig.http, rig.op_addr).await?;
        let before_text = text(rig.op_addr).await?;
        let meter = CpuMeter::start(meter_pids(&rig), clk_tck());
        let until = started + run;
        let campaign = freeze_campaign_until(&rig, usize::MAX, args.parallel, Some(until));
        let progress = async {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                say(format!(
                    "{:.0} s: {} false Stale so far, {} Healthy, load {}",
                    started.elapsed().as_secs_f64(),
                    rig.board.spurious_since(since).len(),
                    rig.board.count(Some(true)),
                    loadavg()
                ));
            }
        };
        let samples = tokio::select! {
            s = campaign => s,
            _ = progress => unreachable!(),
        };
        let cpu = meter.read();
        rig.check_alive()?;
        let after = scrape(&rig.http, rig.op_addr).await?;
        let after_text = text(rig.op_addr).await?;
        let false_stale_at = rig.board.spurious_since(since);
        let detection = summarize(
            &samples,
            rig.td_ms,
            None,
            rig.fault,
            rig.streams.len() * REGIONS.len(),
            false_stale_at.len(),
        );
        let summary = FalseVerdictSummary {
            td_ms: rig.td_ms,
            instances: rig.streams.len() * REGIONS.len(),
            probed_playlists: after.probed_playlists,
            run_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            jitter_percent: args.jitter_percent,
            fail_one_in: args.fail_one_in,
            false_stale: false_stale_at.len(),
            false_stale_at,
            media_requests: after.media_requests - before.media_requests,
            failed_requests: after.failed_requests - before.failed_requests,
            retries_recovered: retries(&after_text, "recovered")
                - retries(&before_text, "recovered"),
            retries_confirmed: retries(&after_text, "confirmed")
                - retries(&before_text, "confirmed"),
            loadavg_end: loadavg(),
        };
        println!(
            "== {label}: TD {} ms, {} StreamInstances, {} media playlists, {:.0} s observed",
            summary.td_ms, summary.instances, summary.probed_playlists, summary.run_seconds
        );
        println!(
            "  false Stale verdicts: {} {:?}",
            summary.false_stale, summary.false_stale_at
        );
        println!(
            "  media requests {:.0}, failed (after confirmation) {:.0}; retries: {:.0} absorbed a glitch, {:.0} confirmed a failure",
            summary.media_requests,
            summary.failed_requests,
            summary.retries_recovered,
            summary.retries_confirmed
        );
        println!("  load average at the end: {}", summary.loadavg_end);
        print_detection("  freezes during the run:", &detection);
        println!("  CPU % of one core over the run: {:?}", cpu.processes);
        write_result(
            &args.common.json_out,
            &ResultLine {
                kind: "false-verdicts".into(),
                label,
                finished_unix_ms: now_ms(),
                args: std::env::args().skip(1).collect(),
                operator_args: args.common.operator_args.clone(),
                detection: Some(detection),
                scale: None,
                false_verdicts: Some(summary),
                soak: None,
                campaign_cpu: cpu,
                samples,
            },
        )
    }
    .await;
    rig.teardown().await;
    result
}

fn print_scale(label: &str, s: &ScaleSummary, d: &DetectionSummary, campaign: &CpuReport) {
    println!(
        "== {label}: TD {} ms, {} StreamInstances, {} media playlists probed",
        s.td_ms, s.instances, s.probed_playlists
    );
    println!(
        "  {}: objects created in {:.1} s; all Healthy {:.1} s after the operator started",
        if s.cold_start {
            "cold start"
        } else {
            "created in batches while the operator ran"
        },
        s.create_seconds,
        s.time_to_all_healthy_seconds
    );
    println!(
        "  window {:.0} s: operator CPU {:.1} % of one core (max 10 s: {:.1} %), peak RSS {:.1} MiB (start-up max {:.1}, window end {:.1})",
        s.window.seconds,
        s.operator_cpu_pct,
        s.operator_cpu_max_10s_pct,
        s.operator_peak_rss_mib,
        s.operator_rss_mib_startup_max,
        s.operator_rss_mib_window_end
    );
    println!(
        "  one StreamInstance is {} bytes of JSON, {} of them managedFields",
        s.instance_json_bytes, s.instance_managed_fields_bytes
    );
    println!(
        "  probe requests {:.1}/s (media {:.1}/s, master {:.1}/s, segment checks {:.1}/s, {:.2} media polls per playlist per segment), {} failed",
        s.probe_requests_per_s,
        s.media_requests_per_s,
        s.master_requests_per_s,
        s.segment_checks_per_s,
        s.polls_per_playlist_per_segment,
        s.failed_requests_in_window
    );
    println!(
        "  status writes/s: instance {:.1}, cluster {:.1}; watch updates/s {:.1}; failed reconciles/s: instance {:.1}, cluster {:.1}; state table writes/s {:.1}, failed requests/s {:.1}",
        s.instance_status_writes_per_s,
        s.cluster_status_writes_per_s,
        s.watch_updates_per_s,
        s.instance_errors_per_s,
        s.cluster_errors_per_s,
        s.state_writes_per_s,
        s.state_errors_per_s
    );
    println!(
        "  CPU % of one core in the window: {:?}; machine {:.2} cores busy, other work {:.2} cores",
        s.window.processes, s.window.machine_cores_busy, s.window.other_cores_busy
    );
    println!(
        "  spurious Healthy=False in the window: {}; Healthy at window end: {} of {}; stale playlists {}",
        s.spurious_in_window, s.healthy_at_window_end, s.instances, s.stale_playlists_at_window_end
    );
    println!(
        "  goals: CPU <= 1 core {}; peak RSS <= 256 MiB {}",
        if s.cpu_goal_met { "MET" } else { "NOT MET" },
        if s.rss_goal_met { "MET" } else { "NOT MET" }
    );
    print_detection("  detection at scale:", d);
    println!(
        "  CPU % of one core during the freezes: {:?}",
        campaign.processes
    );
}

// ---------------------------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------------------------

fn report(file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let lines: Vec<ResultLine> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing the results")?;
    let cell = |d: &Option<Dist>| {
        d.as_ref().map_or("-".to_string(), |d| {
            format!("{} / {} / {} / {}", d.p50, d.p90, d.p99, d.max)
        })
    };
    println!("### Detection latency (ms: p50 / p90 / p99 / max)\n");
    println!(
        "| run | TD | instances | freezes (missed) | from last segment | prober age >= 20 TD | prober age < 20 TD | from freeze | operator decision, from last segment | status write + watch | recovery after heal | goal (p99 from last segment) | met |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for l in &lines {
        let Some(d) = &l.detection else { continue };
        let group = |x: &Option<Dist>| {
            x.as_ref().map_or("-".to_string(), |x| {
                format!("{} (n={})", cell(&Some(x.clone())), x.n)
            })
        };
        println!(
            "| {} | {} s | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | <= {} | {} |",
            l.label,
            d.td_ms as f64 / 1000.0,
            d.instances,
            d.freezes,
            d.missed,
            cell(&d.from_last_segment),
            group(&d.settled),
            group(&d.recent),
            cell(&d.from_freeze),
            cell(&d.engine_from_last_segment),
            cell(&d.status_path),
            cell(&d.recovery_from_heal),
            d.goal_ms,
            if d.goal_met { "yes" } else { "**no**" }
        );
    }
    if lines.iter().any(|l| l.scale.is_some()) {
        println!("\n### Scale (steady-state window)\n");
        println!(
            "| run | TD | instances | playlists | all Healthy after | operator CPU (% of 1 core; max 10 s) | peak RSS (window end) | probe req/s (media / master; segment checks) | polls per playlist per segment | status writes/s (instance / cluster) | failed reconciles/s (instance / cluster); state-table errors/s | apiserver CPU | etcd CPU | simulator CPU | other load (cores) | spurious | CPU goal | RSS goal |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for l in &lines {
            let Some(s) = &l.scale else { continue };
            let healthy_after = format!(
                "{:.1} s{}",
                s.time_to_all_healthy_seconds,
                if s.cold_start { " (cold start)" } else { "" }
            );
            let p = |k: &str| {
                s.window
                    .processes
                    .get(k)
                    .map_or("-".to_string(), |v| format!("{v:.1} %"))
            };
            println!(
                "| {} | {} s | {} | {} | {} | {:.1} % ({:.1} %) | {:.1} MiB ({:.1} MiB) | {:.0} ({:.0} / {:.0}; {:.0}) | {:.2} | {:.1} / {:.1} | {:.1} / {:.1}; {:.1} | {} | {} | {} | {:.2} | {} | {} | {} |",
                l.label,
                s.td_ms as f64 / 1000.0,
                s.instances,
                s.probed_playlists,
                healthy_after,
                s.operator_cpu_pct,
                s.operator_cpu_max_10s_pct,
                s.operator_peak_rss_mib,
                s.operator_rss_mib_window_end,
                s.probe_requests_per_s,
                s.media_requests_per_s,
                s.master_requests_per_s,
                s.segment_checks_per_s,
                s.polls_per_playlist_per_segment,
                s.instance_status_writes_per_s,
                s.cluster_status_writes_per_s,
                s.instance_errors_per_s,
                s.cluster_errors_per_s,
                s.state_errors_per_s,
                p("kube-apiserver"),
                p("etcd"),
                p("simulator"),
                s.window.other_cores_busy,
                s.spurious_in_window,
                if s.cpu_goal_met { "yes" } else { "**no**" },
                if s.rss_goal_met { "yes" } else { "**no**" },
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// The `parse-cost` benchmark (see the module documentation).
async fn parse_cost(args: ParseCostArgs) -> anyhow::Result<()> {
    const REGION: &str = "us-east-1";
    let (operator_bin, sim_bin) =
        environment_and_binaries(args.operator_bin.as_ref(), args.sim_bin.as_ref())?;
    let client = kube::Client::try_default()
        .await
        .context("kube client from KUBECONFIG")?;
    let ns = format!("bench-parse-{}", now_ms());
    let tag = ns.clone();
    let td_ms = (args.target_duration * 1000.0).round() as u64;
    // Enough segments published before the simulator starts for the whole window.
    let start_ms = now_ms().saturating_sub((args.segments + 100).saturating_mul(td_ms));
    let ready_file = logs_dir().join(format!("{tag}-sim.ready.json"));
    let mut cmd = tokio::process::Command::new(&sim_bin);
    cmd.args([
        "--regions",
        REGION,
        "--streams",
        &args.streams.to_string(),
        "--renditions",
        "1",
        "--audio-renditions",
        "1",
        "--target-duration",
        &args.target_duration.to_string(),
        "--start-unix-ms",
        &start_ms.to_string(),
        "--ready-file",
    ])
    .arg(&ready_file)
    .env("RUST_LOG", "warn");
    let mut sim = Proc::spawn(
        "hls-origin-sim",
        &mut cmd,
        &logs_dir().join(format!("{tag}-sim.log")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready: Ready = loop {
        if let Ok(text) = std::fs::read_to_string(&ready_file) {
            break serde_json::from_str(&text).context("parsing the ready file")?;
        }
        if let Some(status) = sim.exited() {
            bail!("the simulator exited with {status}:\n{}", sim.log_tail());
        }
        if Instant::now() > deadline {
            bail!("the simulator was not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let fault = FaultRequest::new(FaultKind::LongWindow)
        .resource(ResourceFilter::Media)
        .params(FaultParams {
            entries: Some(args.segments),
            ..Default::default()
        });
    let r = http
        .post(format!("{}/faults", ready.control))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&fault)?)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("POST /faults: {}: {}", r.status(), r.text().await?);
    }
    let sample = http
        .get(format!("{}/s0001/1080p/index.m3u8", ready.regions[REGION]))
        .send()
        .await?
        .bytes()
        .await?;
    say(format!(
        "{}: {} streams x 3 media playlists of {} segments ({} bytes for the video one), TD {} s",
        args.label,
        args.streams,
        args.segments,
        sample.len(),
        args.target_duration
    ));

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?,
        )
        .await
        .context("creating the namespace")?;
    let clusters: Api<ClusteredStream> = Api::namespaced(client.clone(), &ns);
    let instances: Api<StreamInstance> = Api::namespaced(client.clone(), &ns);
    let mut objects = Vec::new();
    for i in 1..=args.streams {
        let s = format!("s{i:04}");
        objects.push((
            true,
            serde_json::json!({
                "apiVersion": "cvs.dev/v1alpha1", "kind": "ClusteredStream",
                "metadata": {"name": s},
                "spec": {"stateTable": {"name": "cvs-bench", "region": REGION, "create": true}}
            }),
        ));
        objects.push((
            false,
            serde_json::json!({
                "apiVersion": "cvs.dev/v1alpha1", "kind": "StreamInstance",
                "metadata": {"name": instance_name(&s, REGION)},
                "spec": {
                    "clusteredStream": s, "region": REGION,
                    "cloudfront": {"domain": format!("{s}.bench.cloudfront.net")},
                    "origin": {"url": format!("{}/{s}/master.m3u8", ready.regions[REGION])}
                }
            }),
        ));
    }
    create_objects(&clusters, &instances, objects).await?;
    let (operator, op_addr) = start_operator(&operator_bin, &ns, &args.operator_args, &tag).await?;
    let hz = clk_tck();
    tokio::time::sleep(args.warmup.into()).await;
    let mut operator_pct = Vec::new();
    let mut sim_pct = Vec::new();
    for _ in 0..args.windows {
        let meter = CpuMeter::start(vec![("operator", operator.pid), ("simulator", sim.pid)], hz);
        tokio::time::sleep(args.window.into()).await;
        let r = meter.read();
        operator_pct.push(r.processes.get("operator").copied().unwrap_or(f64::NAN));
        sim_pct.push(r.processes.get("simulator").copied().unwrap_or(f64::NAN));
        say(format!(
            "window: operator {:.1} % of a core, simulator {:.1} %, machine {:.2} cores busy",
            operator_pct.last().unwrap(),
            sim_pct.last().unwrap(),
            r.machine_cores_busy
        ));
    }
    let rss_mib = proc_status_kib(operator.pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for si in instances.list(&ListParams::default()).await?.items {
        let reason = si
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Healthy"))
            .map(|c| format!("Healthy={} {}", c.status, c.reason))
            .unwrap_or_else(|| "no verdict".into());
        *verdicts.entry(reason).or_default() += 1;
    }
    let metrics = http
        .get(format!("http://{op_addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let requests = metric_sum(&metrics, "cvs_probe_duration_seconds_count", &[], &[]);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut op_sorted, mut sim_sorted) = (operator_pct.clone(), sim_pct.clone());
    let summary = serde_json::json!({
        "kind": "parse-cost",
        "label": args.label,
        "streams": args.streams,
        "media_playlists": args.streams * 3,
        "segments": args.segments,
        "video_playlist_bytes": sample.len(),
        "target_duration_s": args.target_duration,
        "operator_args": args.operator_args,
        "operator_cpu_percent_median": median(&mut op_sorted),
        "operator_cpu_percent_windows": operator_pct,
        "simulator_cpu_percent_median": median(&mut sim_sorted),
        "operator_peak_rss_mib": (rss_mib * 10.0).round() / 10.0,
        "probe_requests": requests,
        "verdicts": verdicts,
    });
    println!("{summary}");
    let code = operator.stop(Duration::from_secs(30)).await;
    say(format!("operator stopped (exit code {code:?})"));
    let dp = DeleteParams::default();
    let lp = ListParams::default();
    let cleanup = async {
        let _ = instances.delete_collection(&dp, &lp).await;
        let _ = clusters.delete_collection(&dp, &lp).await;
        let _ = namespaces.delete(&ns, &dp).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), cleanup).await;
    sim.stop(Duration::from_secs(10)).await;
    Ok(())
}

async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (run, max): (
        std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>,
        Duration,
    ) = match cli.command {
        Command::Report { file } => {
            return match report(&file) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cvs-bench: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Command::Detection(a) => {
            let max = a.common.max_runtime.into();
            (Box::pin(detection(a)), max)
        }
        Command::Scale(a) => {
            let max = a.common.max_runtime.into();
            (Box::pin(scale(a)), max)
        }
        Command::FalseVerdicts(a) => {
            let max = a.common.max_runtime.into();
            (Box::pin(false_verdicts(a)), max)
        }
        Command::ParseCost(a) => {
            let max = a.max_runtime.into();
            (Box::pin(parse_cost(a)), max)
        }
        Command::Soak(a) => {
            // The run itself, the start-up and 15 minutes more, whatever --max-runtime says.
            let max = Duration::from(a.common.max_runtime).max(
                Duration::from(a.duration)
                    + Duration::from(a.healthy_timeout)
                    + Duration::from_secs(900),
            );
            (Box::pin(soak(a)), max)
        }
    };
    // Dropping `run` (on timeout or a signal) drops the rig, which kills the operator and the
    // simulator; the objects stay in the namespace until the environment is stopped.
    let outcome = tokio::select! {
        r = tokio::time::timeout(max, run) => match r {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("stopped after --max-runtime {max:?}")),
        },
        _ = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cvs-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// soak
// ---------------------------------------------------------------------------------------------

/// One fault injected during a soak run.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SoakFault {
    /// `freeze`, `refuse` or `hang`.
    kind: String,
    region: String,
    /// The instance and rendition frozen, or `*` for a whole region.
    target: String,
    applied_at_ms: u64,
    /// Instances the fault covers: Healthy when it began, and still existing when it was healed.
    instances: usize,
    /// Of which the watch saw Healthy=False while the fault lasted.
    went_false: usize,
    /// Until the last of them was seen False: from the last segment published for a freeze,
    /// from the fault for an outage.
    detected_after_ms: Option<u64>,
    healed_at_ms: Option<u64>,
    /// Instances seen Healthy=True again within the recovery bound after the heal, of those
    /// covered that still existed then (churn may have deleted some).
    recovered: usize,
    #[serde(default)]
    recovery_instances: usize,
    /// Until the last of them was.
    recovered_after_ms: Option<u64>,
}

impl SoakFault {
    fn detected(&self) -> bool {
        self.instances > 0 && self.went_false == self.instances
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SoakSummary {
    td_ms: u64,
    /// StreamInstances kept (churn deletes and creates around this).
    instances: usize,
    probed_playlists_end: f64,
    run_seconds: f64,
    out_dir: String,
    samples: usize,
    faults: usize,
    freezes: usize,
    outages: usize,
    /// Faults whose every instance the watch saw Healthy=False while it lasted.
    faults_detected: usize,
    freeze_detection_from_last_segment: Option<Dist>,
    outage_detection_from_fault: Option<Dist>,
    recovery_after_heal: Option<Dist>,
    /// Healthy=False on an instance no fault was on.
    spurious: usize,
    spurious_at: Vec<(String, u64)>,
    instances_created: u64,
    instances_deleted: u64,
    churn_errors: u64,
    rss_mib_first: f64,
    rss_mib_last: f64,
    rss_mib_max: f64,
    peak_rss_mib: f64,
    /// RSS at the end per StreamInstance, KiB.
    rss_kib_per_instance: f64,
    tcp_max: u64,
    fds_max: u64,
    threads_max: u64,
    /// After the run and the last churn: the operator's probe tasks against the instances.
    end_instances: usize,
    end_instance_tasks: f64,
    end_rendition_tasks: f64,
    tasks_match_at_end: bool,
    flatness: cvs_e2e::soak::Flatness,
    operator_cpu_pct: f64,
    loadavg_end: String,
    fault_list: Vec<SoakFault>,
}

/// What the soak's loops share: which streams exist, which are under a fault, running totals.
#[derive(Default)]
struct SoakState {
    live: Vec<String>,
    spare: Vec<String>,
    busy: HashSet<String>,
    faults_active: u64,
    faults: Vec<SoakFault>,
    creates: u64,
    deletes: u64,
    churn_errors: u64,
}

struct Soak<'a> {
    rig: &'a Rig,
    state: Mutex<SoakState>,
}

impl Soak<'_> {
    fn state(&self) -> std::sync::MutexGuard<'_, SoakState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes one stream no fault is on (its instances, then its ClusteredStream) and creates
    /// one that does not exist.
    async fn churn_once(&self, rng: &mut fastrand::Rng) {
        let victim = {
            let mut st = self.state();
            let candidates: Vec<usize> = (0..st.live.len())
                .filter(|&i| !st.busy.contains(&st.live[i]))
                .collect();
            if candidates.is_empty() {
                None
            } else {
                Some(
                    st.live
                        .swap_remove(candidates[rng.usize(..candidates.len())]),
                )
            }
        };
        let si: Api<StreamInstance> = Api::namespaced(self.rig.client.clone(), &self.rig.ns);
        let cs: Api<ClusteredStream> = Api::namespaced(self.rig.client.clone(), &self.rig.ns);
        if let Some(stream) = &victim {
            let mut ok = true;
            for region in REGIONS {
                match si
                    .delete(&instance_name(stream, region), &DeleteParams::default())
                    .await
                {
                    Ok(_) => self.state().deletes += 1,
                    Err(e) => {
                        ok = false;
                        say(format!("churn: deleting {stream}-{region} failed: {e}"));
                    }
                }
            }
            if let Err(e) = cs.delete(stream, &DeleteParams::default()).await {
                ok = false;
                say(format!(
                    "churn: deleting ClusteredStream {stream} failed: {e}"
                ));
            }
            if !ok {
                self.state().churn_errors += 1;
            }
        }
        let newcomer = {
            let mut st = self.state();
            if st.spare.is_empty() {
                None
            } else {
                let i = rng.usize(..st.spare.len());
                Some(st.spare.swap_remove(i))
            }
        };
        if let Some(stream) = newcomer {
            let objects = stream_objects(
                std::slice::from_ref(&stream),
                &self.rig.cluster_spec,
                &self.rig.ready.regions,
            );
            match create_objects(&cs, &si, objects).await {
                Ok(()) => {
                    let mut st = self.state();
                    st.creates += REGIONS.len() as u64;
                    st.live.push(stream);
                }
                Err(e) => {
                    say(format!("churn: creating {stream} failed: {e:#}"));
                    let mut st = self.state();
                    st.churn_errors += 1;
                    st.spare.push(stream);
                }
            }
        }
        // The deleted stream may come back later, not at once.
        if let Some(stream) = victim {
            self.state().spare.push(stream);
        }
    }

    async fn churn(&self, total: usize, start: Instant, end: Instant) {
        let steps = total / REGIONS.len();
        if steps == 0 {
            return;
        }
        let every = (end - start) / steps as u32;
        let mut rng = fastrand::Rng::new();
        for k in 0..steps {
            let at = start + every * k as u32 + every / 2;
            if at >= end {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            self.churn_once(&mut rng).await;
        }
    }

    /// Injects faults one at a time, `every` apart, each lasting `hold`.
    async fn faults(
        &self,
        start: Instant,
        end: Instant,
        every: Duration,
        hold: Duration,
        outage_every: u32,
        outage_kind: OutageKinds,
    ) {
        let mut rng = fastrand::Rng::new();
        let mut k: u32 = 0;
        loop {
            let at = start + every * k + every / 4;
            k += 1;
            if at + hold > end {
                break;
            }
            if Instant::now() > at {
                continue; // The previous fault's recovery took this slot.
            }
            tokio::time::sleep_until(at.into()).await;
            let fault = if outage_every > 0 && k.is_multiple_of(outage_every) {
                let o = (k / outage_every) as usize;
                let region = REGIONS[o % REGIONS.len()];
                let kind = match outage_kind {
                    OutageKinds::Refuse => FaultKind::Refuse,
                    OutageKinds::Hang => FaultKind::Hang,
                    OutageKinds::Alternate if (o / REGIONS.len()).is_multiple_of(2) => {
                        FaultKind::Refuse
                    }
                    OutageKinds::Alternate => FaultKind::Hang,
                };
                self.outage(region, kind, hold).await
            } else {
                self.freeze(&mut rng, hold).await
            };
            if let Some(f) = fault {
                say(format!(
                    "fault {k}: {} {} {}: {} of {} instances seen False{}, {} of {} Healthy again{}",
                    f.kind,
                    f.region,
                    f.target,
                    f.went_false,
                    f.instances,
                    f.detected_after_ms
                        .map_or(String::new(), |ms| format!(" (the last after {ms} ms)")),
                    f.recovered,
                    f.recovery_instances,
                    f.recovered_after_ms
                        .map_or(String::new(), |ms| format!(" ({ms} ms after the heal)")),
                ));
                self.state().faults.push(f);
            }
        }
    }

    fn recover_within(&self) -> Duration {
        Duration::from_millis(self.rig.td_ms * 6 + 60_000)
    }

    async fn freeze(&self, rng: &mut fastrand::Rng, hold: Duration) -> Option<SoakFault> {
        let rig = self.rig;
        let stream = {
            let mut st = self.state();
            let candidates: Vec<String> = st
                .live
                .iter()
                .filter(|s| !st.busy.contains(*s))
                .cloned()
                .collect();
            if candidates.is_empty() {
                return None;
            }
            let s = candidates[rng.usize(..candidates.len())].clone();
            st.busy.insert(s.clone());
            s
        };
        let region = REGIONS[rng.usize(..REGIONS.len())];
        let rendition = FREEZABLE[rng.usize(..FREEZABLE.len())];
        let name = instance_name(&stream, region);
        let mut rx = rig.board.subscribe(&name);
        let result = async {
            if wait_health(&mut rx, true, Duration::from_secs(60))
                .await
                .is_none()
            {
                say(format!("{name} is not Healthy before its freeze; skipped"));
                return None;
            }
            rig.board.expect(&name, true);
            let req = FaultRequest::new(FaultKind::Freeze)
                .region(region)
                .stream(stream.as_str())
                .rendition(rendition)
                .resource(ResourceFilter::Media);
            let applied = match rig.fault(&req).await {
                Ok(a) => a,
                Err(e) => {
                    say(format!("freeze of {name}/{rendition} failed: {e:#}"));
                    rig.board.expect(&name, false);
                    return None;
                }
            };
            self.state().faults_active += 1;
            let last_segment_ms = applied
                .frozen
                .as_ref()
                .and_then(|f| {
                    f.streams
                        .get(stream.as_str())
                        .and_then(|s| s.last_segment_published_unix_ms)
                        .or(f.last_segment_published_unix_ms)
                })
                .unwrap_or(applied.applied_at_unix_ms);
            let heal_at = Instant::now() + hold;
            let detected = wait_health(&mut rx, false, hold).await;
            tokio::time::sleep_until(heal_at.into()).await;
            let healed = rig.heal(applied.id).await.ok();
            self.state().faults_active -= 1;
            let recovered = wait_health(&mut rx, true, self.recover_within()).await;
            rig.board.expect(&name, false);
            Some(SoakFault {
                kind: "freeze".into(),
                region: region.into(),
                target: format!("{name}/{rendition}"),
                applied_at_ms: applied.applied_at_unix_ms,
                instances: 1,
                went_false: usize::from(detected.is_some()),
                detected_after_ms: detected.map(|at| at.saturating_sub(last_segment_ms)),
                healed_at_ms: healed,
                recovered: usize::from(recovered.is_some()),
                recovery_instances: 1,
                recovered_after_ms: recovered.zip(healed).map(|(r, h)| r.saturating_sub(h)),
            })
        }
        .await;
        self.state().busy.remove(&stream);
        result
    }

    /// The whole region down (`refuse`: its listener closed; `hang`: every request held) for
    /// `hold`: every instance of the region is expected to turn Healthy=False, and back after.
    async fn outage(&self, region: &str, kind: FaultKind, hold: Duration) -> Option<SoakFault> {
        let rig = self.rig;
        let kind_name = match kind {
            FaultKind::Refuse => "refuse",
            _ => "hang",
        };
        rig.board.expect_region(region, true);
        // The instances of the region Healthy when the outage begins (not those the churn has
        // just created and the operator has not judged yet).
        let names: Vec<String> = {
            let live: Vec<String> = self
                .state()
                .live
                .iter()
                .map(|s| instance_name(s, region))
                .collect();
            let b = rig.board.lock();
            live.into_iter()
                .filter(|n| {
                    b.slots
                        .get(n)
                        .is_some_and(|s| s.borrow().healthy == Some(true))
                })
                .collect()
        };
        let applied = match rig.fault(&FaultRequest::new(kind).region(region)).await {
            Ok(a) => a,
            Err(e) => {
                say(format!("{kind_name} of {region} failed: {e:#}"));
                rig.board.expect_region(region, false);
                return None;
            }
        };
        self.state().faults_active += 1;
        // What the watch shows for those still existing.
        let states = |names: &[String]| -> Vec<Obs> {
            let b = rig.board.lock();
            names
                .iter()
                .filter_map(|n| b.slots.get(n).map(|s| *s.borrow()))
                .collect()
        };
        let heal_at = Instant::now() + hold;
        while Instant::now() < heal_at {
            let seen = states(&names);
            if seen.iter().all(|o| o.healthy == Some(false)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let seen = states(&names);
        let down: Vec<u64> = seen
            .iter()
            .filter(|o| o.healthy == Some(false) && o.at_ms >= applied.applied_at_unix_ms)
            .map(|o| o.at_ms)
            .collect();
        let went_false = down.len();
        let instances = seen.len();
        let detected_after_ms = (went_false == instances && instances > 0)
            .then(|| down.iter().max().map(|m| m - applied.applied_at_unix_ms))
            .flatten();
        tokio::time::sleep_until(heal_at.into()).await;
        let healed = rig.heal(applied.id).await.ok();
        self.state().faults_active -= 1;
        let until = Instant::now() + self.recover_within();
        while Instant::now() < until {
            if states(&names).iter().all(|o| o.healthy == Some(true)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let seen = states(&names);
        let up: Vec<u64> = seen
            .iter()
            .filter(|o| o.healthy == Some(true))
            .map(|o| o.at_ms)
            .collect();
        rig.board.expect_region(region, false);
        Some(SoakFault {
            kind: kind_name.into(),
            region: region.into(),
            target: "*".into(),
            applied_at_ms: applied.applied_at_unix_ms,
            instances,
            went_false,
            detected_after_ms,
            healed_at_ms: healed,
            recovered: up.len(),
            recovery_instances: seen.len(),
            recovered_after_ms: (up.len() == seen.len())
                .then(|| healed.and_then(|h| up.iter().max().map(|m| m.saturating_sub(h))))
                .flatten(),
        })
    }

    /// One sample of the operator process and of the run.
    async fn sample(&self, t_s: f64, cpu_pct: f64) -> cvs_e2e::soak::Sample {
        let pid = self.rig.operator_pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let (fds, sockets) = cvs_e2e::soak::fds_and_sockets(pid).unwrap_or_default();
        let tcp = cvs_e2e::soak::tcp_of(pid, &sockets);
        let metrics = match self
            .rig
            .http
            .get(format!("http://{}/metrics", self.rig.op_addr))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => {
                say(format!("scraping /metrics failed: {e}"));
                String::new()
            }
        };
        let tasks = |kind: &str| metric_sum(&metrics, "cvs_probe_tasks", &[("kind", kind)], &[]);
        let st = self.state();
        cvs_e2e::soak::Sample {
            t_s,
            rss_mib: cvs_e2e::soak::status_field(&status, "VmRSS:").unwrap_or(0) as f64 / 1024.0,
            heap_allocated_mib: mib(metric_sum(&metrics, "cvs_heap_allocated_bytes", &[], &[])),
            heap_resident_mib: mib(metric_sum(&metrics, "cvs_heap_resident_bytes", &[], &[])),
            threads: cvs_e2e::soak::status_field(&status, "Threads:").unwrap_or(0),
            fds,
            sockets: sockets.len() as u64,
            tcp: tcp.connections,
            tcp_established: tcp.established,
            cpu_pct,
            instances: self.rig.board.len() as u64,
            healthy: self.rig.board.count(Some(true)) as u64,
            probed_playlists: metric_sum(&metrics, "cvs_probed_playlists", &[], &[]),
            instance_tasks: tasks("instance"),
            rendition_tasks: tasks("rendition"),
            stale_playlists: metric_sum(&metrics, "cvs_stale_renditions", &[], &[]),
            faults_active: st.faults_active,
            faults: st.faults.len() as u64,
            faults_detected: st.faults.iter().filter(|f| f.detected()).count() as u64,
            spurious: self.rig.board.lock().spurious.len() as u64,
            creates: st.creates,
            deletes: st.deletes,
        }
    }

    /// Samples every `every` until `end`, appending each to `csv`.
    async fn sampler(
        &self,
        start: Instant,
        end: Instant,
        every: Duration,
        csv: &mut std::fs::File,
    ) -> Vec<cvs_e2e::soak::Sample> {
        let hz = clk_tck();
        let pid = self.rig.operator_pid();
        let mut samples = Vec::new();
        let mut last = (Instant::now(), proc_ticks(pid).unwrap_or(0));
        let mut next_note = start + Duration::from_secs(60);
        // The first sample one interval in, so its CPU covers a whole interval.
        let mut k: u32 = 1;
        loop {
            let at = start + every * k;
            k += 1;
            if at > end {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
            let now = (Instant::now(), proc_ticks(pid).unwrap_or(0));
            let secs = (now.0 - last.0).as_secs_f64();
            let cpu_pct = if secs > 0.5 {
                now.1.saturating_sub(last.1) as f64 / hz / secs * 100.0
            } else {
                0.0
            };
            last = now;
            let s = self.sample(start.elapsed().as_secs_f64(), cpu_pct).await;
            let _ = writeln!(csv, "{}", s.csv_row());
            if Instant::now() >= next_note {
                next_note += Duration::from_secs(60);
                say(format!(
                    "{:.0} s: RSS {:.1} MiB (heap {:.1} held, {:.1} resident), {} threads, {} fds, {} TCP, CPU {:.1} %, {} instances ({} Healthy), tasks {} / {}, faults {} ({} detected), spurious {}, churn +{} -{}, load {}",
                    s.t_s,
                    s.rss_mib,
                    s.heap_allocated_mib,
                    s.heap_resident_mib,
                    s.threads,
                    s.fds,
                    s.tcp,
                    s.cpu_pct,
                    s.instances,
                    s.healthy,
                    s.instance_tasks,
                    s.rendition_tasks,
                    s.faults,
                    s.faults_detected,
                    s.spurious,
                    s.creates,
                    s.deletes,
                    loadavg()
                ));
            }
            samples.push(s);
        }
        samples
    }
}

async fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let label = args.common.label.clone().unwrap_or_else(|| {
        format!(
            "soak-td{}-{}-{}",
            args.target_duration, args.playlists, args.duration
        )
    });
    let instances = args.playlists.div_ceil(PLAYLISTS_PER_INSTANCE);
    let streams = instances.div_ceil(REGIONS.len()).max(2);
    // Streams for the churn to create: a tenth more, at least 8.
    let spare = (streams / 10).max(8);
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        target_dir()
            .join("soak")
            .join(format!("{label}-{}", now_ms() / 1000))
    });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut rig = Rig::start_with_spare(
        &args.common,
        "soak",
        streams,
        spare,
        args.target_duration,
        args.healthy_timeout.into(),
        false,
        args.batch,
        &[],
    )
    .await?;
    let result = async {
        let soak = Soak {
            rig: &rig,
            state: Mutex::new(SoakState {
                live: rig.streams.clone(),
                spare: rig.spare_streams.clone(),
                ..SoakState::default()
            }),
        };
        let csv_path = out_dir.join("samples.csv");
        let mut csv = std::fs::File::create(&csv_path)
            .with_context(|| format!("creating {}", csv_path.display()))?;
        writeln!(csv, "{}", cvs_e2e::soak::CSV_HEADER)?;
        let run: Duration = args.duration.into();
        say(format!(
            "soak for {run:?}: a fault every {} for {} (one in {} a region outage), {} StreamInstances created and as many deleted; samples every {} into {}",
            args.fault_every,
            args.fault_for,
            args.outage_every,
            args.churn,
            args.sample_every,
            out_dir.display()
        ));
        let since = now_ms();
        let start = Instant::now();
        let end = start + run;
        let meter = CpuMeter::start(meter_pids(&rig), clk_tck());
        let (samples, (), ()) = tokio::join!(
            soak.sampler(start, end, args.sample_every.into(), &mut csv),
            soak.churn(args.churn, start, end),
            soak.faults(
                start,
                end,
                args.fault_every.into(),
                args.fault_for.into(),
                args.outage_every,
                args.outage_kind,
            ),
        );
        let cpu = meter.read();
        let run_seconds = start.elapsed().as_secs_f64();
        // The operator has a moment to catch up with the last churn: its tasks must then match
        // the instances exactly.
        let settle_until = Instant::now() + Duration::from_secs(60);
        let end_sample = loop {
            let s = soak.sample(start.elapsed().as_secs_f64(), 0.0).await;
            let want = s.instances as f64;
            if (s.instance_tasks == want
                && s.rendition_tasks == want * PLAYLISTS_PER_INSTANCE as f64)
                || Instant::now() > settle_until
            {
                break s;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let peak_rss_mib =
            proc_status_kib(rig.operator_pid(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;
        let flatness = cvs_e2e::soak::flatness(&samples);
        let st = std::mem::take(&mut *soak.state());
        let spurious_at = rig.board.spurious_since(since);
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        let dist_of = |kinds: &[&str], f: &dyn Fn(&SoakFault) -> Option<u64>| {
            dist(
                st.faults
                    .iter()
                    .filter(|x| kinds.contains(&x.kind.as_str()))
                    .filter_map(|x| f(x).map(|v| v as i64)),
            )
        };
        let max_of = |f: fn(&cvs_e2e::soak::Sample) -> u64| samples.iter().map(f).max().unwrap_or(0);
        let summary = SoakSummary {
            td_ms: rig.td_ms,
            instances: rig.streams.len() * REGIONS.len(),
            probed_playlists_end: end_sample.probed_playlists,
            run_seconds: round1(run_seconds),
            out_dir: out_dir.display().to_string(),
            samples: samples.len(),
            faults: st.faults.len(),
            freezes: st.faults.iter().filter(|f| f.kind == "freeze").count(),
            outages: st.faults.iter().filter(|f| f.kind != "freeze").count(),
            faults_detected: st.faults.iter().filter(|f| f.detected()).count(),
            freeze_detection_from_last_segment: dist_of(&["freeze"], &|f| f.detected_after_ms),
            outage_detection_from_fault: dist_of(&["refuse", "hang"], &|f| f.detected_after_ms),
            recovery_after_heal: dist_of(&["freeze", "refuse", "hang"], &|f| f.recovered_after_ms),
            spurious: spurious_at.len(),
            spurious_at,
            instances_created: st.creates,
            instances_deleted: st.deletes,
            churn_errors: st.churn_errors,
            rss_mib_first: samples.first().map_or(0.0, |s| round1(s.rss_mib)),
            rss_mib_last: samples.last().map_or(0.0, |s| round1(s.rss_mib)),
            rss_mib_max: round1(samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max)),
            peak_rss_mib: round1(peak_rss_mib),
            rss_kib_per_instance: round1(
                end_sample.rss_mib * 1024.0 / (end_sample.instances.max(1) as f64),
            ),
            tcp_max: max_of(|s| s.tcp),
            fds_max: max_of(|s| s.fds),
            threads_max: max_of(|s| s.threads),
            end_instances: end_sample.instances as usize,
            end_instance_tasks: end_sample.instance_tasks,
            end_rendition_tasks: end_sample.rendition_tasks,
            tasks_match_at_end: end_sample.instance_tasks == end_sample.instances as f64
                && end_sample.rendition_tasks
                    == (end_sample.instances as usize * PLAYLISTS_PER_INSTANCE) as f64,
            flatness,
            operator_cpu_pct: cpu.processes.get("operator").copied().unwrap_or(0.0),
            loadavg_end: loadavg(),
            fault_list: st.faults,
        };
        let svg = out_dir.join("soak.svg");
        if let Err(e) = cvs_e2e::soak::write_svg(&svg, &cvs_e2e::soak::panels(&samples), 900) {
            say(format!("plotting {} failed: {e}", svg.display()));
        }
        std::fs::write(
            out_dir.join("summary.json"),
            serde_json::to_vec_pretty(&summary)?,
        )?;
        rig.check_alive()?;
        print_soak(&label, &summary);
        write_result(
            &args.common.json_out,
            &ResultLine {
                kind: "soak".into(),
                label,
                finished_unix_ms: now_ms(),
                args: std::env::args().skip(1).collect(),
                operator_args: args.common.operator_args.clone(),
                detection: None,
                scale: None,
                false_verdicts: None,
                soak: Some(summary),
                campaign_cpu: cpu,
                samples: Vec::new(),
            },
        )
    }
    .await;
    rig.teardown().await;
    result
}

fn print_trend(name: &str, unit: &str, t: &Option<cvs_e2e::soak::Trend>) {
    match t {
        Some(t) => println!(
            "  {name:<16} median {:.1} {unit}, min {:.1}, max {:.1}; trend {:+.2} {unit}/hour, {:+.1} over the window (allowed {:.1}): {}",
            t.median,
            t.min,
            t.max,
            t.per_hour,
            t.growth,
            t.allowed,
            if t.flat { "flat" } else { "GROWING" }
        ),
        None => println!("  {name:<16} too few samples"),
    }
}

fn print_soak(label: &str, s: &SoakSummary) {
    println!(
        "== {label}: TD {} ms, {} StreamInstances, {} media playlists probed at the end, {:.0} s observed; samples in {}",
        s.td_ms, s.instances, s.probed_playlists_end, s.run_seconds, s.out_dir
    );
    println!(
        "  faults {} ({} freezes, {} region outages), fully detected {}; spurious Healthy=False {} {:?}",
        s.faults, s.freezes, s.outages, s.faults_detected, s.spurious, s.spurious_at
    );
    println!(
        "  freeze detection from last segment {}",
        fmt_dist(&s.freeze_detection_from_last_segment)
    );
    println!(
        "  outage detection from the fault    {}",
        fmt_dist(&s.outage_detection_from_fault)
    );
    println!(
        "  recovery after heal                {}",
        fmt_dist(&s.recovery_after_heal)
    );
    println!(
        "  churn: {} StreamInstances created, {} deleted, {} errors",
        s.instances_created, s.instances_deleted, s.churn_errors
    );
    println!(
        "  RSS first {:.1} MiB, last {:.1}, max {:.1} (peak VmHWM {:.1}); {:.1} KiB per instance at the end; max TCP {}, fds {}, threads {}; operator CPU {:.1} % of one core; load at the end {}",
        s.rss_mib_first,
        s.rss_mib_last,
        s.rss_mib_max,
        s.peak_rss_mib,
        s.rss_kib_per_instance,
        s.tcp_max,
        s.fds_max,
        s.threads_max,
        s.operator_cpu_pct,
        s.loadavg_end
    );
    println!(
        "  at the end: {} instances, probe tasks {} instance / {} rendition: {}",
        s.end_instances,
        s.end_instance_tasks,
        s.end_rendition_tasks,
        if s.tasks_match_at_end {
            "match"
        } else {
            "DO NOT MATCH"
        }
    );
    let f = &s.flatness;
    println!(
        "  flatness over the last 3/4 of the run ({:.0} s, {} samples):",
        f.window_s, f.samples
    );
    print_trend("RSS", "MiB", &f.rss_mib);
    print_trend("heap allocated", "MiB", &f.heap_allocated_mib);
    print_trend("threads", "", &f.threads);
    print_trend("open fds", "", &f.fds);
    print_trend("TCP connections", "", &f.tcp);
    print_trend("rendition tasks", "", &f.rendition_tasks);
    println!(
        "  largest gap between instance probe tasks and StreamInstances: {}",
        f.instance_task_gap_max
    );
    println!(
        "  verdict: {}",
        if f.flat && s.tasks_match_at_end {
            "FLAT"
        } else {
            "NOT FLAT"
        }
    );
}
