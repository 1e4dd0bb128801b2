//! The stale-playlist detector end to end: the HLS origin simulator serves two regions, the
//! operator runs as a process against the real API server, and every fault kind the simulator
//! can inject must show as `Healthy=False`/`Stale=True` on the right instance, with a Warning
//! Event, and heal back.

use cvs_e2e::*;
use cvs_operator::resources::{ClusteredStream, StreamInstance, StreamInstanceStatus};
use hls_sim::api::{
    FaultKind, FaultParams, FaultRequest, RenditionUpdate, ResourceFilter, TruncateMode,
};
use hls_sim::{SimConfig, SimHandle, Simulator};
use k8s_openapi::api::core::v1::Event;
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
    ns: String,
    instances: Api<StreamInstance>,
    client: kube::Client,
    operator: Operator,
}

impl Fixture {
    /// A simulator with two regions of one stream (3 video renditions, 1 audio, I-frames) at a
    /// 1 s target duration, the event applied with kubectl, and the operator probing it.
    async fn start(name: &str, before_operator: impl AsyncFnOnce(&SimHandle)) -> Fixture {
        install_crds();
        let sim = Simulator::start(SimConfig {
            regions: vec![EAST.into(), WEST.into()],
            streams: 1,
            renditions: 3,
            audio_renditions: 1,
            target_duration: Duration::from_secs(1),
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let ns = namespace(name);
        let origins = [EAST, WEST].map(|r| (r, sim.master_url(r, STREAM).unwrap()));
        let manifest = probed_event_manifest("", &origins);
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
        before_operator(&sim).await;
        let operator = Operator::start_with(
            name,
            &ns,
            &[&SHORT_PROBE_TIMEOUT[..], &PROBE_TEST_FLAGS].concat(),
        )
        .await
        .expect("operator starts");
        let client = client().await;
        let instances = Api::namespaced(client.clone(), &ns);
        Fixture {
            sim,
            ns,
            instances,
            client,
            operator,
        }
    }

    async fn status(&self, region: &str) -> Option<StreamInstanceStatus> {
        instance_status(&self.instances, region).await
    }

    /// Waits until the instance's `Healthy` condition has `status`, returning the status.
    async fn wait_healthy(
        &self,
        region: &str,
        healthy: bool,
        within: Duration,
    ) -> StreamInstanceStatus {
        wait_instance_healthy(&self.instances, region, healthy, within).await
    }

    async fn events(&self, region: &str) -> Vec<Event> {
        events_for(&self.client, &self.ns, &instance_name(region)).await
    }
}

fn condition<'a>(
    s: &'a StreamInstanceStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

/// Injects `fault` on the 720p rendition of us-east-1 only, and checks that us-east-1 turns
/// stale with one of `reasons` naming 720p, that eu-west-1 stays healthy, and that healing
/// brings us-east-1 back.
async fn rendition_fault_is_detected(name: &str, fault: FaultRequest, reasons: &[&str]) {
    let f = Fixture::start(name, async |_| {}).await;
    let healthy = f.wait_healthy(EAST, true, DETECT).await;
    // 3 video + 1 audio + 3 I-frame playlists are all discovered and probed.
    assert_eq!(healthy.renditions.len(), 7, "{:?}", healthy.renditions);
    assert!(healthy.renditions.iter().any(|r| r.kind == "audio"));
    assert!(healthy.renditions.iter().any(|r| r.kind == "iframe"));
    f.wait_healthy(WEST, true, DETECT).await;

    let applied = f
        .sim
        .apply_fault(
            fault
                .region(EAST)
                .stream(STREAM)
                .rendition("720p")
                .resource(ResourceFilter::Media),
        )
        .await
        .expect("fault applies");
    f.wait_healthy(EAST, false, DETECT).await;
    // The fault covers 720p and its I-frame playlist, polled at different phases: one of them
    // may already be a step into its recovery when status is read, which makes the causes mixed
    // ("RenditionsStale"); the expected cause must then still be named in the message.
    let named = |reason: &str| match reason {
        "NoNewSegment" => "no new segment",
        "HttpError" => "HTTP ",
        "Timeout" => "timed out",
        "ConnectionFailed" => "connect",
        "MediaSequenceReset" => "went backwards",
        "PlaylistUnparsable" => "unparsable",
        "PlaylistTooLarge" => "larger than",
        _ => "",
    };
    let expected = |cond: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition| {
        cond.status == "True"
            && (reasons.contains(&cond.reason.as_str())
                || (cond.reason == "RenditionsStale"
                    && reasons.iter().any(|r| cond.message.contains(named(r)))))
    };
    // A failing playlist is stale at the staleness bound (`NoNewSegment`) or at the failure
    // threshold, whichever comes first; the failure names the cause once the threshold is
    // reached (three confirmed failures in a row).
    let stale = wait_for(&format!("Stale reason in {reasons:?}"), DETECT, || async {
        let s = f.status(EAST).await?;
        expected(condition(&s, "Stale")).then_some(s)
    })
    .await;
    let cond = condition(&stale, "Stale");
    // The 720p media playlist, and its I-frame playlist (the fault's rendition scope covers
    // both), are the only stale ones: one frozen rendition of seven is reported.
    assert!(
        cond.message.starts_with("1 of 7 renditions stale")
            || cond.message.starts_with("2 of 7 renditions stale"),
        "{}",
        cond.message
    );
    let bad: Vec<_> = stale.renditions.iter().filter(|r| !r.fresh).collect();
    assert!(!bad.is_empty() && bad.len() <= 2, "{:?}", stale.renditions);
    for r in &bad {
        assert!(r.uri.contains("/720p/"), "{r:?}");
        assert!(r.last_error.is_some(), "{r:?}");
    }

    // The other region is untouched.
    let west = f.status(WEST).await.unwrap();
    assert_eq!(condition(&west, "Healthy").status, "True");

    wait_for("Stale Warning Event", DETECT, || async {
        f.events(EAST)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Stale") && e.type_.as_deref() == Some("Warning"))
    })
    .await;

    f.sim.heal_fault(applied.id).await.expect("heals");
    let back = f.wait_healthy(EAST, true, RECOVER).await;
    assert_eq!(condition(&back, "Stale").status, "False");
    assert!(back.renditions.iter().all(|r| r.fresh));
}

/// The operator's counter `cvs_probe_retries_total` for media playlists with `outcome`.
async fn retries(f: &Fixture, outcome: &str) -> u64 {
    let (_, text) = f.operator.get("/metrics").await.expect("metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("cvs_probe_retries_total{")
                && l.contains("playlist=\"media\"")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// One failed request of each kind that can be a passing glitch (a 500, a 404, a reset
/// connection, a request hanging past the probe timeout, a garbage body), on a video and on the
/// audio rendition, one after the other: the instance's health never changes. Before the
/// confirmation and the failure threshold, any one of them made it stale at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_failed_request_never_changes_health() {
    let f = Fixture::start("single-failure", async |_| {}).await;
    let healthy = f.wait_healthy(EAST, true, DETECT).await;
    let since = condition(&healthy, "Healthy").last_transition_time.clone();
    let before = retries(&f, "recovered").await;
    let kinds = [
        FaultKind::Http500,
        FaultKind::Http404,
        FaultKind::Refuse,
        FaultKind::Hang,
        FaultKind::Garbage,
    ];
    let mut injected = 0;
    for kind in kinds {
        for rendition in ["720p", "audio-en"] {
            let applied = f
                .sim
                .apply_fault(
                    FaultRequest::new(kind)
                        .region(EAST)
                        .stream(STREAM)
                        .rendition(rendition)
                        .resource(ResourceFilter::Media)
                        .params(FaultParams {
                            count: Some(1),
                            ..FaultParams::default()
                        }),
                )
                .await
                .expect("fault applies");
            injected += 1;
            // The playlist is read about twice a second; let the failure and its retry pass
            // (a hanging request is released when the fault is healed).
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            f.sim.heal_fault(applied.id).await.expect("heals");
            let s = f.status(EAST).await.unwrap();
            let c = condition(&s, "Healthy");
            assert_eq!(c.status, "True", "{kind:?} on {rendition}: {}", c.message);
        }
    }
    // One segment answering 404 once: the segment check's retry finds it.
    let applied = f
        .sim
        .apply_fault(
            FaultRequest::new(FaultKind::Http404)
                .region(EAST)
                .stream(STREAM)
                .resource(ResourceFilter::Segment)
                .params(FaultParams {
                    count: Some(1),
                    ..FaultParams::default()
                }),
        )
        .await
        .expect("fault applies");
    tokio::time::sleep(Duration::from_secs(4)).await;
    f.sim.heal_fault(applied.id).await.expect("heals");
    // Once more after the last one's retry, and nothing in between: the condition never
    // flipped (its transition time is unchanged) and no Stale Event was recorded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = f.status(EAST).await.unwrap();
    let c = condition(&s, "Healthy");
    assert_eq!(c.status, "True", "{}", c.message);
    assert_eq!(c.last_transition_time, since);
    assert!(
        !f.events(EAST)
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("Stale")),
        "a Stale Event was recorded"
    );
    // Each failure was absorbed by a retry (a hang's retry may start beside it).
    let absorbed = retries(&f, "recovered").await - before;
    assert!(
        absorbed >= injected - 2,
        "{absorbed} of {injected} failures absorbed by a retry"
    );
}

/// The failure threshold never delays the age bound: with `failureThreshold: 10`, a rendition
/// answering 500 to every request is stale at the staleness bound (`NoNewSegment`), and named
/// `HttpError` once ten failures in a row are confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_rendition_is_stale_at_the_bound_whatever_the_threshold() {
    let f = Fixture::start("threshold-bound", async |_| {}).await;
    kubectl_merge_patch(
        &f.ns,
        "clusteredstream",
        "event",
        r#"{"spec":{"health":{"failureThreshold":10}}}"#,
    );
    f.wait_healthy(EAST, true, DETECT).await;
    // Let the operator take the new policy in (it follows the ClusteredStream's watch).
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.sim
        .apply_fault(
            FaultRequest::new(FaultKind::Http500)
                .region(EAST)
                .stream(STREAM)
                .rendition("720p")
                .resource(ResourceFilter::Media),
        )
        .await
        .expect("fault applies");
    let stale = f.wait_healthy(EAST, false, DETECT).await;
    let cond = condition(&stale, "Stale");
    // Ten confirmed failures at one every half target duration take over 5 s; the bound is
    // 1.5 s after the last new segment.
    assert!(
        cond.reason == "NoNewSegment"
            || (cond.reason == "RenditionsStale" && cond.message.contains("no new segment")),
        "{}: {}",
        cond.reason,
        cond.message
    );
    assert!(cond.message.contains("bound 1.500 s"), "{}", cond.message);
    wait_for("Stale reason HttpError", DETECT, || async {
        let s = f.status(EAST).await?;
        let c = condition(&s, "Stale");
        (c.reason == "HttpError" || c.message.contains("HTTP 500")).then_some(())
    })
    .await;
}

/// A rendition whose playlist keeps advancing while its segments answer 404 is stale
/// (`SegmentUnavailable`), the other region stays healthy, and it recovers once the segments
/// are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_advancing_while_segments_404_are_stale() {
    let f = Fixture::start("segments-404", async |_| {}).await;
    f.wait_healthy(EAST, true, DETECT).await;
    f.wait_healthy(WEST, true, DETECT).await;
    let applied = f
        .sim
        .apply_fault(
            FaultRequest::new(FaultKind::Http404)
                .region(EAST)
                .stream(STREAM)
                .rendition("720p")
                .resource(ResourceFilter::Segment),
        )
        .await
        .expect("fault applies");
    // 720p's turn comes every 7 segments (7 playlists share the checks), then every segment
    // is checked until three in a row fail: about 10 s at a 1 s target duration.
    let stale = wait_for("Stale reason SegmentUnavailable", DETECT * 2, || async {
        let s = f.status(EAST).await?;
        let c = condition(&s, "Stale");
        (c.status == "True" && c.reason == "SegmentUnavailable").then_some(s)
    })
    .await;
    let cond = condition(&stale, "Stale");
    assert!(cond.message.contains("/720p/"), "{}", cond.message);
    assert!(cond.message.contains("HTTP 404"), "{}", cond.message);
    // Only 720p (its media and I-frame playlists share its segments) is stale; the playlist
    // itself is fresh all along.
    for r in stale.renditions.iter().filter(|r| !r.fresh) {
        assert!(r.uri.contains("/720p/"), "{r:?}");
    }
    let west = f.status(WEST).await.unwrap();
    assert_eq!(condition(&west, "Healthy").status, "True");

    f.sim.heal_fault(applied.id).await.expect("heals");
    let back = f.wait_healthy(EAST, true, RECOVER).await;
    assert!(back.renditions.iter().all(|r| r.fresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendition_detail_follows_the_stream_at_the_refresh_interval() {
    let f = Fixture::start("probe-refresh", async |_| {}).await;
    let first = f.wait_healthy(EAST, true, DETECT).await;
    let sequence = |s: &StreamInstanceStatus| {
        s.renditions
            .iter()
            .filter(|r| r.kind == "video")
            .filter_map(|r| r.media_sequence)
            .min()
    };
    let before = sequence(&first).expect("media sequences in status");
    // Nothing but the detail changes while healthy, so only the 2 s refresh (not the 30 s
    // default) can move it within a few target durations.
    wait_for(
        "rendition detail refreshed",
        Duration::from_secs(8),
        || async {
            let s = f.status(EAST).await?;
            (sequence(&s)? >= before + 2).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_rendition_is_stale() {
    rendition_fault_is_detected(
        "freeze",
        FaultRequest::new(FaultKind::Freeze),
        &["NoNewSegment"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendition_answering_404_is_stale() {
    rendition_fault_is_detected(
        "http404",
        FaultRequest::new(FaultKind::Http404),
        &["HttpError"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendition_answering_500_is_stale() {
    rendition_fault_is_detected(
        "http500",
        FaultRequest::new(FaultKind::Http500),
        &["HttpError"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendition_whose_connection_is_reset_is_stale() {
    rendition_fault_is_detected(
        "reset-conn",
        FaultRequest::new(FaultKind::Refuse),
        &["ConnectionFailed", "FetchFailed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendition_that_hangs_is_stale() {
    // Declared stale at the staleness bound even while the request is still hanging, then the
    // request times out.
    rendition_fault_is_detected(
        "hang",
        FaultRequest::new(FaultKind::Hang),
        &["NoNewSegment", "Timeout"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_sequence_going_backwards_is_stale() {
    rendition_fault_is_detected(
        "seqreset",
        FaultRequest::new(FaultKind::Reset),
        &["MediaSequenceReset"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_is_stale() {
    rendition_fault_is_detected(
        "truncate",
        FaultRequest::new(FaultKind::Truncate).params(FaultParams {
            mode: Some(TruncateMode::Abort),
            ..FaultParams::default()
        }),
        &["FetchFailed", "PlaylistUnparsable"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_body_is_stale() {
    rendition_fault_is_detected(
        "garbage",
        FaultRequest::new(FaultKind::Garbage),
        &["PlaylistUnparsable"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_stale() {
    rendition_fault_is_detected(
        "oversize",
        FaultRequest::new(FaultKind::Oversize).params(FaultParams {
            bytes: Some(8 << 20),
            ..FaultParams::default()
        }),
        &["PlaylistTooLarge"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_region_and_origin_down_at_start_up_are_stale() {
    let f = Fixture::start("refuse-region", async |sim| {
        // The whole us-east-1 origin refuses connections before the operator starts.
        sim.apply_fault(FaultRequest::new(FaultKind::Refuse).region(EAST))
            .await
            .expect("region refuses");
    })
    .await;
    let stale = f.wait_healthy(EAST, false, DETECT).await;
    let cond = condition(&stale, "Stale");
    assert_eq!(cond.reason, "MasterUnavailable", "{}", cond.message);
    assert!(cond.message.contains("connect"), "{}", cond.message);
    f.wait_healthy(WEST, true, DETECT).await;

    f.sim.heal_all().await;
    f.wait_healthy(EAST, true, RECOVER).await;

    // The cluster summary follows the instances.
    let clusters: Api<ClusteredStream> = Api::namespaced(f.client.clone(), &f.ns);
    wait_for("ClusteredStream Ready", DETECT, || async {
        let s = clusters.get("event").await.ok()?.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "True" && s.healthy_instances == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renditions_added_and_removed_mid_stream_are_followed() {
    let f = Fixture::start("renditions", async |_| {}).await;
    f.wait_healthy(EAST, true, DETECT).await;

    f.sim
        .update_renditions(
            STREAM,
            &RenditionUpdate {
                add: vec![serde_json::from_value(serde_json::json!("540p")).unwrap()],
                remove: vec![],
            },
        )
        .expect("rendition added");
    let s = wait_for("540p probed", RECOVER, || async {
        let s = f.status(EAST).await?;
        s.renditions
            .iter()
            .any(|r| r.uri.contains("/540p/index.m3u8"))
            .then_some(s)
    })
    .await;
    assert!(s.renditions.len() > 7, "{:?}", s.renditions);

    f.sim
        .update_renditions(
            STREAM,
            &RenditionUpdate {
                add: vec![],
                remove: vec!["360p".into()],
            },
        )
        .expect("rendition removed");
    wait_for("360p dropped", RECOVER, || async {
        let s = f.status(EAST).await?;
        (!s.renditions.iter().any(|r| r.uri.contains("/360p/"))).then_some(())
    })
    .await;
    // A removed rendition is not a stale one.
    let s = f.wait_healthy(EAST, true, DETECT).await;
    assert!(s.renditions.iter().all(|r| r.fresh), "{:?}", s.renditions);
}

/// One origin that holds every media request of an instance listing 3,000 playlists (the
/// operator's own limits are the only thing standing between it and the others), beside three
/// healthy instances: one on the same origin host, two on other hosts. The healthy ones stay
/// Healthy, with no transition at all, while the hanging one is reported stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_origin_with_thousands_of_playlists_costs_the_others_nothing() {
    const HOSTILE: &str = "ap-south-1";
    install_crds();
    let sim = Simulator::start(SimConfig {
        regions: vec![EAST.into(), WEST.into(), HOSTILE.into()],
        streams: 2,
        renditions: 3,
        audio_renditions: 1,
        // 2 s, not 1 s: the bound then leaves a second for a loaded machine's own stalls.
        target_duration: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    // s0002 lists 1,500 more variants, each with an I-frame playlist: 3,007 media playlists.
    let add = (0..1500)
        .map(|i| {
            serde_json::from_value(serde_json::json!({"name": format!("x{i:04}"), "height": 360}))
                .unwrap()
        })
        .collect();
    sim.update_renditions(
        "s0002",
        &RenditionUpdate {
            add,
            remove: vec![],
        },
    )
    .expect("renditions added");
    sim.apply_fault(
        FaultRequest::new(FaultKind::Hang)
            .region(HOSTILE)
            .stream("s0002")
            .resource(ResourceFilter::Media),
    )
    .await
    .expect("hang applies");

    let ns = namespace("hanging-origin");
    let mut manifest = String::from(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {name: cvs-state, region: us-east-1}\n---\napiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: hostile\nspec:\n  stateTable: {name: cvs-state, region: us-east-1}\n  health: {failureThreshold: 1}\n",
    );
    // The hostile instance is stale at its first confirmed failure: with the default
    // threshold (3 in a row per playlist), its 3,007 hanging playlists wait for their turns in
    // the instance's 16 permits (1.5 s each) between attempts, and the verdict would take
    // minutes (`starved`, by the operator's own limit). What this test is about is the others.
    let healthy = [(EAST, "s0001"), (WEST, "s0001"), (HOSTILE, "s0001")];
    for (i, (region, stream)) in healthy.iter().chain(&[(HOSTILE, "s0002")]).enumerate() {
        let cluster = if *stream == "s0002" {
            "hostile"
        } else {
            "event"
        };
        manifest.push_str(&format!(
            "---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {stream}-{region}\nspec:\n  clusteredStream: {cluster}\n  region: {region}\n  cloudfront: {{domain: h{i}.cloudfront.net}}\n  origin: {{url: \"{}\"}}\n",
            sim.master_url(region, stream).unwrap()
        ));
    }
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let operator = Operator::start_with(
        "hanging-origin",
        &ns,
        &[
            "--probe-timeout",
            "1500ms",
            "--status-refresh-interval",
            "2s",
            // Above the default of 500, so the 3,007 playlists are probed and hang.
            "--max-renditions-per-master",
            "5000",
        ],
    )
    .await
    .expect("operator starts");
    let instances: Api<StreamInstance> = Api::namespaced(client().await, &ns);
    let healthy_condition = |name: String| {
        let instances = instances.clone();
        async move {
            let s = instances.get(&name).await.ok()?.status?;
            s.conditions.into_iter().find(|c| c.type_ == "Healthy")
        }
    };
    let mut since = Vec::new();
    for (region, stream) in healthy {
        let name = format!("{stream}-{region}");
        let c = wait_for(&format!("{name} Healthy"), DETECT, || async {
            healthy_condition(name.clone())
                .await
                .filter(|c| c.status == "True")
        })
        .await;
        since.push((name, c.last_transition_time));
    }
    let hostile = format!("s0002-{HOSTILE}");
    wait_for("the hanging instance is stale", DETECT, || async {
        healthy_condition(hostile.clone())
            .await
            .filter(|c| c.status == "False")
    })
    .await;

    // 45 s of a hanging origin with 3,000 playlists: the others never change.
    let end = std::time::Instant::now() + Duration::from_secs(45);
    while std::time::Instant::now() < end {
        for (name, at) in &since {
            let c = healthy_condition(name.clone()).await.expect("status");
            assert!(
                c.status == "True" && c.last_transition_time == *at,
                "{name} flipped while another origin hung: {c:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, metrics) = operator.get("/metrics").await.expect("metrics");
    let counter = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        counter("cvs_probe_requests_total{playlist=\"media\",outcome=\"timeout\"}") > 0.0,
        "the hanging origin was never reached:\n{metrics}"
    );
    // A healthy-to-stale transition happened once (the hostile one), never a stale-to-healthy.
    assert_eq!(
        counter("cvs_health_transitions_total{to=\"stale\"}"),
        1.0,
        "{metrics}"
    );
}

/// Serves `router` on `ip`, port chosen by the system; returns `http://ip:port`.
async fn serve(ip: &str, router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Where the operator may connect, as a hostile tenant would test it: a rendition on another
/// host, a redirect to another host, the cloud metadata address, and credentials in URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stay_on_the_masters_host_and_secrets_stay_out_of_status() {
    use axum::response::Redirect;
    use axum::routing::get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    install_crds();
    let sim = Simulator::start(SimConfig {
        regions: vec![EAST.into()],
        streams: 1,
        renditions: 1,
        target_duration: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    // Another host (127.0.0.2) that counts every request reaching it.
    let reached = Arc::new(AtomicU64::new(0));
    let counter = reached.clone();
    let other = serve(
        "127.0.0.2",
        axum::Router::new().fallback(move || {
            let c = counter.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                "#EXTM3U\n"
            }
        }),
    )
    .await;
    let sim_media = sim.media_url(EAST, STREAM, "1080p").unwrap();
    let master = format!(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000000\nredirected.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=2000000\n{other}/elsewhere.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=3000000\nsigned.m3u8?token=tok3nVALUE&sig=s1gVALUE\n"
    );
    let origin = serve(
        "127.0.0.1",
        axum::Router::new()
            .route("/master.m3u8", get(move || async move { master }))
            .route(
                "/redirected.m3u8",
                get(move || async move { Redirect::temporary(&sim_media) }),
            )
            .route(
                "/signed.m3u8",
                get(|| async { (axum::http::StatusCode::FORBIDDEN, "no") }),
            ),
    )
    .await;
    let with_secret =
        origin.replace("http://", "http://alice:S3cretPass@") + "/master.m3u8?token=mAsterSECRET";
    let ns = namespace("destinations");
    let mut manifest = String::from(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {name: cvs-state, region: us-east-1}\n",
    );
    for (i, (name, url)) in [
        ("tenant", with_secret.as_str()),
        ("metadata", "http://169.254.169.254/latest/master.m3u8"),
    ]
    .iter()
    .enumerate()
    {
        manifest.push_str(&format!(
            "---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {name}\nspec:\n  clusteredStream: event\n  region: us-east-{n}\n  cloudfront: {{domain: dd{i}.cloudfront.net}}\n  origin: {{url: \"{url}\"}}\n",
            n = i + 1,
        ));
    }
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let operator = Operator::start_with(
        "destinations",
        &ns,
        &[
            "--probe-timeout",
            "1500ms",
            "--status-refresh-interval",
            "2s",
        ],
    )
    .await
    .expect("operator starts");
    let client = client().await;
    let instances: Api<StreamInstance> = Api::namespaced(client.clone(), &ns);
    let status = |name: &'static str| {
        let instances = instances.clone();
        async move { instances.get(name).await.ok()?.status }
    };

    // Every rendition of the tenant is refused or forbidden, none is fetched elsewhere.
    let s = wait_for("tenant renditions refused", DETECT, || async {
        let s = status("tenant").await?;
        let c = s.conditions.iter().find(|c| c.type_ == "Healthy")?;
        let refused = s
            .renditions
            .iter()
            .filter(|r| {
                r.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("destination refused"))
            })
            .count();
        (c.status == "False" && s.renditions.len() == 3 && refused == 2).then_some(s)
    })
    .await;
    let refused: Vec<_> = s
        .renditions
        .iter()
        .filter(|r| {
            r.last_error
                .as_deref()
                .is_some_and(|e| e.contains("destination refused"))
        })
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", s.renditions);
    assert!(
        refused.iter().any(|r| r.uri.contains("/redirected.m3u8")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|r| r.uri.contains("127.0.0.2")),
        "{refused:?}"
    );
    // Connections are checked again a few polls later: nothing ever reached the other host.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the other host was reached"
    );

    // The metadata address is refused even though this operator may probe loopback.
    let s = wait_for("metadata instance stale", DETECT, || async {
        let s = status("metadata").await?;
        let c = s.conditions.iter().find(|c| c.type_ == "Healthy")?;
        (c.status == "False").then_some(c.clone())
    })
    .await;
    assert_eq!(s.reason, "MasterUnavailable", "{}", s.message);
    assert!(s.message.contains("link-local"), "{}", s.message);

    // No secret from a URL in status, conditions, Events or the operator's log.
    let s = status("tenant").await.unwrap();
    let mut exposed = serde_json::to_string(&s).unwrap();
    for e in events_for(&client, &ns, "tenant").await {
        exposed.push_str(&serde_json::to_string(&e).unwrap());
    }
    assert!(exposed.contains("token=REDACTED"), "{exposed}");
    for secret in ["S3cretPass", "tok3nVALUE", "s1gVALUE", "mAsterSECRET"] {
        assert!(!exposed.contains(secret), "{secret} in {exposed}");
        assert!(
            !operator.log_text().contains(secret),
            "{secret} in the operator's log"
        );
    }

    // A host the ClusteredStream allows is probed: the other host is reached, and its rendition
    // is no longer refused.
    kubectl_ok(
        &[
            "patch",
            "-n",
            &ns,
            "clusteredstream",
            "event",
            "--type=merge",
            "-p",
            r#"{"spec":{"health":{"allowedHosts":["127.0.0.2"]}}}"#,
        ],
        None,
    );
    wait_for("the allowed host is probed", DETECT, || async {
        (reached.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    wait_for(
        "the allowed host's rendition no longer refused",
        DETECT,
        || async {
            let s = status("tenant").await?;
            let r = s.renditions.iter().find(|r| r.uri.contains("127.0.0.2"))?;
            (!r.last_error
                .as_deref()
                .is_some_and(|e| e.contains("destination refused")))
            .then_some(())
        },
    )
    .await;
}
