//! Two operator processes with leader election against the real API server, DynamoDB Local and
//! moto: only the holder of the Lease acts, a standby takes over when the leader is killed
//! (SIGKILL, in the middle of a failover with patches arriving) or stops (SIGTERM, a fast
//! handover), and across the handover no state-table write or SNS event is lost or repeated and
//! no health flips.

use aws_sdk_dynamodb::types::AttributeValue;
use cvs_e2e::*;
use cvs_operator::resources::StreamInstance;
use hls_sim::SimHandle;
use hls_sim::api::{FaultKind, FaultRequest, ResourceFilter};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
/// A third instance on west's origin: keeps minOpen satisfied while east fails over and west is
/// closed by patch.
const BACKUP: &str = "backup";
const WAIT: Duration = Duration::from_secs(40);

struct Fixture {
    sim: SimHandle,
    ns: String,
    table: String,
    dynamodb: aws_sdk_dynamodb::Client,
    inbox: EventInbox,
    client: kube::Client,
}

fn domain(instance: &str) -> String {
    match instance {
        BACKUP => "d-backup.cloudfront.net".into(),
        region => instance_domain(region),
    }
}

fn name(instance: &str) -> String {
    match instance {
        BACKUP => "event-backup".into(),
        region => instance_name(region),
    }
}

impl Fixture {
    async fn start(test: &str) -> Fixture {
        // 2 s segments (staleness bound 3 s): a machine loaded by other work must not make a
        // healthy region look stale, since these tests assert that no health flips.
        let StatefulEvent {
            sim,
            ns,
            table,
            inbox,
        } = StatefulEvent::start(
            test,
            Duration::from_secs(2),
            "{mode: Automatic, holdDownSeconds: 1}",
        )
        .await;
        let f = Fixture {
            sim,
            table,
            dynamodb: aws_sdk_dynamodb::Client::new(&aws_config().await),
            inbox,
            client: client().await,
            ns,
        };
        for (instance, origin) in [(EAST, EAST), (WEST, WEST), (BACKUP, WEST)] {
            let manifest = stream_instance_manifest(
                &name(instance),
                origin,
                &domain(instance),
                &f.sim.master_url(origin, "s0001").unwrap(),
            );
            kubectl_ok(&["apply", "-n", &f.ns, "-f", "-"], Some(&manifest));
        }
        f
    }

    /// A replica with leader election on, named `identity`.
    async fn replica(&self, identity: &str) -> Operator {
        self.replica_with(identity, &[]).await
    }

    /// A replica with leader election on, named `identity`, with more environment variables.
    async fn replica_with(&self, identity: &str, env: &[(&str, String)]) -> Operator {
        Operator::start_full(
            &format!("{}-{identity}", self.ns),
            &self.ns,
            &[
                "--probe-timeout",
                "1500ms",
                "--rediscover-interval",
                "2s",
                "--leader-election",
                "--leader-election-namespace",
                &self.ns,
                "--leader-election-identity",
                identity,
            ],
            env,
        )
        .await
        .expect("operator starts")
    }

    async fn holder(&self) -> Option<String> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.ns);
        api.get_opt("cvs-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    }

    async fn item(&self, instance: &str) -> Option<HashMap<String, AttributeValue>> {
        state_item(&self.dynamodb, &self.table, &domain(instance))
            .await
            .ok()?
    }

    async fn wait_item(
        &self,
        what: &str,
        instance: &str,
        check: impl Fn(&HashMap<String, AttributeValue>) -> bool,
    ) -> HashMap<String, AttributeValue> {
        wait_for(what, WAIT, || async {
            let item = self.item(instance).await?;
            check(&item).then_some(item)
        })
        .await
    }

    async fn healthy(&self) {
        let instances: Api<StreamInstance> = Api::namespaced(self.client.clone(), &self.ns);
        for instance in [EAST, WEST, BACKUP] {
            wait_for(&format!("{instance} healthy"), WAIT, || async {
                let s = instances.get(&name(instance)).await.ok()?.status?;
                let c = s.conditions.iter().find(|c| c.type_ == "Healthy")?;
                (c.status == "True").then_some(())
            })
            .await;
            self.wait_item(&format!("{instance} item fresh and open"), instance, |i| {
                boolean(i, "distro_open") && boolean(i, "playlist_fresh")
            })
            .await;
        }
    }

    /// Every write of the table, in order per item, from its DynamoDB stream: (domain, old
    /// image, new image).
    async fn stream_records(&self) -> Vec<(String, Option<Item>, Item)> {
        let aws = aws_config().await;
        let endpoint = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap();
        let streams = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(&aws)
                .endpoint_url(endpoint)
                .build(),
        );
        let arn = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .unwrap()
            .table
            .unwrap()
            .latest_stream_arn
            .expect("the operator creates its table with a stream");
        let shards = streams
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .unwrap()
            .stream_description
            .unwrap()
            .shards
            .unwrap_or_default();
        let mut out = Vec::new();
        for shard in shards {
            let mut iterator = streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(shard.shard_id.unwrap())
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator;
            while let Some(it) = iterator {
                let page = streams
                    .get_records()
                    .shard_iterator(it)
                    .send()
                    .await
                    .unwrap();
                let records = page.records.unwrap_or_default();
                if records.is_empty() {
                    break;
                }
                for r in records {
                    let Some(d) = r.dynamodb else { continue };
                    let image = |m: Option<HashMap<String, StreamValue>>| {
                        m.map(|m| m.into_iter().map(|(k, v)| (k, plain(&v))).collect::<Item>())
                    };
                    let Some(new) = image(d.new_image) else {
                        continue;
                    };
                    let old = image(d.old_image);
                    let key = new.get("domain").cloned().unwrap_or_default();
                    out.push((key, old, new));
                }
                iterator = page.next_shard_iterator;
            }
        }
        out
    }
}

type StreamValue = aws_sdk_dynamodbstreams::types::AttributeValue;
/// An item as plain strings (numbers and booleans written out).
type Item = BTreeMap<String, String>;

fn plain(v: &StreamValue) -> String {
    match v {
        StreamValue::S(s) | StreamValue::N(s) => s.clone(),
        StreamValue::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn boolean(item: &HashMap<String, AttributeValue>, k: &str) -> bool {
    item.get(k).is_some_and(|v| *v.as_bool().unwrap())
}

fn n(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item[k].as_n().unwrap().parse().unwrap()
}

/// Checks the table's history: every write of an item takes the next `version` (no gap, no
/// repeat), changes what the item records (no write repeated), and moves `event_seq` by one
/// exactly when health or open state changed. Returns the number of version writes.
fn check_writes(records: &[(String, Option<Item>, Item)], domain: &str) -> usize {
    let num = |i: &Item, k: &str| i.get(k).map(|v| v.parse::<u64>().unwrap());
    let state = |i: &Item| {
        (
            i.get("distro_open").cloned(),
            i.get("playlist_fresh").cloned(),
            i.get("stale").cloned(),
        )
    };
    let mut writes = 0;
    let mut last_version = 0;
    for (_, old, new) in records.iter().filter(|(d, _, _)| d == domain) {
        let version = num(new, "version").unwrap();
        let old_version = old.as_ref().and_then(|o| num(o, "version")).unwrap_or(0);
        if version == old_version {
            // Only the delivery record moved.
            let strip = |i: &Item| {
                let mut i = i.clone();
                i.remove("announced_version");
                i
            };
            assert_eq!(
                strip(old.as_ref().unwrap()),
                strip(new),
                "{domain}: a write without a new version changed more than announced_version"
            );
            continue;
        }
        writes += 1;
        assert_eq!(
            version,
            old_version + 1,
            "{domain}: version went from {old_version} to {version}"
        );
        assert_eq!(old_version, last_version, "{domain}: a write was lost");
        last_version = version;
        let (old_seq, new_seq) = (
            old.as_ref().and_then(|o| num(o, "event_seq")).unwrap_or(0),
            num(new, "event_seq").unwrap(),
        );
        let changed = old.as_ref().is_none_or(|o| {
            (o.get("distro_open"), health(o)) != (new.get("distro_open"), health(new))
        });
        assert_eq!(
            new_seq,
            old_seq + u64::from(changed),
            "{domain}: event_seq {old_seq} -> {new_seq} for {old:?} -> {new:?}"
        );
        if let Some(o) = old {
            let meaningful = |i: &Item| {
                let mut i = i.clone();
                for k in [
                    "version",
                    "event_seq",
                    "updated_at",
                    "announced_version",
                    "previous_distro_open",
                    "previous_playlist_fresh",
                ] {
                    i.remove(k);
                }
                i
            };
            assert!(
                meaningful(o) != meaningful(new) || state(o) != state(new),
                "{domain}: version {version} rewrote the item unchanged: {new:?}"
            );
        }
    }
    writes
}

/// The health an item records: fresh, stale, or not judged yet.
fn health(i: &Item) -> Option<String> {
    i.get("playlist_fresh").cloned()
}

/// Checks one instance's events: every sequence from 1 to `last` arrived; a sequence that
/// arrived twice is the same change announced again (returns how many such repeats); and each
/// event's `old` is the previous event's `new`, so the history has no hole and no change twice.
fn check_events(events: &[Value], domain: &str, last: u64) -> usize {
    let mut by_seq: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["domain"] == domain) {
        by_seq
            .entry(e["sequence"].as_u64().unwrap())
            .or_default()
            .push(e);
    }
    let seqs: Vec<u64> = by_seq.keys().copied().collect();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "{domain}: sequences received"
    );
    let mut repeats = 0;
    let mut previous_new: Option<&Value> = None;
    for (seq, copies) in &by_seq {
        let first = copies[0];
        for c in &copies[1..] {
            repeats += 1;
            for k in ["type", "old", "new", "reason"] {
                assert_eq!(
                    c[k], first[k],
                    "{domain}: sequence {seq} sent twice, differently"
                );
            }
        }
        if let Some(prev) = previous_new {
            assert_eq!(
                &first["old"], prev,
                "{domain}: event {seq} does not follow on from the one before"
            );
        }
        previous_new = Some(&first["new"]);
    }
    repeats
}

/// Samples every instance's `Healthy` condition until `stop`: the statuses seen, in order,
/// with consecutive repeats folded.
fn watch_health(
    f: &Fixture,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeMap<String, Vec<String>>> {
    let api: Api<StreamInstance> = Api::namespaced(f.client.clone(), &f.ns);
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        while !stop.load(Ordering::SeqCst) {
            for instance in [EAST, WEST, BACKUP] {
                let Ok(i) = api.get(&name(instance)).await else {
                    continue;
                };
                let status = i
                    .status
                    .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Healthy"))
                    .map_or("none".to_owned(), |c| c.status);
                let history = seen.entry(instance.to_owned()).or_default();
                if history.last() != Some(&status) {
                    history.push(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        seen
    })
}

/// Patches west open and closed in turn every 700 ms until `stop`; returns the last value.
fn patch_storm(f: &Fixture, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<bool> {
    let ns = f.ns.clone();
    std::thread::spawn(move || {
        let mut open = true;
        while !stop.load(Ordering::SeqCst) {
            open = !open;
            kubectl_merge_patch(
                &ns,
                "streaminstance",
                &name(WEST),
                &format!(r#"{{"spec":{{"distroOpen":{open}}}}}"#),
            );
            std::thread::sleep(Duration::from_millis(700));
        }
        open
    })
}

/// Waits until `identity` holds the Lease and says so on `/metrics`; returns when it was seen.
async fn wait_leading(f: &Fixture, op: &Operator, identity: &str, within: Duration) -> Instant {
    wait_for(&format!("{identity} to lead"), within, || async {
        (f.holder().await.as_deref() == Some(identity)
            && op.metric("cvs_leader").await == Some(1.0))
        .then(Instant::now)
    })
    .await
}

/// The standby acts on nothing: no reconciliation, no probe, no write.
async fn assert_idle(standby: &Operator) {
    let (_, metrics) = standby.get("/metrics").await.unwrap();
    assert!(metrics.contains("cvs_leader 0\n"), "{metrics}");
    for acting in [
        "cvs_reconciliations_total{",
        "cvs_probe_requests_total{",
        "cvs_status_writes_total{",
    ] {
        assert!(
            !metrics.contains(acting),
            "a standby acted ({acting}): {metrics}"
        );
    }
    assert!(metrics.contains("cvs_state_writes_total 0\n"), "{metrics}");
    assert!(metrics.contains("cvs_sns_published_total 0\n"), "{metrics}");
    let (code, body) = standby.get("/readyz").await.unwrap();
    assert_eq!(code, 200, "a standby is ready: {body}");
    assert!(body.contains("standby"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_is_lost_repeated_or_flipped() {
    let f = Fixture::start("leader-kill").await;
    let a = f.replica("a").await;
    wait_leading(&f, &a, "a", WAIT).await;
    let b = f.replica("b").await;
    f.healthy().await;
    assert_idle(&b).await;
    assert_eq!(f.holder().await.as_deref(), Some("a"));

    // Patches arrive all along; east freezes, and the leader dies while east's failover is
    // under way (before or just after it is detected, at random).
    let stop = Arc::new(AtomicBool::new(false));
    let health = watch_health(&f, stop.clone());
    let storm = patch_storm(&f, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.sim
        .apply_fault(
            FaultRequest::new(FaultKind::Freeze)
                .region(EAST)
                .resource(ResourceFilter::Media),
        )
        .await
        .unwrap();
    let delay = Duration::from_millis(fastrand::u64(500..4000));
    tokio::time::sleep(delay).await;
    let killed = Instant::now();
    a.kill();
    eprintln!("leader killed {delay:?} after east froze");

    let led = wait_leading(&f, &b, "b", Duration::from_secs(40)).await;
    let takeover = led.duration_since(killed);
    eprintln!("standby leads {takeover:?} after the leader was killed");
    assert!(takeover < Duration::from_secs(25), "took {takeover:?}");

    // The new leader carries on: east failed over, west follows the patches.
    f.wait_item("east failed over", EAST, |i| {
        i.get("reason")
            .and_then(|r| r.as_s().ok())
            .map(String::as_str)
            == Some("FailedOver")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let west_open = storm.join().unwrap();
    let health = health.await.unwrap();
    f.wait_item("west as last patched", WEST, |i| {
        boolean(i, "distro_open") == west_open
    })
    .await;
    // Let the last events and delivery records land.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Health never flipped: west and backup stayed healthy, east went stale once.
    assert_eq!(health[WEST], ["True"], "{health:?}");
    assert_eq!(health[BACKUP], ["True"], "{health:?}");
    assert_eq!(health[EAST], ["True", "False"], "{health:?}");

    // Every write took the next version and changed something; every change was announced,
    // in one unbroken chain per instance.
    let records = f.stream_records().await;
    let events = f.inbox.events().await;
    let mut repeats = 0;
    for instance in [EAST, WEST, BACKUP] {
        let item = f.item(instance).await.unwrap();
        let writes = check_writes(&records, &domain(instance));
        assert_eq!(writes as u64, n(&item, "version"), "{instance}");
        repeats += check_events(&events, &domain(instance), n(&item, "event_seq"));
    }
    eprintln!(
        "{} writes, {} events, {repeats} announced twice",
        records.len(),
        events.len()
    );
    // At-least-once across a crash: an event SNS took just before the kill, whose delivery
    // was not yet recorded, is announced again with its sequence (subscribers drop repeats).
    assert!(repeats <= 1, "{repeats} events repeated: {events:?}");
    let west = f.item(WEST).await.unwrap();
    assert!(
        n(&west, "event_seq") >= 4,
        "the storm made changes: {west:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_by_sigterm_hands_over_at_once_without_losing_or_repeating() {
    let f = Fixture::start("leader-term").await;
    let a = f.replica("a").await;
    wait_leading(&f, &a, "a", WAIT).await;
    let b = f.replica("b").await;
    f.healthy().await;
    assert_idle(&b).await;

    let stop = Arc::new(AtomicBool::new(false));
    let health = watch_health(&f, stop.clone());
    let storm = patch_storm(&f, stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let term = Instant::now();
    let exit = tokio::spawn(a.terminate(Duration::from_secs(20)));
    let led = wait_leading(&f, &b, "b", Duration::from_secs(30)).await;
    let handover = led.duration_since(term);
    eprintln!("standby leads {handover:?} after SIGTERM to the leader");
    assert_eq!(exit.await.unwrap().unwrap(), Some(0));
    // Generous for a loaded machine: the Lease is released as soon as nothing acts any more,
    // and the standby, watching it, takes it at once (not after the lease duration).
    assert!(handover < Duration::from_secs(10), "took {handover:?}");

    // Who leads is on record: an Event on the Lease for each term, and the logs.
    let notes = wait_for("LeaderElection Events", WAIT, || async {
        let notes: Vec<String> = events_for(&f.client, &f.ns, "cvs-operator")
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("LeaderElection"))
            .filter_map(|e| e.message)
            .collect();
        (notes.len() >= 2).then_some(notes)
    })
    .await;
    for who in ["a", "b"] {
        assert!(
            notes.contains(&format!("{who} became the leader")),
            "{notes:?}"
        );
    }
    assert!(b.log_text().contains("following the leader"));

    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let west_open = storm.join().unwrap();
    let health = health.await.unwrap();
    f.wait_item("west as last patched", WEST, |i| {
        boolean(i, "distro_open") == west_open
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for instance in [EAST, WEST, BACKUP] {
        assert_eq!(health[instance], ["True"], "{health:?}");
    }
    let records = f.stream_records().await;
    let events = f.inbox.events().await;
    for instance in [EAST, WEST, BACKUP] {
        let item = f.item(instance).await.unwrap();
        assert_eq!(
            check_writes(&records, &domain(instance)) as u64,
            n(&item, "version")
        );
        // A graceful handover sends every event exactly once.
        assert_eq!(
            check_events(&events, &domain(instance), n(&item, "event_seq")),
            0,
            "{instance}: {events:?}"
        );
    }
    let west = f.item(WEST).await.unwrap();
    assert!(
        n(&west, "event_seq") >= 4,
        "the storm made changes: {west:?}"
    );
}

/// A leader that cannot reach the API server (a network partition: DynamoDB and SNS still
/// answer it) stops acting by itself within the renew deadline, before its Lease can expire for
/// the standby; the standby then takes over and nothing is lost, repeated or flipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_before_the_standby_takes_over() {
    let f = Fixture::start("leader-fence").await;
    // The first replica reaches the API server only through a proxy the test can cut.
    let kubeconfig = std::fs::read_to_string(std::env::var("KUBECONFIG").unwrap()).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .unwrap()
        .to_owned();
    let proxy = TcpProxy::start(&server).await.unwrap();
    // Beside the environment's own kubeconfig (the state dir is the environment's to clean).
    let cut_config = std::path::Path::new(&std::env::var("KUBECONFIG").unwrap())
        .with_file_name(format!("{}-kubeconfig", f.ns));
    std::fs::write(
        &cut_config,
        kubeconfig.replace(&server, &proxy.addr.to_string()),
    )
    .unwrap();
    let a = f
        .replica_with("a", &[("KUBECONFIG", cut_config.display().to_string())])
        .await;
    wait_leading(&f, &a, "a", WAIT).await;
    let b = f.replica("b").await;
    f.healthy().await;
    assert_idle(&b).await;
    let stop = Arc::new(AtomicBool::new(false));
    let health = watch_health(&f, stop.clone());

    proxy.down();
    let cut = Instant::now();
    let code = a.wait_exit(Duration::from_secs(40)).await.unwrap();
    let stopped = cut.elapsed();
    assert_eq!(code, Some(4), "a leader that lost its Lease exits with 4");
    let led = wait_leading(&f, &b, "b", Duration::from_secs(40)).await;
    let takeover = led.duration_since(cut);
    eprintln!("cut-off leader stopped after {stopped:?}; the standby leads after {takeover:?}");
    // The renew deadline (10 s) passes before the lease duration (15 s) does.
    assert!(stopped < Duration::from_secs(15), "{stopped:?}");
    assert!(
        takeover > stopped,
        "the standby led before the old leader stopped"
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    let health = health.await.unwrap();
    for instance in [EAST, WEST, BACKUP] {
        assert_eq!(health[instance], ["True"], "{health:?}");
    }
    let records = f.stream_records().await;
    let events = f.inbox.events().await;
    for instance in [EAST, WEST, BACKUP] {
        let item = f.item(instance).await.unwrap();
        assert_eq!(
            check_writes(&records, &domain(instance)) as u64,
            n(&item, "version")
        );
        assert_eq!(
            check_events(&events, &domain(instance), n(&item, "event_seq")),
            0
        );
    }
    let _ = std::fs::remove_file(cut_config);
}
