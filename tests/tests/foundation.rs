//! Foundation: the CRDs install, validation refuses bad manifests with a message naming the
//! field, the operator sets status on the example and stops cleanly on SIGTERM.

use cvs_e2e::*;
use cvs_operator::resources::{ClusteredStream, StreamInstance};
use kube::api::{Api, ListParams};
use std::time::Duration;

const STATUS_WAIT: Duration = Duration::from_secs(20);

fn example() -> String {
    std::fs::read_to_string(repo_root().join("manifests/example.yaml")).unwrap()
}

#[tokio::test]
async fn crds_install_and_are_documented() {
    install_crds();
    let explain = kubectl_eventually(
        &["explain", "streaminstance.spec.distroOpen"],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        explain.contains("players move to another region"),
        "{explain}"
    );
    let explain = kubectl_eventually(
        &["explain", "clusteredstream.spec.health.stalenessMultiplier"],
        Duration::from_secs(30),
    )
    .await;
    assert!(explain.contains("1.5"), "{explain}");

    let resources = kubectl_ok(
        &["api-resources", "--api-group=cvs.dev", "-o", "wide"],
        None,
    );
    assert!(
        resources.contains("cstream") && resources.contains("sinst"),
        "{resources}"
    );
    assert!(resources.contains("cvs"), "category missing: {resources}");
}

#[tokio::test]
async fn example_manifest_is_accepted_and_listed_by_category() {
    install_crds();
    let ns = namespace("example");
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&example()));
    let listed = kubectl_ok(&["get", "cvs", "-n", &ns, "-o", "name"], None);
    assert!(
        listed.contains("clusteredstream.cvs.dev/live-event"),
        "{listed}"
    );
    assert!(
        listed.contains("streaminstance.cvs.dev/live-event-us-east-1"),
        "{listed}"
    );
    // Server-side defaults are filled in.
    let multiplier = kubectl_ok(
        &[
            "get",
            "cstream",
            "live-event",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.health.recoveryUpdates}",
        ],
        None,
    );
    assert_eq!(multiplier, "2");
}

/// A manifest built from `base` with one edit, expected to be refused naming `field` and
/// containing `message`.
struct Invalid {
    what: &'static str,
    manifest: String,
    field: &'static str,
    message: &'static str,
}

fn cluster_manifest(spec: &str) -> String {
    format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: bad\nspec:\n{spec}"
    )
}

const TABLE: &str = "  stateTable: {name: cvs-state, region: us-east-1}\n";

fn instance_manifest(region: &str, domain: &str, url: &str) -> String {
    format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: bad\nspec:\n  clusteredStream: live-event\n  region: {region}\n  cloudfront: {{domain: \"{domain}\"}}\n  origin: {{url: \"{url}\"}}\n"
    )
}

fn invalid_manifests() -> Vec<Invalid> {
    let good_url = "https://origin.example.com/master.m3u8";
    vec![
        Invalid {
            what: "region in upper case",
            manifest: instance_manifest("US-EAST-1", "d1.cloudfront.net", good_url),
            field: "spec.region",
            message: "should match",
        },
        Invalid {
            what: "origin URL with an ftp scheme",
            manifest: instance_manifest("us-east-1", "d1.cloudfront.net", "ftp://origin.example.com/master.m3u8"),
            field: "spec.origin.url",
            message: "must be an absolute http:// or https:// URL",
        },
        Invalid {
            what: "origin URL that is not a URL",
            manifest: instance_manifest("us-east-1", "d1.cloudfront.net", "not a url"),
            field: "spec.origin.url",
            message: "must be an absolute http:// or https:// URL",
        },
        Invalid {
            what: "CloudFront domain with an underscore",
            manifest: instance_manifest("us-east-1", "bad_domain.cloudfront.net", good_url),
            field: "spec.cloudfront.domain",
            message: "should match",
        },
        Invalid {
            what: "StreamInstance without cloudfront",
            manifest: "apiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: bad\nspec:\n  clusteredStream: live-event\n  region: us-east-1\n  origin: {url: \"https://o.example.com/m.m3u8\"}\n".into(),
            field: "spec.cloudfront",
            message: "Required value",
        },
        Invalid {
            what: "staleness multiplier of 1",
            manifest: cluster_manifest(&format!("{TABLE}  health: {{stalenessMultiplier: 1}}\n")),
            field: "spec.health.stalenessMultiplier",
            message: "must be greater than 1",
        },
        Invalid {
            what: "staleness multiplier of 20",
            manifest: cluster_manifest(&format!("{TABLE}  health: {{stalenessMultiplier: 20}}\n")),
            field: "spec.health.stalenessMultiplier",
            message: "less than or equal to 10",
        },
        Invalid {
            what: "lag limit of 1 s",
            manifest: cluster_manifest(&format!("{TABLE}  health: {{lag: {{maxSeconds: 1}}}}\n")),
            field: "spec.health.lag.maxSeconds",
            message: "greater than or equal to 2",
        },
        Invalid {
            what: "lag limit of an hour",
            manifest: cluster_manifest(&format!("{TABLE}  health: {{lag: {{maxSeconds: 3600}}}}\n")),
            field: "spec.health.lag.maxSeconds",
            message: "less than or equal to 600",
        },
        Invalid {
            what: "minOpen of 0",
            manifest: cluster_manifest(&format!("{TABLE}  minOpen: 0\n")),
            field: "spec.minOpen",
            message: "greater than or equal to 1",
        },
        Invalid {
            what: "unknown failover mode",
            manifest: cluster_manifest(&format!("{TABLE}  failover: {{mode: Sometimes}}\n")),
            field: "spec.failover.mode",
            message: "Unsupported value",
        },
        Invalid {
            what: "steering enabled without a server URI",
            manifest: cluster_manifest(&format!("{TABLE}  steering: {{enabled: true}}\n")),
            field: "spec.steering",
            message: "serverUri is required when steering is enabled",
        },
        Invalid {
            what: "copilot enabled without a role",
            manifest: cluster_manifest(&format!("{TABLE}  copilot: {{enabled: true}}\n")),
            field: "spec.copilot",
            message: "roleArn is required when the copilot is enabled",
        },
        Invalid {
            what: "replica regions on a table the operator does not create",
            manifest: cluster_manifest(
                "  stateTable: {name: cvs-state, region: us-east-1, replicaRegions: [eu-west-1]}\n",
            ),
            field: "spec.stateTable",
            message: "replicaRegions can only be set when create is true",
        },
        Invalid {
            what: "a replica in the table's own region",
            manifest: cluster_manifest(
                "  stateTable: {name: cvs-state, region: us-east-1, create: true, replicaRegions: [us-east-1]}\n",
            ),
            field: "spec.stateTable",
            message: "must not contain the table's own region",
        },
        Invalid {
            what: "SNS topic that is not an ARN",
            manifest: cluster_manifest(&format!("{TABLE}  notifications: {{snsTopicArn: my-topic}}\n")),
            field: "spec.notifications.snsTopicArn",
            message: "should match",
        },
        Invalid {
            what: "two playlist targets in one region",
            manifest: cluster_manifest(&format!(
                "{TABLE}  playlist:\n    targets:\n    - {{region: us-east-1, bucket: b-one, key: a.m3u8}}\n    - {{region: us-east-1, bucket: b-two, key: b.m3u8}}\n"
            )),
            field: "spec.playlist.targets[1]",
            message: "Duplicate value",
        },
        Invalid {
            what: "playlist key with a leading slash",
            manifest: cluster_manifest(&format!(
                "{TABLE}  playlist:\n    targets:\n    - {{region: us-east-1, bucket: b-one, key: /a.m3u8}}\n"
            )),
            field: "spec.playlist.targets[0].key",
            message: "key must not start with '/'",
        },
    ]
}

#[tokio::test]
async fn invalid_manifests_are_refused_naming_the_field() {
    install_crds();
    let ns = namespace("invalid");
    let cases = invalid_manifests();
    assert!(cases.len() >= 8);
    for case in cases {
        let out = kubectl(&["create", "-n", &ns, "-f", "-"], Some(&case.manifest));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: was accepted", case.what);
        assert!(
            stderr.contains(case.field) && stderr.contains(case.message),
            "{}: expected {:?} and {:?} in: {stderr}",
            case.what,
            case.field,
            case.message
        );
    }
    // Nothing invalid was stored.
    let left = kubectl_ok(&["get", "cvs", "-n", &ns, "-o", "name"], None);
    assert!(left.trim().is_empty(), "{left}");
}

#[tokio::test]
async fn immutable_fields_are_refused_on_update() {
    install_crds();
    let ns = namespace("immutable");
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&example()));
    for (patch, message) in [
        (
            r#"{"spec":{"clusteredStream":"other"}}"#,
            "clusteredStream is immutable",
        ),
        (
            r#"{"spec":{"cloudfront":{"domain":"other.cloudfront.net"}}}"#,
            "cloudfront.domain is immutable",
        ),
    ] {
        let out = kubectl(
            &[
                "patch",
                "streaminstance",
                "live-event-us-east-1",
                "-n",
                &ns,
                "--type",
                "merge",
                "-p",
                patch,
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(message),
            "{patch}: {stderr}"
        );
    }
    // distroOpen is meant to be patched.
    kubectl_merge_patch(
        &ns,
        "streaminstance",
        "live-event-us-east-1",
        r#"{"spec":{"distroOpen":false}}"#,
    );
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[tokio::test]
async fn operator_sets_status_and_stops_cleanly() {
    install_crds();
    let ns = namespace("operator");
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&example()));
    let operator = Operator::start("foundation", &ns)
        .await
        .expect("operator starts");
    let client = client().await;
    let clusters: Api<ClusteredStream> = Api::namespaced(client.clone(), &ns);
    let instances: Api<StreamInstance> = Api::namespaced(client.clone(), &ns);

    // Status on every example object within seconds.
    let status = wait_for("ClusteredStream status", STATUS_WAIT, || async {
        let c = clusters.get("live-event").await.ok()?;
        let s = c.status?;
        (s.observed_generation == c.metadata.generation
            && s.total_instances == 2
            && s.open_instances == 2)
            .then_some(s)
    })
    .await;
    let ready = condition(&status.conditions, "Ready").expect("Ready condition");
    // The example's origins are not reachable from a test machine, so the event is never Ready.
    assert_ne!(ready.status, "True", "{ready:?}");
    assert!(!ready.reason.is_empty() && !ready.message.is_empty());
    for name in ["live-event-us-east-1", "live-event-eu-west-1"] {
        let i = wait_for("StreamInstance status", STATUS_WAIT, || async {
            let i = instances.get(name).await.ok()?;
            let s = i.status.as_ref()?;
            (s.observed_generation == i.metadata.generation && s.open == Some(true)).then_some(i)
        })
        .await;
        let s = i.status.unwrap();
        let open = condition(&s.conditions, "Open").expect("Open condition");
        assert_eq!(
            (open.status.as_str(), open.reason.as_str()),
            ("True", "DesiredOpen")
        );
        assert!(condition(&s.conditions, "Healthy").is_some());
    }

    // Closing one region by patch reaches its status, with an Event.
    let patch_closed = |name: &str| {
        kubectl_merge_patch(
            &ns,
            "streaminstance",
            name,
            r#"{"spec":{"distroOpen":false}}"#,
        )
    };
    patch_closed("live-event-eu-west-1");
    wait_for("eu-west-1 closed", STATUS_WAIT, || async {
        let s = instances.get("live-event-eu-west-1").await.ok()?.status?;
        (s.open == Some(false)).then_some(())
    })
    .await;
    let open_time_before = {
        let s = instances
            .get("live-event-us-east-1")
            .await
            .unwrap()
            .status
            .unwrap();
        condition(&s.conditions, "Open")
            .unwrap()
            .last_transition_time
            .clone()
    };

    // Closing the last open region is refused: it stays open, and says why.
    patch_closed("live-event-us-east-1");
    let s = wait_for("us-east-1 held open", STATUS_WAIT, || async {
        let s = instances.get("live-event-us-east-1").await.ok()?.status?;
        let c = condition(&s.conditions, "Open")?;
        (c.reason == "HeldOpenForMinOpen").then_some(s)
    })
    .await;
    assert_eq!(s.open, Some(true));
    let open = condition(&s.conditions, "Open").unwrap();
    assert_eq!(open.status, "True");
    assert!(open.message.contains("minOpen 1"), "{}", open.message);
    assert_eq!(
        open.last_transition_time, open_time_before,
        "status did not flip, so the time stays"
    );
    wait_for("CloseRefused Warning Event", STATUS_WAIT, || async {
        events_for(&client, &ns, "live-event-us-east-1")
            .await
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("CloseRefused") && e.type_.as_deref() == Some("Warning")
            })
    })
    .await;
    let described = kubectl_ok(
        &[
            "describe",
            "streaminstance",
            "live-event-us-east-1",
            "-n",
            &ns,
        ],
        None,
    );
    assert!(described.contains("CloseRefused"), "{described}");
    // Events are sent in the background, after the status writes that caused them.
    wait_for("Closed Event", STATUS_WAIT, || async {
        events_for(&client, &ns, "live-event-eu-west-1")
            .await
            .iter()
            .any(|e| e.reason.as_deref() == Some("Closed"))
            .then_some(())
    })
    .await;

    // An instance whose ClusteredStream does not exist says so.
    let orphan = "apiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: orphan\nspec:\n  clusteredStream: no-such-stream\n  region: us-west-2\n  cloudfront: {domain: d3orphan.cloudfront.net}\n  origin: {url: \"https://o.example.com/m.m3u8\"}\n";
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(orphan));
    wait_for("orphan condition", STATUS_WAIT, || async {
        let s = instances.get("orphan").await.ok()?.status?;
        let c = condition(&s.conditions, "Bound")?;
        (c.status == "False" && c.reason == "ClusteredStreamNotFound").then_some(())
    })
    .await;

    // The operator never writes spec: every manager other than kubectl touches status only.
    for i in instances.list(&ListParams::default()).await.unwrap() {
        for mf in i.metadata.managed_fields.unwrap_or_default() {
            let manager = mf.manager.unwrap_or_default();
            if manager.starts_with("cvs-operator") {
                assert_eq!(
                    mf.subresource.as_deref(),
                    Some("status"),
                    "{manager} wrote outside status"
                );
            }
        }
        assert!(!i.spec.distro_open || i.metadata.name.as_deref() == Some("orphan"));
    }

    // Health and metrics endpoints.
    assert_eq!(operator.get("/healthz").await.unwrap().0, 200);
    assert_eq!(operator.get("/readyz").await.unwrap().0, 200);
    let (code, metrics) = operator.get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("cvs_reconciliations_total{controller=\"cluster\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("cvs_status_writes_total"), "{metrics}");
    // The binary allocates through jemalloc, so its heap is reported: what it holds is more
    // than nothing and no more than what the allocator has resident.
    let allocated = operator.metric("cvs_heap_allocated_bytes").await;
    let resident = operator.metric("cvs_heap_resident_bytes").await;
    match (allocated, resident) {
        (Some(a), Some(r)) => assert!(a > 1e6 && a <= r, "allocated {a}, resident {r}"),
        _ => panic!("no heap figures on /metrics:\n{metrics}"),
    }

    // SIGTERM: a clean exit, promptly.
    let log = operator.log.clone();
    let code = operator
        .terminate(Duration::from_secs(15))
        .await
        .expect("exits on SIGTERM");
    let text = std::fs::read_to_string(log).unwrap();
    assert_eq!(code, Some(0), "exit code; log:\n{text}");
    assert!(text.contains("stopped cleanly"), "{text}");
}

/// One observation: the Healthy condition's status, reason and lastTransitionTime, and
/// `healthChangedAt`.
type Seen = (String, String, String, Option<String>);

/// Every Healthy condition and `healthChangedAt` that the API server ever showed for one
/// StreamInstance while this runs, from a real watch.
struct HealthHistory {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthHistory {
    fn watch(instances: &Api<StreamInstance>, name: &str) -> Self {
        use futures::StreamExt;
        let seen: std::sync::Arc<std::sync::Mutex<Vec<_>>> = Default::default();
        let (api, into) = (instances.clone(), seen.clone());
        let config =
            kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut events = kube::runtime::watcher(api, config).boxed();
            while let Some(event) = events.next().await {
                let (kube::runtime::watcher::Event::Apply(i)
                | kube::runtime::watcher::Event::InitApply(i)) = (match event {
                    Ok(e) => e,
                    Err(_) => continue,
                })
                else {
                    continue;
                };
                let Some(s) = i.status else { continue };
                if let Some(c) = condition(&s.conditions, "Healthy") {
                    into.lock().unwrap().push((
                        c.status.clone(),
                        c.reason.clone(),
                        c.last_transition_time.0.to_string(),
                        s.health_changed_at.clone(),
                    ));
                }
            }
        });
        Self { seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HealthHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A restart changes nothing that was true before it: an instance that is stale when the
/// operator is killed stays Healthy=False through the restart (never Unknown/AwaitingProbe),
/// with the same lastTransitionTime and healthChangedAt, until the probe judges it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_stale_keeps_the_recorded_verdict() {
    use hls_sim::api::{FaultKind, FaultRequest};
    install_crds();
    let sim = hls_sim::Simulator::start(hls_sim::SimConfig {
        regions: vec!["us-east-1".into()],
        streams: 1,
        renditions: 2,
        audio_renditions: 1,
        target_duration: Duration::from_secs(1),
        ..hls_sim::SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let ns = namespace("restart-stale");
    let manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: cvs-state, region: us-east-1}}\n---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: east\nspec:\n  clusteredStream: event\n  region: us-east-1\n  cloudfront: {{domain: d-restart.cloudfront.net}}\n  origin: {{url: \"{}\"}}\n",
        sim.master_url("us-east-1", "s0001").unwrap()
    );
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let args = [
        "--probe-timeout",
        "1500ms",
        "--rediscover-interval",
        "1s",
        "--status-refresh-interval",
        "2s",
    ];
    let operator = Operator::start_with("restart-stale", &ns, &args)
        .await
        .expect("operator starts");
    let client = client().await;
    let instances: Api<StreamInstance> = Api::namespaced(client.clone(), &ns);
    let healthy_is = |want: &'static str| {
        let instances = instances.clone();
        move || {
            let instances = instances.clone();
            async move {
                let s = instances.get("east").await.ok()?.status?;
                let c = condition(&s.conditions, "Healthy")?;
                (c.status == want).then_some(s)
            }
        }
    };
    let healthy = wait_for("Healthy=True", Duration::from_secs(30), healthy_is("True")).await;
    assert!(healthy.health_changed_at.is_some(), "{healthy:?}");
    sim.apply_fault(FaultRequest::new(FaultKind::Freeze))
        .await
        .expect("freeze");
    let stale = wait_for(
        "Healthy=False",
        Duration::from_secs(30),
        healthy_is("False"),
    )
    .await;
    let changed_at = stale.health_changed_at.clone().expect("healthChangedAt");
    assert!(
        changed_at.ends_with('Z') && changed_at.contains('.') && changed_at.len() == 24,
        "RFC 3339 with milliseconds: {changed_at}"
    );
    assert_ne!(Some(&changed_at), healthy.health_changed_at.as_ref());
    let before = condition(&stale.conditions, "Healthy").unwrap().clone();

    let history = HealthHistory::watch(&instances, "east");
    operator.kill();
    let operator = Operator::start_with("restart-stale", &ns, &args)
        .await
        .expect("operator restarts");
    // Until the new process has judged the instance again, and a few status refreshes after.
    wait_for(
        "the restarted operator's first verdict",
        Duration::from_secs(30),
        || async {
            let log = operator.log_text();
            (log.matches("operator is ready").count() >= 2
                && log
                    .rsplit("operator is ready")
                    .next()
                    .is_some_and(|after| after.contains("instance health changed")))
            .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;

    let seen = history.seen();
    eprintln!("Healthy across the restart: {seen:?}");
    assert!(!seen.is_empty(), "the watch saw the instance");
    assert!(
        seen.iter()
            .all(|(status, reason, _, _)| status != "Unknown" && reason != "AwaitingProbe"),
        "Healthy went through Unknown across the restart: {seen:?}"
    );
    // The verdict after the restart is the same (the origin is still frozen): nothing moved.
    let now = instances.get("east").await.unwrap().status.unwrap();
    let after = condition(&now.conditions, "Healthy").unwrap();
    assert_eq!(after.status, "False");
    // A frozen origin is never fresh at first sight either (fresh needs evidence).
    assert!(
        seen.iter().all(|(status, ..)| status == "False"),
        "Healthy left False across the restart: {seen:?}"
    );
    assert_eq!(after.last_transition_time, before.last_transition_time);
    assert_eq!(now.health_changed_at.as_ref(), Some(&changed_at));
    sim.heal_all().await;
}

/// A playlist whose numbers exceed the API's int64, a master with thousands of long variant
/// URIs, and an instance with a 253-character name: each instance still gets its status (and
/// its Events) written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_events_are_accepted_for_hostile_playlists_and_long_names() {
    install_crds();
    let origin = StaticOrigin::start().await.expect("origin starts");
    // 2^63 + 100: a valid HLS media sequence (decimal-integer up to 2^64 - 1).
    origin.serve(
        "/big/master.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nv.m3u8\n",
    );
    origin.serve(
        "/big/v.m3u8",
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:9223372036854775908\n#EXTINF:2.000,\na.ts\n",
    );
    // 3,000 variants with 1,000-character URIs (their playlists answer 404): about 3 MB of
    // rendition detail, more than the API server accepts in one object.
    let variants = 3_000;
    let mut master = String::from("#EXTM3U\n");
    for i in 0..variants {
        master.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={}\nv{i:04}-{}.m3u8\n",
            1000 + i,
            "p".repeat(1000)
        ));
    }
    origin.serve("/many/master.m3u8", master);
    let long_name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(long_name.len(), 253);

    let ns = namespace("hostile-status");
    let mut manifest = String::from(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {name: cvs-state, region: us-east-1}\n",
    );
    for (i, (name, path)) in [
        ("big", "/big/master.m3u8"),
        ("many", "/many/master.m3u8"),
        (long_name.as_str(), "/missing/master.m3u8"),
    ]
    .iter()
    .enumerate()
    {
        manifest.push_str(&format!(
            "---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {name}\nspec:\n  clusteredStream: event\n  region: us-east-1\n  cloudfront: {{domain: d{i}-hostile.cloudfront.net}}\n  origin: {{url: \"{}\"}}\n",
            origin.url(path)
        ));
    }
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let _operator = Operator::start_with(
        "hostile-status",
        &ns,
        &[
            "--probe-timeout",
            "2s",
            "--max-playlist-bytes",
            "8388608",
            "--max-master-playlist-bytes",
            "8388608",
            "--max-probe-backoff",
            "5s",
            "--max-renditions-per-master",
            "3000",
        ],
    )
    .await
    .expect("operator starts");
    let client = client().await;
    let instances: Api<StreamInstance> = Api::namespaced(client.clone(), &ns);
    let judged = |name: String| {
        let instances = instances.clone();
        move || {
            let (instances, name) = (instances.clone(), name.clone());
            async move {
                let s = instances.get(&name).await.ok()?.status?;
                let c = condition(&s.conditions, "Healthy")?;
                (c.status != "Unknown" && !s.renditions.is_empty()).then_some(s)
            }
        }
    };

    let big = wait_for(
        "status of the int64-overflowing playlist",
        STATUS_WAIT * 3,
        judged("big".into()),
    )
    .await;
    let seq = big.renditions[0].media_sequence;
    assert!(
        seq.is_none() || seq == Some(i64::MAX),
        "media sequence beyond int64 is shown clamped: {seq:?}"
    );

    let many = wait_for(
        "status of the 3,000-variant master",
        Duration::from_secs(90),
        judged("many".into()),
    )
    .await;
    assert_eq!(many.renditions_total, Some(variants));
    assert!(many.renditions.len() <= 50, "{}", many.renditions.len());
    assert!(many.renditions.iter().all(|r| r.uri.len() <= 512));
    let stale = condition(&many.conditions, "Healthy").unwrap();
    assert_eq!(stale.status, "False");

    wait_for(
        "a Warning Event about the instance with a 253-character name",
        STATUS_WAIT * 3,
        || async {
            events_for(&client, &ns, &long_name)
                .await
                .into_iter()
                .find(|e| e.type_.as_deref() == Some("Warning"))
        },
    )
    .await;
    let log = _operator.log_text();
    assert!(!log.contains("could not record Event"), "{log}");
}

/// The instance reconciler takes the answer of its own status write for newer than a cached
/// copy of the object by comparing resourceVersions as numbers (`controller::written`): true of
/// the kube-apiserver the operator runs against, checked here on the real one.
#[tokio::test]
async fn a_status_write_answers_with_a_later_version_than_the_object_read_before_it() {
    use cvs_operator::controller::written::Written;
    use kube::api::{Patch, PatchParams, PostParams};
    use std::sync::Arc;
    install_crds();
    let ns = namespace("written");
    let api: Api<StreamInstance> = Api::namespaced(client().await, &ns);
    let instance: StreamInstance = serde_yaml::from_str(&instance_manifest(
        "us-east-1",
        "d-written.cloudfront.net",
        "http://127.0.0.1:1/master.m3u8",
    ))
    .unwrap();
    // The API server may need a moment after the CRDs are Established.
    let created = wait_for("the instance to be created", STATUS_WAIT, || async {
        api.create(&PostParams::default(), &instance).await.ok()
    })
    .await;
    let name = created.metadata.name.clone().unwrap();
    let cached = Arc::new(api.get(&name).await.unwrap());
    assert!(cached.status.is_none());

    let patch = serde_json::json!({
        "apiVersion": "cvs.dev/v1alpha1", "kind": "StreamInstance",
        "status": {"observedGeneration": 1, "healthChangedAt": "2026-12-02T10:00:00.000Z"}
    });
    let write = || async {
        api.patch_status(
            &name,
            &PatchParams::apply("written-test").force(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap()
    };
    let written = Written::default();
    written.record(write().await);
    // The cache still holds the copy from before the write: the write stands in for it.
    let seen = written.newest(cached.clone());
    assert_eq!(
        seen.status
            .as_ref()
            .and_then(|s| s.health_changed_at.as_deref()),
        Some("2026-12-02T10:00:00.000Z")
    );
    // Read again after the write, the object is at least as new: it is used, and the kept copy
    // is dropped.
    let fresh = Arc::new(api.get(&name).await.unwrap());
    assert!(Arc::ptr_eq(&written.newest(fresh.clone()), &fresh));
    assert!(written.is_empty());
    // A write that changes nothing answers with the same version: the cache is not behind.
    written.record(write().await);
    assert!(Arc::ptr_eq(&written.newest(fresh.clone()), &fresh));
}
