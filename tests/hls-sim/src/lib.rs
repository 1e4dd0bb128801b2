//! HLS origin simulator: many live streams served identically from several "regions" (one
//! loopback listener each), with faults injected on command through a JSON control API.
//!
//! Embed it in a test or benchmark:
//!
//! ```no_run
//! # async fn demo() -> Result<(), hls_sim::SimError> {
//! use std::time::Duration;
//! use hls_sim::{FaultKind, FaultRequest, SimConfig, Simulator};
//!
//! let sim = Simulator::start(SimConfig {
//!     regions: vec!["us-east-1".into(), "eu-west-1".into()],
//!     streams: 2,
//!     target_duration: Duration::from_millis(500),
//!     ..SimConfig::default()
//! })
//! .await?;
//! let url = sim.media_url("us-east-1", "s0001", "720p").unwrap();
//! let applied = sim
//!     .apply_fault(FaultRequest::new(FaultKind::Freeze).region("us-east-1").stream("s0001"))
//!     .await?;
//! // ... poll `url`, see it stop advancing ...
//! sim.heal_fault(applied.id).await?;
//! sim.shutdown().await;
//! # let _ = url; Ok(()) }
//! ```
//!
//! The binary `hls-origin-sim` is a thin CLI around [`Simulator::start`]; see the crate README
//! for the URL layout and the control API.

pub mod api;
mod body;
pub mod config;
mod control;
mod error;
mod faults;
pub mod hls;
pub mod media;
mod origin;
mod realism;
mod server;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::{
    BlockingMisbehaviour, FaultApplied, FaultInfo, FaultKind, FaultParams, FaultRequest,
    FrozenInfo, FrozenStream, Healed, HealedAll, Ready, RenditionUpdate, RenditionsChanged,
    ResourceFilter, Topology, TruncateMode,
};
pub use config::{OriginAuth, RenditionSpec, SimConfig, VideoRendition};
pub use error::SimError;
pub use media::{MediaLibrary, SegmentFormat};
pub use state::now_ms;

use state::Shared;

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Binds every listener (control first, then one per region), starts serving, and returns
    /// once all of them accept connections. Must be called inside a Tokio runtime.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let mut cfg = config.resolve(now_ms())?;
        config.load_media(&mut cfg)?;
        let bind =
            |addr: SocketAddr| server::bind(addr).map_err(|source| SimError::Bind { addr, source });
        let control = bind(SocketAddr::new(config.bind, config.control_port))?;
        let mut region_listeners = Vec::with_capacity(cfg.regions.len());
        for i in 0..cfg.regions.len() {
            let port = config.region_port_base.map_or(0, |b| b + i as u16);
            region_listeners.push(bind(SocketAddr::new(config.bind, port))?);
        }
        let local = |l: &tokio::net::TcpListener| {
            l.local_addr().map_err(|source| SimError::Bind {
                addr: SocketAddr::new(config.bind, 0),
                source,
            })
        };
        let control_addr = local(&control)?;
        let region_addrs = region_listeners
            .iter()
            .map(local)
            .collect::<Result<Vec<_>, _>>()?;
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared::new(
            cfg,
            region_addrs,
            control_addr,
            shutdown.clone(),
        ));
        let tracker = TaskTracker::new();
        tracker.spawn(server::run_control(
            shared.clone(),
            control,
            tracker.clone(),
        ));
        for (i, l) in region_listeners.into_iter().enumerate() {
            tracker.spawn(server::run_region(shared.clone(), i, l, tracker.clone()));
        }
        tracing::info!(
            control = %control_addr,
            regions = shared.regions.len(),
            streams = shared.streams.len(),
            td_ms = shared.cfg.td_ms,
            part_ms = shared.cfg.part_ms,
            "simulator started"
        );
        Ok(SimHandle {
            shared,
            tracker,
            shutdown,
        })
    }
}

/// A running simulator. Dropping it stops it (without waiting); [`SimHandle::shutdown`] stops it
/// and waits for connections to finish.
pub struct SimHandle {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl SimHandle {
    /// Address of the control API.
    pub fn control_addr(&self) -> SocketAddr {
        self.shared.control_addr
    }

    /// `http://ADDR` of the control API.
    pub fn control_url(&self) -> String {
        self.shared.control_url()
    }

    /// Region names and listen addresses, in configuration order.
    pub fn regions(&self) -> Vec<(String, SocketAddr)> {
        self.shared
            .regions
            .iter()
            .map(|r| (r.name.clone(), r.addr))
            .collect()
    }

    /// Address of one region.
    pub fn region_addr(&self, region: &str) -> Option<SocketAddr> {
        self.shared
            .regions
            .iter()
            .find(|r| r.name == region)
            .map(|r| r.addr)
    }

    /// `http://ADDR` of one region.
    pub fn region_url(&self, region: &str) -> Option<String> {
        self.region_addr(region).map(|a| format!("http://{a}"))
    }

    /// Stream names (`s0001`, ...).
    pub fn streams(&self) -> Vec<String> {
        self.shared.cfg.stream_names.clone()
    }

    /// Unix ms when segment 0 of `stream` started.
    pub fn stream_start_unix_ms(&self, stream: &str) -> Option<u64> {
        let i = *self.shared.stream_index.get(stream)?;
        Some(self.shared.streams[i].timeline.start_ms)
    }

    /// The timeline of `stream` (for exact expectations in tests).
    pub fn timeline(&self, stream: &str) -> Option<hls::Timeline> {
        let i = *self.shared.stream_index.get(stream)?;
        Some(self.shared.streams[i].timeline)
    }

    /// URL of a stream's master playlist in a region.
    pub fn master_url(&self, region: &str, stream: &str) -> Option<String> {
        self.shared.stream_index.get(stream)?;
        Some(format!("{}/{stream}/master.m3u8", self.region_url(region)?))
    }

    /// URL of a rendition's media playlist (video or audio) in a region. Not checked against
    /// the current renditions.
    pub fn media_url(&self, region: &str, stream: &str, rendition: &str) -> Option<String> {
        self.shared.stream_index.get(stream)?;
        Some(format!(
            "{}/{stream}/{rendition}/index.m3u8",
            self.region_url(region)?
        ))
    }

    /// The JSON printed once ready: `{"control": URL, "regions": {NAME: URL}}`.
    /// Requests answered 401 because they lacked the credentials `SimConfig::auth` requires.
    pub fn auth_rejections(&self) -> u64 {
        self.shared
            .auth_rejected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn ready(&self) -> Ready {
        Ready {
            control: self.control_url(),
            regions: self
                .shared
                .regions
                .iter()
                .map(|r| (r.name.clone(), r.base_url.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    /// Applies a fault (as `POST /faults`).
    pub async fn apply_fault(&self, req: FaultRequest) -> Result<FaultApplied, SimError> {
        self.shared.apply_fault(req).await
    }

    /// Heals one fault (as `DELETE /faults/{id}`).
    pub async fn heal_fault(&self, id: u64) -> Result<Healed, SimError> {
        self.shared.heal_fault(id).await
    }

    /// Heals every fault (as `DELETE /faults`).
    pub async fn heal_all(&self) -> HealedAll {
        self.shared.heal_all().await
    }

    /// Active faults (as `GET /faults`).
    pub fn faults(&self) -> Vec<FaultInfo> {
        self.shared.fault_list()
    }

    /// Adds/removes video renditions (as `POST /streams/{stream}/renditions`; `*` = all).
    pub fn update_renditions(
        &self,
        stream: &str,
        update: &RenditionUpdate,
    ) -> Result<RenditionsChanged, SimError> {
        self.shared.update_renditions(stream, update)
    }

    /// The topology (as `GET /topology`), optionally filtered.
    pub fn topology(&self, stream: Option<&str>, region: Option<&str>) -> Topology {
        self.shared.topology(stream, region)
    }

    /// Stops accepting, ends held requests (hang, blocking reload) with 503, lets connections
    /// finish (at most ~2 s) and returns.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within 5 s");
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
