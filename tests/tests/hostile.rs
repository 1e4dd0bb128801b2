//! Hostile playlists end to end: the HLS origin simulator serves playlists past each of the
//! operator's limits (segments, line length, variants, body size of media and master
//! playlists, a body that does not end), the operator runs as a process against the real API
//! server, and each instance must show its own reason in status while the others (a plain
//! stream, and a legitimate 6-hour EVENT playlist of 10,800 segments) stay healthy without a
//! single transition, and the operator never restarts a probe.

use cvs_e2e::*;
use cvs_operator::resources::{StreamInstance, StreamInstanceStatus};
use hls_sim::api::{FaultKind, FaultParams, FaultRequest, ResourceFilter};
use hls_sim::{SimConfig, Simulator};
use kube::api::Api;
use std::time::Duration;

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
/// Generous bounds for a shared, noisy 2-core machine.
const DETECT: Duration = Duration::from_secs(40);
const TD_MS: u64 = 2_000;

fn condition<'a>(
    s: &'a StreamInstanceStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_playlist_is_refused_with_its_reason_and_costs_the_others_nothing() {
    install_crds();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let sim = Simulator::start(SimConfig {
        regions: vec![EAST.into(), WEST.into()],
        streams: 7,
        renditions: 1,
        audio_renditions: 1,
        target_duration: Duration::from_millis(TD_MS),
        // 31,000 segments published already, so a window can list 30,000.
        start_unix_ms: Some(now_ms - 31_000 * TD_MS),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let fault = |kind, stream: &str, resource, params| {
        FaultRequest::new(kind)
            .region(EAST)
            .stream(stream)
            .resource(resource)
            .params(params)
    };
    let faults = [
        // s0001: none, the control. s0002: a legitimate 6-hour EVENT playlist.
        fault(
            FaultKind::LongWindow,
            "s0002",
            ResourceFilter::Media,
            FaultParams {
                entries: Some(10_800),
                ..Default::default()
            },
        ),
        // Past the 25,000 segments of the default.
        fault(
            FaultKind::LongWindow,
            "s0003",
            ResourceFilter::Media,
            FaultParams {
                entries: Some(30_000),
                ..Default::default()
            },
        ),
        // Past the 32 KiB line of the default.
        fault(
            FaultKind::LongLine,
            "s0004",
            ResourceFilter::Media,
            FaultParams {
                bytes: Some(100_000),
                ..Default::default()
            },
        ),
        // Past the 500 renditions of the default.
        fault(
            FaultKind::ManyVariants,
            "s0005",
            ResourceFilter::Master,
            FaultParams {
                entries: Some(3_000),
                ..Default::default()
            },
        ),
        // A media playlist body that does not end (16 GiB, no Content-Length).
        fault(
            FaultKind::Oversize,
            "s0006",
            ResourceFilter::Media,
            FaultParams {
                bytes: Some(16 << 30),
                chunked: Some(true),
                ..Default::default()
            },
        ),
        // A 1 MiB master: under the media limit (2 MiB), over the master's (512 KiB).
        fault(
            FaultKind::Oversize,
            "s0007",
            ResourceFilter::Master,
            FaultParams {
                bytes: Some(1 << 20),
                chunked: Some(true),
                ..Default::default()
            },
        ),
    ];
    for f in faults {
        sim.apply_fault(f).await.expect("fault applies");
    }

    let ns = namespace("hostile");
    let mut manifest = String::new();
    let mut instances = vec![("s0001".to_owned(), WEST)];
    instances.extend((1..=7).map(|i| (format!("s{i:04}"), EAST)));
    for (i, (stream, region)) in instances.iter().enumerate() {
        manifest.push_str(&format!(
            "---\napiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: c{i}\nspec:\n  stateTable: {{name: cvs-state, region: us-east-1}}\n---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {stream}-{region}\nspec:\n  clusteredStream: c{i}\n  region: {region}\n  cloudfront: {{domain: h{i}.cloudfront.net}}\n  origin: {{url: \"{}\"}}\n",
            sim.master_url(region, stream).unwrap()
        ));
    }
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let operator = Operator::start_with(
        "hostile",
        &ns,
        &["--probe-timeout", "3s", "--status-refresh-interval", "2s"],
    )
    .await
    .expect("operator starts");
    let api: Api<StreamInstance> = Api::namespaced(client().await, &ns);
    let status = |name: String| {
        let api = api.clone();
        async move { api.get(&name).await.ok()?.status }
    };

    // The healthy ones, the 10,800-segment EVENT playlist among them.
    let mut since = Vec::new();
    for name in [
        format!("s0001-{WEST}"),
        format!("s0001-{EAST}"),
        format!("s0002-{EAST}"),
    ] {
        let s = wait_for(&format!("{name} Healthy"), DETECT, || async {
            let s = status(name.clone()).await?;
            (condition(&s, "Healthy")?.status == "True").then_some(s)
        })
        .await;
        let healthy = condition(&s, "Healthy").unwrap();
        since.push((name, healthy.last_transition_time.clone()));
    }

    // Each hostile one, with its reason and a message giving the numbers.
    let expected = [
        (
            "s0003",
            "TooManySegments",
            "lists 30000 segments, more than the limit of 25000",
        ),
        (
            "s0004",
            "PlaylistLineTooLong",
            "a line longer than 32768 bytes",
        ),
        (
            "s0005",
            "TooManyRenditions",
            "lists 3003 media playlists, more than the 500",
        ),
        ("s0006", "PlaylistTooLarge", "larger than 2097152 bytes"),
        ("s0007", "MasterTooLarge", "larger than 524288 bytes"),
    ];
    for (stream, reason, message) in expected {
        let name = format!("{stream}-{EAST}");
        let s = wait_for(&format!("{name} Stale {reason}"), DETECT, || async {
            let s = status(name.clone()).await?;
            let stale = condition(&s, "Stale")?;
            (stale.status == "True" && stale.reason == reason).then_some(s)
        })
        .await;
        let stale = condition(&s, "Stale").unwrap();
        assert!(
            stale.message.contains(message),
            "{name}: {:?} does not say {message:?}",
            stale.message
        );
        assert_eq!(condition(&s, "Healthy").unwrap().status, "False", "{name}");
    }

    // A while later: the healthy ones never flipped, the hostile ones keep their reasons, and
    // no probe task ever panicked.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for (name, at) in since {
        let s = status(name.clone()).await.expect("status");
        let healthy = condition(&s, "Healthy").unwrap();
        assert_eq!(healthy.status, "True", "{name}: {}", healthy.message);
        assert_eq!(healthy.last_transition_time, at, "{name} flipped");
    }
    let event = status(format!("s0002-{EAST}")).await.unwrap();
    assert!(
        event.renditions.iter().all(|r| r.fresh),
        "{:?}",
        event.renditions
    );
    assert_eq!(
        operator.metric("cvs_probe_task_restarts_total").await,
        Some(0.0)
    );
    sim.shutdown().await;
}
