//! The probe engine on LL-HLS playlists of the HLS origin simulator: blocking reload, part
//! freshness and the fallback to plain polling, with real HTTP on loopback.

use super::*;
use crate::metrics::ProbeLabels;
use hls_sim::{
    BlockingMisbehaviour, FaultKind, FaultParams, FaultRequest, ResourceFilter, SimConfig,
    SimHandle, Simulator,
};

/// One stream, one video rendition (so its master lists `720p`... whichever the ladder's first
/// is, its I-frame playlist and one audio rendition), 2 s segments of `part_ms` parts.
async fn sim(part_ms: u64) -> SimHandle {
    Simulator::start(SimConfig {
        regions: vec!["r".into()],
        streams: 1,
        renditions: 1,
        audio_renditions: 1,
        target_duration: Duration::from_secs(2),
        ll_hls: true,
        part_target: Some(Duration::from_millis(part_ms)),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn engine() -> ProbeEngine {
    engine_with(FetchLimits {
        allow_private: true,
        ..FetchLimits::default()
    })
}

fn engine_with(limits: FetchLimits) -> ProbeEngine {
    let settings = EngineSettings {
        limits,
        max_backoff: Duration::from_secs(2),
        rediscover_every: Duration::from_secs(1),
        max_renditions: 10,
        confirm: Confirm::default(),
        parse: Default::default(),
    };
    ProbeEngine::new(settings, Arc::new(Metrics::default()))
        .unwrap()
        .0
}

fn key() -> InstanceKey {
    InstanceKey {
        namespace: "ns".into(),
        name: "ll".into(),
    }
}

async fn wait_for(
    e: &ProbeEngine,
    within: Duration,
    want: impl Fn(&InstanceHealth) -> bool,
) -> Option<InstanceHealth> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(h) = e.health(&key())
            && want(&h)
        {
            return Some(h);
        }
        sleep(Duration::from_millis(20)).await;
    }
    None
}

fn requests(e: &ProbeEngine, playlist: &'static str) -> u64 {
    e.shared
        .metrics
        .probe_requests
        .get_or_create(&ProbeLabels {
            playlist,
            outcome: "ok",
        })
        .get()
}

/// The media playlist (not the I-frame one) of `rendition`.
fn index_of<'a>(h: &'a InstanceHealth, rendition: &str) -> Option<&'a RenditionHealth> {
    h.renditions
        .iter()
        .find(|r| r.uri.contains(&format!("/{rendition}/index.m3u8")))
}

fn video(sim: &SimHandle) -> String {
    sim.topology(None, None).streams[0].video[0].name.clone()
}

async fn start(sim: &SimHandle) -> ProbeEngine {
    start_with(sim, engine()).await
}

/// Starts probing the simulator's stream in region `r` as the instance [`key`].
fn probe(sim: &SimHandle, e: &ProbeEngine) {
    e.ensure(
        &key(),
        ProbeTarget {
            master_url: Url::parse(&sim.master_url("r", "s0001").unwrap()).unwrap(),
            policy: Policy::default(),
            allowed_hosts: Vec::new(),
            credentials: None,
            lag: None,
        },
    );
}

async fn start_with(sim: &SimHandle, e: ProbeEngine) -> ProbeEngine {
    probe(sim, &e);
    let healthy = wait_for(&e, Duration::from_secs(15), |h| {
        h.verdict.healthy == Some(true)
    })
    .await;
    assert!(healthy.is_some(), "{:?}", e.health(&key()));
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ll_hls_rendition_is_probed_with_blocking_reloads_and_a_freeze_seen_on_parts() {
    let sim = sim(500).await;
    let e = start(&sim).await;
    // Healthy on blocking reloads: about one per part, and few plain ones.
    let (blocking, plain) = (requests(&e, "media_blocking"), requests(&e, "media"));
    sleep(Duration::from_secs(4)).await;
    let blocking = requests(&e, "media_blocking") - blocking;
    let plain = requests(&e, "media") - plain;
    // Two LL-HLS playlists (video, audio) at 2 parts a second for 4 s; the I-frame playlist is
    // polled plainly.
    assert!((8..=40).contains(&blocking), "{blocking} blocking reloads");
    assert!(plain <= 12, "{plain} plain reloads");
    assert_eq!(e.health(&key()).unwrap().verdict.healthy, Some(true));
    assert_eq!(e.shared.metrics.probe_blocking_fallbacks.get(), 0);

    // A frozen video playlist is stale on parts: the part bound (1.5 s) passes long before
    // the segment bound (3 s).
    let rendition = video(&sim);
    let f = sim
        .apply_fault(
            FaultRequest::new(FaultKind::Freeze)
                .rendition(rendition.clone())
                .resource(ResourceFilter::Media),
        )
        .await
        .unwrap();
    let stale = wait_for(&e, Duration::from_secs(10), |h| {
        h.verdict.healthy == Some(false)
    })
    .await
    .expect("stale");
    let index = stale
        .renditions
        .iter()
        .find(|r| r.uri.contains(&format!("/{rendition}/index.m3u8")))
        .unwrap();
    assert!(
        index
            .detail
            .as_deref()
            .unwrap_or("")
            .starts_with("no new part"),
        "{stale:?}, {} fallbacks",
        e.shared.metrics.probe_blocking_fallbacks.get()
    );
    assert_eq!(e.shared.metrics.probe_blocking_fallbacks.get(), 0);
    sim.heal_fault(f.id).await.unwrap();
    assert!(
        wait_for(&e, Duration::from_secs(15), |h| h.verdict.healthy
            == Some(true))
        .await
        .is_some()
    );
    sim.shutdown().await;
}

/// A stream frozen when the prober first sees it, so that its first blocking request is never
/// answered, is still judged on parts: the plain reload that switched it to blocking armed the
/// part clock, and the held request is dropped at the part deadline (1.5 s) and confirmed,
/// well before the segment bound (3 s from first sight) would say "no new segment".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_before_the_first_blocking_answer_is_seen_on_parts() {
    let sim = sim(500).await;
    let rendition = video(&sim);
    sim.apply_fault(
        FaultRequest::new(FaultKind::Freeze)
            .rendition(rendition.clone())
            .resource(ResourceFilter::Media),
    )
    .await
    .unwrap();
    let e = engine();
    probe(&sim, &e);
    let stale = wait_for(&e, Duration::from_secs(10), |h| {
        index_of(h, &rendition).is_some_and(|r| r.judged && !r.fresh)
    })
    .await
    .expect("stale");
    let index = index_of(&stale, &rendition).unwrap();
    assert!(
        index
            .detail
            .as_deref()
            .unwrap_or("")
            .starts_with("no new part"),
        "{stale:?}"
    );
    assert_eq!(e.shared.metrics.probe_blocking_fallbacks.get(), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_blocking_server_is_left_for_plain_polling_without_a_false_verdict() {
    for mode in [
        BlockingMisbehaviour::Ignore,
        BlockingMisbehaviour::Error,
        BlockingMisbehaviour::Hang,
    ] {
        let sim = sim(500).await;
        let e = start(&sim).await;
        let rendition = video(&sim);
        sim.apply_fault(
            FaultRequest::new(FaultKind::BlockingReload)
                .rendition(rendition.clone())
                .params(FaultParams {
                    blocking: Some(mode),
                    ..FaultParams::default()
                }),
        )
        .await
        .unwrap();
        // It falls back, and the live stream never looks stale meanwhile.
        let end = Instant::now() + Duration::from_secs(8);
        while Instant::now() < end {
            assert_eq!(
                e.health(&key()).unwrap().verdict.healthy,
                Some(true),
                "{mode:?}: {:?}",
                e.health(&key())
            );
            sleep(Duration::from_millis(20)).await;
        }
        assert!(
            e.shared.metrics.probe_blocking_fallbacks.get() >= 1,
            "{mode:?}: no fallback"
        );
        // Polled plainly, a freeze is still found, on segments.
        sim.apply_fault(
            FaultRequest::new(FaultKind::Freeze)
                .rendition(rendition.clone())
                .resource(ResourceFilter::Media),
        )
        .await
        .unwrap();
        let stale = wait_for(&e, Duration::from_secs(10), |h| {
            index_of(h, &rendition).is_some_and(|r| r.judged && !r.fresh)
        })
        .await
        .expect("stale");
        assert_eq!(stale.verdict.healthy, Some(false));
        let index = index_of(&stale, &rendition).unwrap();
        assert!(
            index
                .detail
                .as_deref()
                .unwrap_or("")
                .starts_with("no new segment"),
            "{mode:?}: {stale:?}"
        );
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_free_blocking_slot_an_ll_hls_rendition_is_polled_at_the_hls_cadence() {
    let sim = sim(500).await;
    let e = start_with(
        &sim,
        engine_with(FetchLimits {
            allow_private: true,
            blocking_concurrency: 0,
            ..FetchLimits::default()
        }),
    )
    .await;
    let plain = requests(&e, "media");
    // Never stale meanwhile: plain polls at the HLS cadence must not arm the part clock.
    let end = Instant::now() + Duration::from_secs(6);
    while Instant::now() < end {
        let h = e.health(&key()).unwrap();
        assert_eq!(h.verdict.healthy, Some(true), "{h:?}");
        sleep(Duration::from_millis(20)).await;
    }
    let plain = requests(&e, "media") - plain;
    // Three playlists at the HLS cadence with catch-up polls (about 10 a second in all here),
    // never a loop (thousands).
    assert!(plain <= 180, "{plain} plain reloads in 6 s");
    assert_eq!(requests(&e, "media_blocking"), 0);
    assert_eq!(e.health(&key()).unwrap().verdict.healthy, Some(true));
    sim.shutdown().await;
}
