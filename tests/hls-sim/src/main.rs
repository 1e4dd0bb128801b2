//! `hls-origin-sim`: runs the HLS origin simulator until SIGTERM/SIGINT.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hls_sim::{SimConfig, Simulator};

/// HLS origin simulator: live streams in several regions, with faults on command.
///
/// Once every listener is up, prints one JSON line on stdout:
/// {"control":"http://127.0.0.1:PORT","regions":{"us-east-1":"http://127.0.0.1:PORT",...}}
/// Logs go to stderr (RUST_LOG, default info).
#[derive(Debug, Parser)]
#[command(name = "hls-origin-sim", version)]
struct Cli {
    /// Comma-separated region names; each gets its own listener.
    #[arg(long, value_delimiter = ',', default_value = "us-east-1,eu-west-1")]
    regions: Vec<String>,
    /// Number of streams (s0001, s0002, ...).
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// Video renditions per stream (1..=10; 3 = 1080p, 720p, 360p).
    #[arg(long, default_value_t = 3)]
    renditions: usize,
    /// Audio renditions per stream (1..=8; group "aud").
    #[arg(long, default_value_t = 1)]
    audio_renditions: usize,
    /// Segment duration in seconds (millisecond precision), e.g. 6, 2 or 0.5.
    #[arg(long, default_value_t = 6.0)]
    target_duration: f64,
    /// Complete segments listed in each media playlist.
    #[arg(long, default_value_t = 6)]
    window: usize,
    /// Serve LL-HLS: parts, preload hints, blocking playlist reload.
    #[arg(long)]
    ll_hls: bool,
    /// LL-HLS part target in seconds [default: 0.5, or target duration / 4 below 1 s].
    #[arg(long)]
    part_target: Option<f64>,
    /// Address to bind every listener to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Control API port (0 = any free port).
    #[arg(long, default_value_t = 0)]
    control_port: u16,
    /// Region i listens on this port + i (default: any free port).
    #[arg(long)]
    region_port_base: Option<u16>,
    /// Unix ms when segment 0 of every stream started [default: 1000 segments ago].
    #[arg(long)]
    start_unix_ms: Option<u64>,
    /// Start every stream at the same instant (default: starts spread over one segment).
    #[arg(long)]
    align_streams: bool,
    /// Also write the ready JSON line to this file (atomically).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Serve real media from this directory (made by tests/player/make-media.sh for this
    /// target duration) instead of 188-byte placeholder segments. Not with --ll-hls.
    #[arg(long)]
    media: Option<PathBuf>,
    /// Segment container with --media: ts (N.ts) or fmp4 (N.m4s with an EXT-X-MAP init.mp4).
    #[arg(long, default_value = "ts")]
    segment_format: hls_sim::SegmentFormat,
    /// Tokio worker threads [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// Require credentials on every request but /healthz (else 401): basic:USER:PASSWORD,
    /// bearer:TOKEN or header:NAME:VALUE.
    #[arg(long, value_parser = hls_sim::OriginAuth::parse)]
    require_auth: Option<hls_sim::OriginAuth>,
    /// Serve media playlists without EXT-X-PROGRAM-DATE-TIME (default: every playlist dates
    /// its first listed segment).
    #[arg(long)]
    no_program_date_time: bool,
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    if !s.is_finite() || s <= 0.0 || s > 3600.0 {
        return Err(format!("--{name} must be > 0 and <= 3600 seconds"));
    }
    Ok(Duration::from_millis((s * 1000.0).round() as u64))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match build_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hls-origin-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hls-origin-sim: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config, cli.ready_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hls-origin-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn build_config(cli: &Cli) -> Result<SimConfig, String> {
    Ok(SimConfig {
        regions: cli.regions.iter().map(|r| r.trim().to_string()).collect(),
        streams: cli.streams,
        renditions: cli.renditions,
        audio_renditions: cli.audio_renditions,
        target_duration: seconds("target-duration", cli.target_duration)?,
        window: cli.window,
        ll_hls: cli.ll_hls,
        part_target: cli
            .part_target
            .map(|p| seconds("part-target", p))
            .transpose()?,
        bind: cli.bind,
        control_port: cli.control_port,
        region_port_base: cli.region_port_base,
        start_unix_ms: cli.start_unix_ms,
        stagger: !cli.align_streams,
        media_dir: cli.media.clone(),
        segment_format: cli.segment_format,
        program_date_time: !cli.no_program_date_time,
        auth: cli.require_auth.clone(),
    })
}

async fn run(
    config: SimConfig,
    ready_file: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let sim = Simulator::start(config).await?;
    let line = serde_json::to_string(&sim.ready())?;
    if let Some(path) = ready_file {
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        tokio::fs::write(&tmp, format!("{line}\n")).await?;
        tokio::fs::rename(&tmp, &path).await?;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
