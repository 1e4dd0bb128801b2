//! Load generator for a running `hls-origin-sim`: polls N media playlists every P seconds over
//! a bounded number of keep-alive connections for a bounded time, checks that every playlist's
//! media sequence never decreases, and prints a JSON summary. Loopback only.
//!
//! ```text
//! cargo run --release -p hls-sim --example loadgen -- \
//!     --control http://127.0.0.1:PORT --playlists 10000 --period 3 --duration 30
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Control URL of the simulator (the "control" field of its ready line).
    #[arg(long)]
    control: String,
    /// Media playlists to poll (taken from the topology, video renditions, all regions).
    #[arg(long, default_value_t = 10_000)]
    playlists: usize,
    /// Seconds between two polls of the same playlist.
    #[arg(long, default_value_t = 3.0)]
    period: f64,
    /// Seconds to run.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Concurrent pollers (each keeps one connection alive).
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    errors: AtomicU64,
    decreases: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(10))
        .build()?;
    let topo: hls_sim::Topology = serde_json::from_str(
        &client
            .get(format!("{}/topology", args.control))
            .send()
            .await?
            .text()
            .await?,
    )?;
    let mut urls: Vec<String> = topo
        .regions
        .iter()
        .flat_map(|r| r.streams.iter())
        .flat_map(|s| s.media.iter())
        .filter(|m| m.kind == "video")
        .map(|m| m.url.clone())
        .take(args.playlists)
        .collect();
    if urls.len() < args.playlists {
        eprintln!("only {} playlists in the topology", urls.len());
    }
    let stats = Arc::new(Stats::default());
    let period = Duration::from_secs_f64(args.period);
    let end = Instant::now() + Duration::from_secs_f64(args.duration);
    let per_task = urls.len().div_ceil(args.connections.max(1));
    let mut tasks = Vec::new();
    while !urls.is_empty() {
        let mine: Vec<String> = urls.drain(..per_task.min(urls.len())).collect();
        let client = client.clone();
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let mut last_seq = vec![0u64; mine.len()];
            let mut tick = tokio::time::interval(period / mine.len() as u32);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = 0;
            while Instant::now() < end {
                tick.tick().await;
                let t0 = Instant::now();
                let res = async {
                    let r = client.get(&mine[i]).send().await?;
                    r.error_for_status()?.text().await
                }
                .await;
                let us = t0.elapsed().as_micros() as u64;
                match res {
                    Ok(body) => {
                        let seq = body
                            .lines()
                            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
                            .and_then(|s| s.parse::<u64>().ok())
                            .unwrap_or(0);
                        if seq < last_seq[i] {
                            stats.decreases.fetch_add(1, Ordering::Relaxed);
                        }
                        last_seq[i] = seq;
                        stats.ok.fetch_add(1, Ordering::Relaxed);
                        stats.total_us.fetch_add(us, Ordering::Relaxed);
                        stats.max_us.fetch_max(us, Ordering::Relaxed);
                    }
                    Err(_) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i = (i + 1) % mine.len();
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let ok = stats.ok.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "requests_ok": ok,
            "errors": stats.errors.load(Ordering::Relaxed),
            "sequence_decreases": stats.decreases.load(Ordering::Relaxed),
            "req_per_s": ok as f64 / args.duration,
            "mean_latency_ms": stats.total_us.load(Ordering::Relaxed) as f64 / ok.max(1) as f64 / 1000.0,
            "max_latency_ms": stats.max_us.load(Ordering::Relaxed) as f64 / 1000.0,
        })
    );
    Ok(())
}
