//! LL-HLS end to end: the HLS origin simulator serves LL-HLS (parts, blocking playlist reload) in
//! two regions, the operator runs as a process against the real API server, probes with blocking
//! reloads and judges freshness on parts; a server whose blocking reload misbehaves is polled
//! plainly and still judged right.

use cvs_e2e::*;
use cvs_operator::resources::{StreamInstance, StreamInstanceStatus};
use hls_sim::api::{BlockingMisbehaviour, FaultKind, FaultParams, FaultRequest, ResourceFilter};
use hls_sim::{SimConfig, SimHandle, Simulator};
use kube::api::Api;
use std::time::Duration;

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const STREAM: &str = "s0001";
/// Generous bounds for a shared, noisy 2-core machine; the benchmark measures the real latency.
const DETECT: Duration = Duration::from_secs(20);
const RECOVER: Duration = Duration::from_secs(30);

struct Fixture {
    sim: SimHandle,
    instances: Api<StreamInstance>,
    operator: Operator,
}

impl Fixture {
    /// Two regions of one LL-HLS stream (3 video renditions, 1 audio, I-frames) with `td_ms`
    /// segments of `part_ms` parts, the event applied with kubectl, and the operator probing it.
    async fn start(name: &str, td_ms: u64, part_ms: u64) -> Fixture {
        install_crds();
        let sim = Simulator::start(SimConfig {
            regions: vec![EAST.into(), WEST.into()],
            streams: 1,
            renditions: 3,
            audio_renditions: 1,
            target_duration: Duration::from_millis(td_ms),
            ll_hls: true,
            part_target: Some(Duration::from_millis(part_ms)),
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let ns = namespace(name);
        let origins = [EAST, WEST].map(|r| (r, sim.master_url(r, STREAM).unwrap()));
        let manifest = probed_event_manifest("  health: {partStalenessMultiplier: 3}\n", &origins);
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
        let operator = Operator::start_with(name, &ns, &PROBE_TEST_FLAGS)
            .await
            .expect("operator starts");
        let instances = Api::namespaced(client().await, &ns);
        Fixture {
            sim,
            instances,
            operator,
        }
    }

    async fn status(&self, region: &str) -> Option<StreamInstanceStatus> {
        instance_status(&self.instances, region).await
    }

    /// Waits until the `Stale` condition's message contains `text`.
    async fn wait_stale_with(&self, region: &str, text: &str) -> StreamInstanceStatus {
        wait_for(&format!("{region} stale with {text:?}"), DETECT, || async {
            let s = self.status(region).await?;
            let c = s.conditions.iter().find(|c| c.type_ == "Stale")?;
            (c.status == "True" && c.message.contains(text)).then_some(s)
        })
        .await
    }

    async fn wait_healthy(
        &self,
        region: &str,
        healthy: bool,
        within: Duration,
    ) -> StreamInstanceStatus {
        wait_instance_healthy(&self.instances, region, healthy, within).await
    }

    /// A counter of the operator's metrics (summed over the series whose labels contain
    /// `labels`).
    async fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, text) = self.operator.get("/metrics").await.expect("metrics");
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn freeze_720p(&self) -> FaultRequest {
        FaultRequest::new(FaultKind::Freeze)
            .region(EAST)
            .stream(STREAM)
            .rendition("720p")
            .resource(ResourceFilter::Media)
    }
}

fn stale_condition(s: &StreamInstanceStatus) -> (String, String) {
    let c = s.conditions.iter().find(|c| c.type_ == "Stale").unwrap();
    assert_eq!(c.status, "True");
    (c.reason.clone(), c.message.clone())
}

/// Healthy on blocking reloads; a freeze is reported on parts (`NoNewPart`), which only the
/// part bound (3 x the part target) can give: the segment bound (1.5 x TD, twice as long) is
/// never first.
async fn a_frozen_ll_hls_rendition_is_stale_on_parts(name: &str, td_ms: u64, part_ms: u64) {
    let f = Fixture::start(name, td_ms, part_ms).await;
    let healthy = f.wait_healthy(EAST, true, DETECT).await;
    assert_eq!(healthy.renditions.len(), 7, "{:?}", healthy.renditions);
    f.wait_healthy(WEST, true, DETECT).await;
    wait_for("blocking reloads answered", DETECT, || async {
        let answered = f
            .metric(
                "cvs_probe_requests_total",
                "playlist=\"media_blocking\",outcome=\"ok\"",
            )
            .await;
        (answered >= 4.0).then_some(())
    })
    .await;
    let applied = f.sim.apply_fault(f.freeze_720p()).await.expect("fault");
    // The 720p media playlist is judged on parts. Its I-frame playlist (plain HLS, frozen too)
    // is judged on segments, usually later; but its bound runs from first sight, so a freeze
    // soon after start can make it first: wait for the media playlist's own verdict.
    let stale = f
        .wait_stale_with(EAST, "/720p/index.m3u8: no new part")
        .await;
    let seen = hls_sim::now_ms();
    let (reason, message) = stale_condition(&stale);
    assert!(
        reason == "NoNewPart" || reason == "RenditionsStale",
        "{reason}: {message}"
    );
    // Within the part bound from the last part published, with a generous margin for this
    // machine (the benchmark measures it).
    let last_part = applied
        .frozen
        .and_then(|fz| fz.last_part_published_unix_ms)
        .expect("LL-HLS freeze reports its last part");
    let bound = 3 * part_ms;
    assert!(
        seen.saturating_sub(last_part) < bound + 10_000,
        "seen {} ms after the last part",
        seen.saturating_sub(last_part)
    );
    let west = f.status(WEST).await.unwrap();
    assert!(
        west.conditions
            .iter()
            .any(|c| c.type_ == "Healthy" && c.status == "True"),
        "{west:?}"
    );
    f.sim.heal_fault(applied.id).await.expect("heals");
    f.wait_healthy(EAST, true, RECOVER).await;
    assert_eq!(
        f.metric("cvs_probe_blocking_fallbacks_total", "").await,
        0.0,
        "a well-behaved server was left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_with_half_second_parts_is_healthy_and_a_freeze_is_stale_on_parts() {
    a_frozen_ll_hls_rendition_is_stale_on_parts("llhls-500", 2_000, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_with_one_second_parts_is_healthy_and_a_freeze_is_stale_on_parts() {
    a_frozen_ll_hls_rendition_is_stale_on_parts("llhls-1000", 4_000, 1_000).await;
}

/// The blocking reloads of one rendition hang (the hardest case: a held request looks like a
/// frozen stream). The probe confirms with plain reloads, falls back, never reports the live
/// stream stale, and still reports a freeze, on segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_blocking_server_falls_back_and_still_judges() {
    let f = Fixture::start("llhls-misbehaves", 2_000, 500).await;
    f.wait_healthy(EAST, true, DETECT).await;
    for (rendition, mode) in [
        ("720p", BlockingMisbehaviour::Hang),
        ("1080p", BlockingMisbehaviour::Ignore),
        ("360p", BlockingMisbehaviour::Error),
    ] {
        f.sim
            .apply_fault(
                FaultRequest::new(FaultKind::BlockingReload)
                    .region(EAST)
                    .stream(STREAM)
                    .rendition(rendition)
                    .params(FaultParams {
                        blocking: Some(mode),
                        ..FaultParams::default()
                    }),
            )
            .await
            .expect("fault");
    }
    // Each of the three falls back (the audio playlist keeps blocking).
    wait_for("three fallbacks", DETECT, || async {
        (f.metric("cvs_probe_blocking_fallbacks_total", "").await >= 3.0).then_some(())
    })
    .await;
    // Meanwhile, and for a while after, the live stream is never reported stale.
    let end = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < end {
        let s = f.status(EAST).await.unwrap();
        let c = s.conditions.iter().find(|c| c.type_ == "Healthy").unwrap();
        assert_eq!(c.status, "True", "{}: {}", c.reason, c.message);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = f.operator.log_text();
    assert!(log.contains("blocking reload"), "no fallback logged");

    let applied = f.sim.apply_fault(f.freeze_720p()).await.expect("fault");
    let stale = f
        .wait_stale_with(EAST, "/720p/index.m3u8: no new segment")
        .await;
    let (reason, message) = stale_condition(&stale);
    assert!(
        reason == "NoNewSegment" || reason == "RenditionsStale",
        "{reason}: {message}"
    );
    f.sim.heal_fault(applied.id).await.expect("heals");
    f.wait_healthy(EAST, true, RECOVER).await;
}
