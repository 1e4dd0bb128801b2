//! Many tenants, one operator: origin credentials come from a Secret and stay with the origin,
//! secrets in URLs stay out of SNS and metrics, and a namespace can use only the AWS resources
//! its cluster administrator allows.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Redirect;
use axum::routing::get;
use cvs_e2e::*;
use cvs_operator::resources::{ClusteredStream, StreamInstance, StreamInstanceStatus};
use hls_sim::{OriginAuth, SimConfig, Simulator};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EAST: &str = "us-east-1";
const WAIT: Duration = Duration::from_secs(30);
/// A Secret change reaches the operator within its cache TTL (30 s) and a requeue.
const SECRET_CHANGE: Duration = Duration::from_secs(60);

/// A media playlist that never changes (enough for a request to be made and seen).
const STILL_MEDIA: &str =
    "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:1.0,\na.ts\n";

/// Serves `router` on `ip`, port chosen by the system; returns `http://ip:port`.
async fn serve(ip: &str, router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Per path, the `Authorization` header of every request seen (`None` when absent).
type Seen = Arc<Mutex<BTreeMap<String, Vec<Option<String>>>>>;

fn record(seen: &Seen, path: &str, headers: &HeaderMap) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.lock()
        .unwrap()
        .entry(path.to_owned())
        .or_default()
        .push(auth);
}

fn condition(s: &StreamInstanceStatus, type_: &str) -> Option<Condition> {
    s.conditions.iter().find(|c| c.type_ == type_).cloned()
}

async fn status(api: &Api<StreamInstance>, name: &str) -> Option<StreamInstanceStatus> {
    api.get(name).await.ok()?.status
}

async fn wait_condition(
    api: &Api<StreamInstance>,
    name: &str,
    type_: &str,
    want: &str,
    within: Duration,
) -> Condition {
    wait_for(&format!("{name} {type_}={want}"), within, || async {
        let c = condition(&status(api, name).await?, type_)?;
        (c.status == want).then_some(c)
    })
    .await
}

fn secret_manifest(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels: {{cvs.dev/origin-credentials: \"true\"}}\ntype: kubernetes.io/basic-auth\nstringData:\n  username: alice\n  password: S3cretPass\n"
    )
}

/// Origin credentials from a Secret the ClusteredStream names: with it an origin that requires
/// Basic auth is probed healthy; the header goes to the master's host and an allowed host, but
/// never on a redirect to another host; a missing or deleted Secret is a clear condition and a
/// Warning Event, and never flips health; its value appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_credentials_come_from_a_secret_and_stay_with_the_origin() {
    install_crds();
    let sim = Simulator::start(SimConfig {
        regions: vec![EAST.into()],
        streams: 1,
        renditions: 1,
        target_duration: Duration::from_secs(1),
        auth: Some(OriginAuth::Basic {
            username: "alice".into(),
            password: "S3cretPass".into(),
        }),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");

    // Another host (127.0.0.2), allowed by the ClusteredStream, that records what reaches it.
    let seen: Seen = Default::default();
    let other = serve(
        "127.0.0.2",
        axum::Router::new()
            .fallback(
                |State(seen): State<Seen>, uri: axum::http::Uri, headers: HeaderMap| async move {
                    record(&seen, uri.path(), &headers);
                    STILL_MEDIA
                },
            )
            .with_state(seen.clone()),
    )
    .await;
    // An origin on 127.0.0.1 whose master lists a rendition on the allowed host, and one that
    // redirects there.
    let master = format!(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000000\nredirected.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=2000000\n{other}/direct.m3u8\n"
    );
    let landing = format!("{other}/landing.m3u8");
    let origin = serve(
        "127.0.0.1",
        axum::Router::new()
            .route(
                "/master.m3u8",
                get(
                    move |State(seen): State<Seen>, headers: HeaderMap| async move {
                        record(&seen, "origin:/master.m3u8", &headers);
                        master
                    },
                ),
            )
            .route(
                "/redirected.m3u8",
                get(
                    move |State(seen): State<Seen>, headers: HeaderMap| async move {
                        record(&seen, "origin:/redirected.m3u8", &headers);
                        Redirect::temporary(&landing)
                    },
                ),
            )
            .with_state(seen.clone()),
    )
    .await;

    let ns = namespace("credentials");
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&secret_manifest("origin-auth")),
    );
    // The merged master is published too: its fetches carry the same credentials.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws_config().await)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("{ns}-media");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let instance = |name: &str, cluster: &str, i: usize, url: &str| {
        format!(
            "---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {name}\nspec:\n  clusteredStream: {cluster}\n  region: us-east-1\n  cloudfront: {{domain: c{i}.cloudfront.net}}\n  origin: {{url: \"{url}\"}}\n"
        )
    };
    let sim_master = sim.master_url(EAST, "s0001").unwrap();
    let manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: cvs-state, region: us-east-1}}\n  health:\n    allowedHosts: [\"127.0.0.2\"]\n    originCredentials: {{secretName: origin-auth}}\n  playlist: {{targets: [{{region: us-east-1, bucket: {bucket}, key: live/master.m3u8}}]}}\n\
         ---\napiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: broken\nspec:\n  stateTable: {{name: cvs-state, region: us-east-1}}\n  health:\n    originCredentials: {{secretName: absent}}\n{}{}{}",
        instance("east", "event", 0, &sim_master),
        instance("redirecting", "event", 1, &format!("{origin}/master.m3u8")),
        instance("orphan", "broken", 2, &sim_master),
    );
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let operator = Operator::start_with(
        "credentials",
        &ns,
        &[
            "--probe-timeout",
            "1500ms",
            "--rediscover-interval",
            "1s",
            "--status-refresh-interval",
            "2s",
        ],
    )
    .await
    .expect("operator starts");
    let client = client().await;
    let api: Api<StreamInstance> = Api::namespaced(client.clone(), &ns);

    // With the Secret, the origin that requires Basic auth is healthy.
    wait_condition(&api, "east", "Healthy", "True", WAIT).await;
    let ready = wait_condition(&api, "east", "CredentialsReady", "True", WAIT).await;
    assert_eq!(ready.reason, "SecretRead", "{}", ready.message);
    wait_for("the merged master with east's variants", WAIT, || async {
        let o = s3
            .get_object()
            .bucket(&bucket)
            .key("live/master.m3u8")
            .send()
            .await
            .ok()?;
        let body = o.body.collect().await.ok()?.into_bytes();
        String::from_utf8_lossy(&body)
            .contains("https://c0.cloudfront.net/")
            .then_some(())
    })
    .await;

    // The header goes to the master's host and to a rendition listed on the allowed host, and
    // never to the allowed host through a redirect.
    let basic = "Basic YWxpY2U6UzNjcmV0UGFzcw==";
    wait_for(
        "both renditions of the other host requested",
        WAIT,
        || async {
            let s = seen.lock().unwrap();
            (s.contains_key("/direct.m3u8") && s.contains_key("/landing.m3u8")).then_some(())
        },
    )
    .await;
    {
        let s = seen.lock().unwrap();
        let all = |path: &str, want: Option<&str>| {
            let got = &s[path];
            assert!(
                got.iter().all(|a| a.as_deref() == want),
                "{path}: {got:?}, want {want:?}"
            );
        };
        all("origin:/master.m3u8", Some(basic));
        all("origin:/redirected.m3u8", Some(basic));
        all("/direct.m3u8", Some(basic));
        all("/landing.m3u8", None);
    }

    // A ClusteredStream naming a Secret that does not exist: a clear condition and a Warning
    // Event naming it, and the instance is never judged (a probe without credentials would
    // have made it stale at once).
    let c = wait_condition(&api, "orphan", "CredentialsReady", "False", WAIT).await;
    assert_eq!(c.reason, "SecretNotFound");
    assert!(c.message.contains("\"absent\""), "{}", c.message);
    wait_for("a Warning Event naming the Secret", WAIT, || async {
        events_for(&client, &ns, "orphan")
            .await
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("OriginCredentialsUnavailable")
                    && e.type_.as_deref() == Some("Warning")
                    && e.message
                        .as_deref()
                        .is_some_and(|n| n.contains("\"absent\""))
            })
    })
    .await;
    for _ in 0..10 {
        let s = status(&api, "orphan").await.unwrap();
        let h = condition(&s, "Healthy").unwrap();
        assert_eq!(
            (h.status.as_str(), h.reason.as_str()),
            ("Unknown", "CredentialsUnavailable"),
            "{}",
            h.message
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The Secret deleted under a healthy instance: a configuration error, not the origin's.
    // The recorded verdict stands; nothing flips.
    kubectl_ok(&["delete", "secret", "-n", &ns, "origin-auth"], None);
    let c = wait_condition(&api, "east", "CredentialsReady", "False", SECRET_CHANGE).await;
    assert_eq!(c.reason, "SecretNotFound");
    for _ in 0..10 {
        let s = status(&api, "east").await.unwrap();
        assert_eq!(condition(&s, "Healthy").unwrap().status, "True");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Back again: read, and still healthy.
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&secret_manifest("origin-auth")),
    );
    wait_condition(&api, "east", "CredentialsReady", "True", SECRET_CHANGE).await;
    wait_condition(&api, "east", "Healthy", "True", WAIT).await;
    let (_, metrics) = operator.get("/metrics").await.unwrap();
    let stale_flips = metrics
        .lines()
        .find(|l| l.starts_with("cvs_health_transitions_total{to=\"stale\"}"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .unwrap_or(0.0);
    // "redirecting" is stale (its renditions never advance); "east" never was.
    let east_events = events_for(&client, &ns, "east").await;
    assert!(
        east_events
            .iter()
            .all(|e| e.reason.as_deref() != Some("Stale")),
        "east flipped: {east_events:?}"
    );
    assert!(stale_flips <= 1.0, "{metrics}");

    // The Secret's value is nowhere: status, Events, the operator's log, metrics.
    let mut exposed = metrics;
    for name in ["east", "redirecting", "orphan"] {
        exposed.push_str(&serde_json::to_string(&status(&api, name).await).unwrap());
        for e in events_for(&client, &ns, name).await {
            exposed.push_str(&serde_json::to_string(&e).unwrap());
        }
    }
    let clusters: Api<ClusteredStream> = Api::namespaced(client.clone(), &ns);
    exposed.push_str(&serde_json::to_string(&clusters.get("event").await.unwrap().status).unwrap());
    exposed.push_str(&operator.log_text());
    for secret in ["S3cretPass", "YWxpY2U6UzNjcmV0UGFzcw"] {
        assert!(!exposed.contains(secret), "{secret} exposed");
    }
}

/// Secrets in origin URLs (user info, `?token=...&sig=...`) never reach an SNS body, the state
/// table or a metric, while the parameter names stay readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_urls_stay_out_of_sns_the_table_and_metrics() {
    install_crds();
    let master =
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000000\nsigned.m3u8?token=tok3nVALUE&sig=s1gVALUE\n";
    let origin = serve(
        "127.0.0.1",
        axum::Router::new()
            .route("/master.m3u8", get(move || async move { master }))
            .route(
                "/signed.m3u8",
                get(|| async { (axum::http::StatusCode::FORBIDDEN, "no") }),
            ),
    )
    .await;
    let url =
        origin.replace("http://", "http://alice:S3cretPass@") + "/master.m3u8?token=mAsterSECRET";
    let ns = namespace("redaction");
    let queue = EventInbox::create(&ns).await.unwrap();
    let table = format!("{ns}-state");
    let manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: {table}, region: us-east-1, create: true}}\n  notifications: {{snsTopicArn: \"{}\"}}\n---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: tenant\nspec:\n  clusteredStream: event\n  region: us-east-1\n  cloudfront: {{domain: r0.cloudfront.net}}\n  origin: {{url: \"{url}\"}}\n",
        queue.topic_arn
    );
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let operator = Operator::start_with("redaction", &ns, &["--probe-timeout", "1500ms"])
        .await
        .expect("operator starts");

    // The first verdict (stale: the rendition answers 403) is announced with the renditions.
    let event = wait_for("a HealthChanged event with renditions", WAIT, || async {
        queue.events().await.into_iter().find(|m| {
            m["type"] == "HealthChanged"
                && m["renditions"].as_array().is_some_and(|r| !r.is_empty())
        })
    })
    .await;
    let body = event["_raw"].as_str().unwrap().to_owned();
    assert!(
        body.contains("signed.m3u8?token=REDACTED&sig=REDACTED"),
        "{body}"
    );

    let (_, metrics) = operator.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("cvs_probe_requests_total"),
        "the probe's metrics are exported: {metrics}"
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let item = state_item(&dynamodb, &table, "r0.cloudfront.net")
        .await
        .unwrap();
    let item = format!("{item:?}");
    for (what, text) in [("SNS", &body), ("metrics", &metrics), ("table item", &item)] {
        for secret in [
            "S3cretPass",
            "tok3nVALUE",
            "s1gVALUE",
            "mAsterSECRET",
            "alice",
        ] {
            assert!(!text.contains(secret), "{secret} in {what}: {text}");
        }
    }
    drop(operator);
}

async fn cluster_condition(api: &Api<ClusteredStream>, type_: &str) -> Option<Condition> {
    api.get("event")
        .await
        .ok()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
}

/// The confused deputy: with `--tenant-policy=namespace-annotations`, a ClusteredStream in
/// namespace B naming namespace A's state table, SNS topic and S3 bucket is refused (nothing
/// is written to them, a condition and a Warning Event say why) while A works, and B's own
/// allowed bucket is still published to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_uses_only_the_aws_resources_its_namespace_allows() {
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
    let sim_master = sim.master_url(EAST, "s0001").unwrap();
    let (ns_a, ns_b) = (namespace("tenant-a"), namespace("tenant-b"));
    let aws = aws_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws)
            .force_path_style(true)
            .build(),
    );
    let (bucket_a, bucket_b) = (format!("{ns_a}-media"), format!("{ns_b}-media"));
    for b in [&bucket_a, &bucket_b] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let table_a = format!("{ns_a}-state");
    let queue = EventInbox::create(&ns_a).await.unwrap();
    let topic_a = queue.topic_arn.clone();

    // The cluster administrator's allow-lists.
    for (ns, table, bucket) in [
        (&ns_a, &table_a, &bucket_a),
        (&ns_b, &format!("{ns_b}-state"), &bucket_b),
    ] {
        let mut args = vec![
            "annotate".to_owned(),
            format!("namespace/{ns}"),
            format!("cvs.dev/allowed-state-tables={table}"),
            format!("cvs.dev/allowed-s3-targets={bucket}/live/*"),
        ];
        if ns == &ns_a {
            args.push(format!("cvs.dev/allowed-sns-topics={topic_a}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl_ok(&args, None);
    }
    let manifest = |ns: &str, targets: &str, domain: &str| {
        format!(
            "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: {table_a}, region: us-east-1, create: true}}\n  notifications: {{snsTopicArn: \"{topic_a}\"}}\n  playlist:\n    targets:\n{targets}---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: east\n  namespace: {ns}\nspec:\n  clusteredStream: event\n  region: us-east-1\n  cloudfront: {{domain: {domain}}}\n  origin: {{url: \"{sim_master}\"}}\n"
        )
    };
    let target = |region: &str, bucket: &str, key: &str| {
        format!("    - {{region: {region}, bucket: {bucket}, key: {key}}}\n")
    };
    kubectl_ok(
        &["apply", "-n", &ns_a, "-f", "-"],
        Some(&manifest(
            &ns_a,
            &target(EAST, &bucket_a, "live/a.m3u8"),
            "a.cloudfront.net",
        )),
    );
    // B names A's table, A's topic, a key in A's bucket, and its own bucket.
    kubectl_ok(
        &["apply", "-n", &ns_b, "-f", "-"],
        Some(&manifest(
            &ns_b,
            &(target(EAST, &bucket_a, "live/b.m3u8")
                + &target("eu-west-1", &bucket_b, "live/b.m3u8")),
            "b.cloudfront.net",
        )),
    );
    let policy = [
        "--tenant-policy",
        "namespace-annotations",
        "--probe-timeout",
        "1500ms",
    ];
    let _op_a = Operator::start_with("tenant-a", &ns_a, &policy)
        .await
        .unwrap();
    let _op_b = Operator::start_with("tenant-b", &ns_b, &policy)
        .await
        .unwrap();
    let client = client().await;
    let (api_a, api_b): (Api<ClusteredStream>, Api<ClusteredStream>) = (
        Api::namespaced(client.clone(), &ns_a),
        Api::namespaced(client.clone(), &ns_b),
    );

    // B is refused, saying what and why, with a Warning Event.
    let refused = wait_for("B refused", WAIT, || async {
        let c = cluster_condition(&api_b, "ResourcesAllowed").await?;
        (c.status == "False").then_some(c)
    })
    .await;
    assert_eq!(refused.reason, "NotAllowedByNamespace");
    for what in [
        format!("state table {table_a:?}"),
        format!("SNS topic {topic_a:?}"),
        format!("{bucket_a}/live/b.m3u8"),
    ] {
        assert!(
            refused.message.contains(&what),
            "{what}: {}",
            refused.message
        );
    }
    assert!(!refused.message.contains(&bucket_b), "{}", refused.message);
    let synced = wait_for("B's StateSynced", WAIT, || {
        cluster_condition(&api_b, "StateSynced")
    })
    .await;
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "NotAllowedByNamespace")
    );
    let events = wait_for("B's EventsDelivered", WAIT, || {
        cluster_condition(&api_b, "EventsDelivered")
    })
    .await;
    assert_eq!(events.reason, "NotAllowedByNamespace");
    wait_for("a ResourceNotAllowed Warning Event", WAIT, || async {
        events_for(&client, &ns_b, "event")
            .await
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("ResourceNotAllowed")
                    && e.type_.as_deref() == Some("Warning")
            })
    })
    .await;

    // A works: its item, its events, its master.
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let item = |domain: &'static str| {
        let (dynamodb, table) = (dynamodb.clone(), table_a.clone());
        async move { state_item(&dynamodb, &table, domain).await.ok()? }
    };
    wait_for("A's item", WAIT, || item("a.cloudfront.net")).await;
    let allowed = wait_for("A allowed", WAIT, || {
        cluster_condition(&api_a, "ResourcesAllowed")
    })
    .await;
    assert_eq!(allowed.status, "True", "{}", allowed.message);
    wait_for("A's event on A's topic", WAIT, || async {
        queue
            .events()
            .await
            .into_iter()
            .find(|m| m["cluster"] == format!("{ns_a}/event"))
    })
    .await;
    let object = |bucket: &str, key: &str| {
        let (s3, bucket, key) = (s3.clone(), bucket.to_owned(), key.to_owned());
        async move { s3.get_object().bucket(bucket).key(key).send().await.ok() }
    };
    wait_for("A's master in A's bucket", WAIT, || {
        object(&bucket_a, "live/a.m3u8")
    })
    .await;
    // B's own, allowed bucket is still published to.
    wait_for("B's master in B's bucket", WAIT, || {
        object(&bucket_b, "live/b.m3u8")
    })
    .await;

    // Nothing of B ever reached A's table, topic or bucket.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        item("b.cloudfront.net").await.is_none(),
        "B wrote A's table"
    );
    let from_b: Vec<_> = queue
        .events()
        .await
        .into_iter()
        .filter(|m| m["cluster"] != format!("{ns_a}/event"))
        .collect();
    assert!(from_b.is_empty(), "B published on A's topic: {from_b:?}");
    for key in ["live/b.m3u8", "live/b.steering.json"] {
        assert!(
            object(&bucket_a, key).await.is_none(),
            "B wrote {key} in A's bucket"
        );
    }
}
