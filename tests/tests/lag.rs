//! Cross-region lag end to end: the HLS origin simulator serves two regions of one event (with
//! `EXT-X-PROGRAM-DATE-TIME`), one of them behind the other through the simulator's `lag`
//! fault; the operator runs as a process against the real API server and must report the
//! region behind by more than `spec.health.lag.maxSeconds` as `Lagging=True`, make it unhealthy
//! only when `spec.health.lag.unhealthy` says so, and leave a region within the limit alone.

use cvs_e2e::*;
use cvs_operator::resources::{ClusteredStream, StreamInstance, StreamInstanceStatus};
use hls_sim::api::{FaultKind, FaultParams, FaultRequest};
use hls_sim::{SimConfig, SimHandle, Simulator};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use std::time::Duration;

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const STREAM: &str = "s0001";
/// Generous bounds for a shared, noisy 2-core machine.
const DETECT: Duration = Duration::from_secs(30);

struct Fixture {
    sim: SimHandle,
    ns: String,
    instances: Api<StreamInstance>,
    clusters: Api<ClusteredStream>,
    client: kube::Client,
    operator: Operator,
    /// The id of the `lag` fault on us-west-1's region.
    lag_fault: u64,
}

impl Fixture {
    /// Two regions of one stream at a 1 s target duration, `eu-west-1` served `delay_ms`
    /// behind from the start, and the event applied with `lag` as `spec.health.lag`.
    async fn start(name: &str, delay_ms: u64, lag: &str) -> Fixture {
        Self::start_with(name, delay_ms, lag, true).await
    }

    /// [`Fixture::start`], with playlists dated by `EXT-X-PROGRAM-DATE-TIME` or not.
    async fn start_with(name: &str, delay_ms: u64, lag: &str, dated: bool) -> Fixture {
        install_crds();
        let sim = Simulator::start(SimConfig {
            regions: vec![EAST.into(), WEST.into()],
            streams: 1,
            renditions: 2,
            audio_renditions: 1,
            target_duration: Duration::from_secs(1),
            program_date_time: dated,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        // Behind from the start: a region falling behind while watched would first be seen
        // going backwards (a media-sequence reset), which is another verdict.
        let applied = sim
            .apply_fault(
                FaultRequest::new(FaultKind::Lag)
                    .region(WEST)
                    .params(FaultParams {
                        delay_ms: Some(delay_ms),
                        ..FaultParams::default()
                    }),
            )
            .await
            .expect("lag fault applies");
        let ns = namespace(name);
        let origins = [EAST, WEST].map(|r| (r, sim.master_url(r, STREAM).unwrap()));
        let manifest = probed_event_manifest(&format!("  health:\n    lag: {lag}\n"), &origins);
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
        let operator = Operator::start_with(
            name,
            &ns,
            &[&SHORT_PROBE_TIMEOUT[..], &PROBE_TEST_FLAGS].concat(),
        )
        .await
        .expect("operator starts");
        let client = client().await;
        Fixture {
            sim,
            instances: Api::namespaced(client.clone(), &ns),
            clusters: Api::namespaced(client.clone(), &ns),
            ns,
            client,
            operator,
            lag_fault: applied.id,
        }
    }

    async fn status(&self, region: &str) -> Option<StreamInstanceStatus> {
        instance_status(&self.instances, region).await
    }

    /// Waits until `region`'s condition `type_` has `status` (and, if given, `reason`).
    async fn wait_condition(
        &self,
        region: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        within: Duration,
    ) -> StreamInstanceStatus {
        let what = format!("{region} {type_}={status} {reason:?}");
        wait_for(&what, within, || async {
            let s = self.status(region).await?;
            let c = condition(&s, type_)?;
            (c.status == status && reason.is_none_or(|r| c.reason == r)).then_some(s)
        })
        .await
    }

    /// `cvs_instance_lag_seconds` of `region`'s instance.
    async fn lag_metric(&self, region: &str) -> Option<f64> {
        let (_, text) = self.operator.get("/metrics").await.ok()?;
        let instance = format!("instance=\"{}\"", instance_name(region));
        text.lines()
            .filter(|l| l.starts_with("cvs_instance_lag_seconds{") && l.contains(&instance))
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

fn condition<'a>(s: &'a StreamInstanceStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

/// A region 10 s behind with a 4 s limit is `Lagging=True`, the message giving the lag and
/// the leading region, `status.lagSeconds` and `cvs_instance_lag_seconds` the lag; with
/// `unhealthy: false` (the default) its health never changes. The leading region is not
/// lagging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_far_behind_is_lagging_and_only_reported_by_default() {
    let f = Fixture::start("lag-reported", 10_000, "{maxSeconds: 4}").await;
    let healthy = f
        .wait_condition(WEST, "Healthy", "True", None, DETECT)
        .await;
    let since = condition(&healthy, "Healthy")
        .unwrap()
        .last_transition_time
        .clone();
    let waited = std::time::Instant::now();
    let lagging = f
        .wait_condition(WEST, "Lagging", "True", Some("Lagging"), DETECT)
        .await;
    eprintln!("Lagging=True {:?} after Healthy=True", waited.elapsed());
    let c = condition(&lagging, "Lagging").unwrap();
    assert!(
        c.message
            .contains(&format!("s behind {}", instance_name(EAST)))
            && c.message.contains("EXT-X-PROGRAM-DATE-TIME")
            && c.message.contains("limit 4.0 s"),
        "{}",
        c.message
    );
    let lag: f64 = c
        .message
        .split(" s behind")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lag in {:?}", c.message));
    assert!((8.0..=12.0).contains(&lag), "{}", c.message);
    let seconds = lagging.lag_seconds.expect("status.lagSeconds");
    assert!((8.0..=12.0).contains(&seconds), "lagSeconds {seconds}");
    let metric = wait_for("cvs_instance_lag_seconds", DETECT, || f.lag_metric(WEST)).await;
    assert!((8.0..=12.0).contains(&metric), "metric {metric}");

    // Only reported: health and its transition time are untouched.
    let h = condition(&lagging, "Healthy").unwrap();
    assert_eq!(
        (h.status.as_str(), &h.last_transition_time),
        ("True", &since)
    );
    wait_for("Lagging Warning Event", DETECT, || async {
        events_for(&f.client, &f.ns, &instance_name(WEST))
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Lagging"))
    })
    .await;
    // The leader leads.
    let east = f
        .wait_condition(EAST, "Lagging", "False", Some("WithinLimit"), DETECT)
        .await;
    assert!(
        condition(&east, "Lagging")
            .unwrap()
            .message
            .starts_with("leading instance"),
        "{:?}",
        condition(&east, "Lagging")
    );
    assert_eq!(condition(&east, "Healthy").unwrap().status, "True");
    // A few more samples: still lagging, still healthy.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = f.status(WEST).await.unwrap();
    let l = condition(&later, "Lagging").unwrap();
    assert_eq!(l.status, "True", "{l:?} {:?}", f.status(EAST).await);
    let h = condition(&later, "Healthy").unwrap();
    assert_eq!(
        (h.status.as_str(), &h.last_transition_time),
        ("True", &since)
    );
}

/// With `unhealthy: true`, the region behind becomes `Healthy=False` with reason `Lagging`
/// (not stale: its playlists are fresh), counts as unhealthy for the ClusteredStream, and is
/// healthy again once it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_region_is_unhealthy_when_asked_and_recovers_when_it_catches_up() {
    let f = Fixture::start("lag-unhealthy", 10_000, "{maxSeconds: 4, unhealthy: true}").await;
    let unhealthy = f
        .wait_condition(WEST, "Healthy", "False", Some("Lagging"), DETECT)
        .await;
    let h = condition(&unhealthy, "Healthy").unwrap();
    assert!(h.message.contains(&instance_name(EAST)), "{}", h.message);
    assert_eq!(condition(&unhealthy, "Stale").unwrap().status, "False");
    assert_eq!(condition(&unhealthy, "Lagging").unwrap().status, "True");
    assert!(unhealthy.health_changed_at.is_some());
    let east = f
        .wait_condition(EAST, "Healthy", "True", None, DETECT)
        .await;
    assert_eq!(condition(&east, "Lagging").unwrap().status, "False");
    // The ClusteredStream counts it as any unhealthy instance.
    wait_for(
        "ClusteredStream sees one healthy instance",
        DETECT,
        || async {
            let cs = f.clusters.get("event").await.ok()?;
            (cs.status?.healthy_instances == 1).then_some(())
        },
    )
    .await;

    // The region catches up: healthy again, not lagging.
    f.sim.heal_fault(f.lag_fault).await.expect("heals");
    let healed = std::time::Instant::now();
    let back = f
        .wait_condition(WEST, "Healthy", "True", None, DETECT)
        .await;
    eprintln!(
        "Healthy=True {:?} after the lag was removed",
        healed.elapsed()
    );
    let lagging = condition(&back, "Lagging").unwrap();
    assert_eq!(lagging.status, "False", "{lagging:?}");
    assert!(
        back.lag_seconds.is_some_and(|s| s < 3.0),
        "{:?}",
        back.lag_seconds
    );
    wait_for(
        "ClusteredStream sees two healthy instances",
        DETECT,
        || async {
            let cs = f.clusters.get("event").await.ok()?;
            (cs.status?.healthy_instances == 2).then_some(())
        },
    )
    .await;
}

/// A region 2 s behind with a 6 s limit is compared (its lag is in status) but never gets
/// `Lagging=True`, and stays healthy even with `unhealthy: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_within_the_limit_never_lags() {
    let f = Fixture::start("lag-within", 2_000, "{maxSeconds: 6, unhealthy: true}").await;
    let compared = f
        .wait_condition(WEST, "Lagging", "False", Some("WithinLimit"), DETECT)
        .await;
    let seconds = compared.lag_seconds.expect("status.lagSeconds");
    assert!((0.5..=4.0).contains(&seconds), "lagSeconds {seconds}");
    // Watch it for a while (the 2 s status refresh shows the lag of the moment): never
    // lagging, never unhealthy.
    let mut samples = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < end {
        let s = f.status(WEST).await.unwrap();
        let l = condition(&s, "Lagging").unwrap();
        assert_ne!(l.status, "True", "{l:?}");
        let h = condition(&s, "Healthy").unwrap();
        assert_eq!(h.status, "True", "{h:?}");
        samples.push((s.lag_seconds, l.reason.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Compared all along (a sample missing on a loaded machine is no verdict, never a lag).
    assert!(
        samples.iter().all(|(s, _)| s.is_none_or(|s| s < 6.0))
            && samples.iter().filter(|(s, _)| s.is_some()).count() * 2 > samples.len(),
        "{samples:?} {:?}",
        f.status(EAST).await
    );
}

/// Playlists without `EXT-X-PROGRAM-DATE-TIME`: media sequence numbers of independent packagers
/// mean nothing to each other, so a region 10 s behind gets no verdict (`Lagging=Unknown`,
/// reason `NoCommonClock`) and stays healthy; once the ClusteredStream declares that the
/// regions share a media-sequence clock, it is compared by media sequence and lagging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_program_date_time_lag_is_judged_only_on_a_shared_media_sequence() {
    let f = Fixture::start_with(
        "lag-undated",
        10_000,
        "{maxSeconds: 4, unhealthy: true}",
        false,
    )
    .await;
    let unknown = f
        .wait_condition(WEST, "Lagging", "Unknown", Some("NoCommonClock"), DETECT)
        .await;
    let c = condition(&unknown, "Lagging").unwrap();
    assert!(c.message.contains("sharedMediaSequence"), "{}", c.message);
    assert_eq!(unknown.lag_seconds, None);
    f.wait_condition(WEST, "Healthy", "True", None, DETECT)
        .await;
    // A few more samples: still no verdict, still healthy.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = f.status(WEST).await.unwrap();
    assert_eq!(condition(&later, "Lagging").unwrap().status, "Unknown");
    assert_eq!(condition(&later, "Healthy").unwrap().status, "True");

    kubectl_merge_patch(
        &f.ns,
        "clusteredstream",
        "event",
        r#"{"spec":{"health":{"lag":{"sharedMediaSequence":true}}}}"#,
    );
    let lagging = f
        .wait_condition(WEST, "Healthy", "False", Some("Lagging"), DETECT)
        .await;
    let c = condition(&lagging, "Lagging").unwrap();
    assert_eq!(c.status, "True");
    assert!(
        c.message.contains(&format!(
            "s behind {} by media sequence",
            instance_name(EAST)
        )),
        "{}",
        c.message
    );
    let seconds = lagging.lag_seconds.expect("status.lagSeconds");
    assert!((8.0..=12.0).contains(&seconds), "lagSeconds {seconds}");
}

/// A stale leader never makes the others lag: when the leading region freezes, the region
/// behind it (unhealthy for lagging, with `unhealthy: true`) has nothing fresh to compare with,
/// so it is healthy again once its lag verdict has held for 3 target durations
/// (`Lagging=Unknown`, reason `NoPeer`), while the frozen region is stale, not lagging. A
/// region behind is better than none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_makes_nobody_lag() {
    // A minute behind: were the frozen leader still compared, its last edge would stay ahead
    // of this region's for a minute, far longer than the waits below.
    let f = Fixture::start(
        "lag-leader-frozen",
        60_000,
        "{maxSeconds: 4, unhealthy: true}",
    )
    .await;
    f.wait_condition(WEST, "Healthy", "False", Some("Lagging"), DETECT)
        .await;
    f.sim
        .apply_fault(FaultRequest::new(FaultKind::Freeze).region(EAST))
        .await
        .expect("freeze applies");
    let stale = f
        .wait_condition(EAST, "Healthy", "False", None, DETECT)
        .await;
    assert_eq!(condition(&stale, "Stale").unwrap().status, "True");
    let east_lag = condition(&stale, "Lagging").unwrap();
    assert_ne!(east_lag.status, "True", "{east_lag:?}");
    let back = f
        .wait_condition(WEST, "Healthy", "True", None, DETECT)
        .await;
    let l = condition(&back, "Lagging").unwrap();
    assert_eq!(
        (l.status.as_str(), l.reason.as_str()),
        ("Unknown", "NoPeer"),
        "{l:?}"
    );
    assert_eq!(back.lag_seconds, None);
    // It stays so while the leader is frozen.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = f.status(WEST).await.unwrap();
    assert_eq!(condition(&later, "Healthy").unwrap().status, "True");
    assert_ne!(condition(&later, "Lagging").unwrap().status, "True");
}
