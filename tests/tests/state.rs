//! The state table and SNS end to end, against DynamoDB Local and moto: patches and failover
//! reach the table with versioned writes, every change is announced once with an increasing
//! sequence number, minOpen holds, a killed operator converges without flips, and DynamoDB or
//! SNS going away for a while loses nothing.

use aws_sdk_dynamodb::types::AttributeValue;
use cvs_e2e::*;
use cvs_operator::resources::{ClusteredStream, StreamInstance};
use hls_sim::SimHandle;
use hls_sim::api::{FaultKind, FaultRequest, ResourceFilter};
use kube::api::Api;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const WAIT: Duration = Duration::from_secs(30);

struct Fixture {
    sim: SimHandle,
    ns: String,
    table: String,
    dynamodb: aws_sdk_dynamodb::Client,
    queue: EventInbox,
    ddb_proxy: TcpProxy,
    sns_proxy: TcpProxy,
    operator: Option<Operator>,
    client: kube::Client,
}

impl Fixture {
    async fn start(test: &str, failover: &str) -> Fixture {
        let StatefulEvent {
            sim,
            ns,
            table,
            inbox: queue,
        } = StatefulEvent::start(test, Duration::from_secs(1), failover).await;
        let aws = aws_config().await;
        let ddb_proxy = TcpProxy::start(&std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap())
            .await
            .unwrap();
        let sns_proxy = TcpProxy::start(&std::env::var("AWS_ENDPOINT_URL_SNS").unwrap())
            .await
            .unwrap();
        let mut f = Fixture {
            sim,
            table,
            dynamodb: aws_sdk_dynamodb::Client::new(&aws),
            queue,
            ddb_proxy,
            sns_proxy,
            operator: None,
            client: client().await,
            ns,
        };
        for region in [EAST, WEST] {
            kubectl_ok(
                &["apply", "-n", &f.ns, "-f", "-"],
                Some(&f.instance_manifest(region)),
            );
        }
        f.start_operator().await;
        f
    }

    async fn start_operator(&mut self) {
        let env = [
            ("AWS_ENDPOINT_URL_DYNAMODB", self.ddb_proxy.url()),
            ("AWS_ENDPOINT_URL_SNS", self.sns_proxy.url()),
        ];
        self.operator = Some(
            Operator::start_full(
                "state",
                &self.ns,
                &["--probe-timeout", "1500ms", "--rediscover-interval", "2s"],
                &env,
            )
            .await
            .expect("operator starts"),
        );
    }

    async fn item(&self, region: &str) -> Option<HashMap<String, AttributeValue>> {
        self.item_of_domain(&instance_domain(region)).await
    }

    async fn item_of_domain(&self, domain: &str) -> Option<HashMap<String, AttributeValue>> {
        state_item(&self.dynamodb, &self.table, domain).await.ok()?
    }

    /// Waits until the item of `region` satisfies `check`.
    async fn wait_item(
        &self,
        what: &str,
        region: &str,
        check: impl Fn(&HashMap<String, AttributeValue>) -> bool,
    ) -> HashMap<String, AttributeValue> {
        wait_for(what, WAIT, || async {
            let item = self.item(region).await?;
            check(&item).then_some(item)
        })
        .await
    }

    /// Every event received so far (the SNS envelope's Message parsed, with its attributes).
    async fn events(&self) -> Vec<Value> {
        self.queue.events().await
    }

    async fn wait_event(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, WAIT, || async {
            self.events().await.into_iter().find(|e| check(e))
        })
        .await
    }

    /// The StreamInstance of `region`, as the fixture first applied it.
    fn instance_manifest(&self, region: &str) -> String {
        region_instance_manifest(&self.sim, region)
    }

    fn patch_open(&self, region: &str, open: bool) {
        kubectl_merge_patch(
            &self.ns,
            "streaminstance",
            &instance_name(region),
            &format!(r#"{{"spec":{{"distroOpen":{open}}}}}"#),
        );
    }

    async fn cluster_condition(&self, type_: &str) -> Option<(String, String, String)> {
        let api: Api<ClusteredStream> = Api::namespaced(self.client.clone(), &self.ns);
        let s = api.get("event").await.ok()?.status?;
        let c = s.conditions.into_iter().find(|c| c.type_ == type_)?;
        Some((c.status, c.reason, c.message))
    }
}

/// A boolean attribute; false when absent (an item not judged yet has no `playlist_fresh` or
/// `stale`).
fn b(item: &HashMap<String, AttributeValue>, k: &str) -> bool {
    item.get(k).is_some_and(|v| *v.as_bool().unwrap())
}

fn n(item: &HashMap<String, AttributeValue>, k: &str) -> u64 {
    item[k].as_n().unwrap().parse().unwrap()
}

fn s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> &'a str {
    item[k].as_s().unwrap()
}

/// Events of one instance, in arrival order, with strictly increasing sequence numbers.
fn sequences(events: &[Value], region: &str) -> Vec<u64> {
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["region"] == region)
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{region}: {seqs:?}");
    seqs
}

async fn healthy_items(f: &Fixture) {
    let instances: Api<StreamInstance> = Api::namespaced(f.client.clone(), &f.ns);
    for region in [EAST, WEST] {
        wait_for(&format!("{region} probed healthy"), WAIT, || async {
            let s = instances.get(&instance_name(region)).await.ok()?.status?;
            let c = s.conditions.iter().find(|c| c.type_ == "Healthy")?;
            (c.status == "True").then_some(())
        })
        .await;
        f.wait_item(&format!("{region} item fresh and open"), region, |i| {
            b(i, "distro_open") && b(i, "playlist_fresh") && !b(i, "stale")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_reach_the_table_and_sns_and_min_open_holds() {
    let f = Fixture::start("state-patch", "{mode: Manual}").await;
    healthy_items(&f).await;
    let before = f.item(EAST).await.unwrap();
    assert_eq!(s(&before, "cluster"), format!("{}/event", f.ns));
    assert_eq!(s(&before, "region"), EAST);

    let patched = Instant::now();
    f.patch_open(EAST, false);
    let closed = f
        .wait_item("east closed", EAST, |i| !b(i, "distro_open"))
        .await;
    eprintln!("patch to table: {:?}", patched.elapsed());
    assert!(!b(&closed, "desired_open"));
    assert_eq!(s(&closed, "reason"), "DesiredClosed");
    assert!(n(&closed, "version") > n(&before, "version"));
    let event = f
        .wait_event("OpenChanged event", |e| {
            e["type"] == "OpenChanged" && e["region"] == EAST
        })
        .await;
    assert_eq!(event["schemaVersion"], 1);
    assert_eq!(event["sequence"].as_u64(), Some(n(&closed, "event_seq")));
    assert_eq!(event["old"]["open"], true);
    assert_eq!(event["new"]["open"], false);
    assert_eq!(event["domain"], instance_domain(EAST));
    assert_eq!(
        event["instance"],
        format!("{}/{}", f.ns, instance_name(EAST))
    );
    assert!(
        event["renditions"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{event}"
    );
    assert!(
        event["timestamp"].as_str().is_some_and(|t| t.contains('.')),
        "{event}"
    );
    for attr in ["cluster", "region", "type"] {
        assert!(
            event["_attributes"][attr]["Value"].is_string(),
            "{attr}: {event}"
        );
    }

    // Closing the last open region is refused: the table keeps it open and says why.
    f.patch_open(WEST, false);
    let held = f
        .wait_item("west held open", WEST, |i| {
            s(i, "reason") == "HeldOpenForMinOpen"
        })
        .await;
    assert!(b(&held, "distro_open") && !b(&held, "desired_open"));

    // Reopen east; then west may close.
    f.patch_open(EAST, true);
    f.wait_item("east open", EAST, |i| b(i, "distro_open"))
        .await;
    f.wait_item("west closed", WEST, |i| !b(i, "distro_open"))
        .await;
    let events = f.events().await;
    sequences(&events, EAST);
    sequences(&events, WEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_failover_closes_a_stale_region_and_reopens_after_hold_down() {
    let f = Fixture::start("state-auto", "{mode: Automatic, holdDownSeconds: 3}").await;
    healthy_items(&f).await;

    let freeze = f
        .sim
        .apply_fault(
            FaultRequest::new(FaultKind::Freeze)
                .region(EAST)
                .resource(ResourceFilter::Media),
        )
        .await
        .unwrap();
    let closed = f
        .wait_item("east failed over", EAST, |i| !b(i, "distro_open"))
        .await;
    assert_eq!(s(&closed, "reason"), "FailedOver");
    assert!(b(&closed, "stale") && b(&closed, "desired_open"));
    f.wait_event("east health event", |e| {
        e["region"] == EAST && e["new"]["healthy"] == false && e["new"]["open"] == false
    })
    .await;

    f.sim.heal_fault(freeze.id).await.unwrap();
    let healthy_again = wait_for("east fresh again", WAIT, || async {
        let i = f.item(EAST).await?;
        b(&i, "playlist_fresh").then(Instant::now)
    })
    .await;
    let reopened = f
        .wait_item("east reopened", EAST, |i| b(i, "distro_open"))
        .await;
    assert!(
        healthy_again.elapsed() >= Duration::from_millis(2_000),
        "reopened {:?} after turning healthy; hold-down is 3 s",
        healthy_again.elapsed()
    );
    assert_eq!(s(&reopened, "reason"), "DesiredOpen");

    // Both regions stale: one stays open (minOpen 1).
    f.sim
        .apply_fault(FaultRequest::new(FaultKind::Freeze).resource(ResourceFilter::Media))
        .await
        .unwrap();
    wait_for("both stale, one held open", WAIT, || async {
        let (e, w) = (f.item(EAST).await?, f.item(WEST).await?);
        let both_stale = b(&e, "stale") && b(&w, "stale");
        let open = [&e, &w].iter().filter(|i| b(i, "distro_open")).count();
        (both_stale && open == 1).then_some(())
    })
    .await;
    let events = f.events().await;
    sequences(&events, EAST);
    sequences(&events, WEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_instance_is_closed_in_the_table_and_announced() {
    let mut f = Fixture::start("state-removed", "{mode: Manual}").await;
    healthy_items(&f).await;
    let east_version = n(&f.item(EAST).await.unwrap(), "version");
    let west_version = n(&f.item(WEST).await.unwrap(), "version");
    let delete_west = || {
        kubectl_ok(
            &[
                "delete",
                "streaminstance",
                &instance_name(WEST),
                "-n",
                &f.ns,
            ],
            None,
        )
    };

    // Deleted while the operator runs: the item stays, closed, and the change is announced.
    delete_west();
    let retired = f
        .wait_item("west retired", WEST, |i| {
            s(i, "reason") == "InstanceRemoved"
        })
        .await;
    assert!(!b(&retired, "distro_open"));
    assert_eq!(n(&retired, "version"), west_version + 1);
    assert_eq!(
        s(&retired, "name"),
        format!("{}/{}", f.ns, instance_name(WEST))
    );
    let event = f
        .wait_event("west close event", |e| {
            e["region"] == WEST && e["new"]["open"] == false
        })
        .await;
    assert_eq!(event["reason"], "InstanceRemoved");
    assert_eq!(event["sequence"].as_u64(), Some(n(&retired, "event_seq")));
    wait_for("InstanceRemoved Event", WAIT, || async {
        events_for(&f.client, &f.ns, "event")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InstanceRemoved"))
    })
    .await;

    // Recreated: the same item opens again, its version going on from where it was.
    kubectl_ok(
        &["apply", "-n", &f.ns, "-f", "-"],
        Some(&f.instance_manifest(WEST)),
    );
    let reopened = f
        .wait_item("west reopened", WEST, |i| b(i, "distro_open"))
        .await;
    assert_eq!(s(&reopened, "reason"), "DesiredOpen");
    assert!(n(&reopened, "version") > n(&retired, "version"));
    // Its event delivered and recorded, so the restart below owes (and repeats) nothing:
    // delivery is at least once, and a kill between the two would send it again.
    f.wait_item("west's reopen event recorded", WEST, |i| {
        i.get("announced_version")
            .and_then(|v| v.as_n().ok())
            .is_some_and(|v| v == &n(i, "version").to_string())
    })
    .await;

    // Deleted while the operator is down: retired by the sweep at start-up.
    f.operator.take().unwrap().kill();
    let before_restart = n(&f.item(WEST).await.unwrap(), "version");
    delete_west();
    f.start_operator().await;
    let retired_again = f
        .wait_item("west retired after restart", WEST, |i| {
            s(i, "reason") == "InstanceRemoved"
        })
        .await;
    assert_eq!(n(&retired_again, "version"), before_restart + 1);
    let (_, metrics) = f.operator.as_ref().unwrap().get("/metrics").await.unwrap();
    assert!(
        metrics.contains("cvs_state_items_retired_total 1\n"),
        "{metrics}"
    );

    // The remaining instance was never rewritten, and sequences only increased.
    let east = f.item(EAST).await.unwrap();
    assert!(b(&east, "distro_open"));
    assert_eq!(n(&east, "version"), east_version);
    sequences(&f.events().await, WEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_operator_converges_without_flips_and_sequences_keep_increasing() {
    let mut f = Fixture::start("state-restart", "{mode: Manual}").await;
    healthy_items(&f).await;
    f.patch_open(EAST, false);
    f.wait_item("east closed", EAST, |i| !b(i, "distro_open"))
        .await;
    f.wait_event("close event", |e| {
        e["region"] == EAST && e["type"] == "OpenChanged"
    })
    .await;
    let versions = (
        n(&f.item(EAST).await.unwrap(), "version"),
        n(&f.item(WEST).await.unwrap(), "version"),
    );
    let events_before = f.events().await.len();

    // SIGKILL in the middle of work: a patch lands while the operator is dead.
    f.operator.take().unwrap().kill();
    f.patch_open(EAST, true);
    f.start_operator().await;
    let reopened = f
        .wait_item("east reopened after restart", EAST, |i| b(i, "distro_open"))
        .await;
    assert_eq!(
        n(&reopened, "version"),
        versions.0 + 1,
        "exactly one write for one change"
    );

    // West never flipped: its item was not rewritten, and its status stayed open.
    let instances: Api<StreamInstance> = Api::namespaced(f.client.clone(), &f.ns);
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(4) {
        let west = instances.get(&instance_name(WEST)).await.unwrap();
        assert_eq!(west.status.unwrap().open, Some(true));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(n(&f.item(WEST).await.unwrap(), "version"), versions.1);
    let events = f.events().await;
    assert_eq!(
        events.len(),
        events_before + 1,
        "one event for the one change: {events:?}"
    );
    sequences(&events, EAST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_and_sns_outages_lose_nothing() {
    let f = Fixture::start("state-outage", "{mode: Manual}").await;
    healthy_items(&f).await;

    // DynamoDB goes away: status still follows the patch, the condition says why the table
    // lags, and probing carries on.
    f.ddb_proxy.down();
    f.patch_open(EAST, false);
    wait_for("StateSynced=False", WAIT, || async {
        let (status, reason, _) = f.cluster_condition("StateSynced").await?;
        (status == "False" && reason == "DynamoDBUnavailable").then_some(())
    })
    .await;
    let instances: Api<StreamInstance> = Api::namespaced(f.client.clone(), &f.ns);
    wait_for("east status closed", WAIT, || async {
        (instances.get(&instance_name(EAST)).await.ok()?.status?.open == Some(false)).then_some(())
    })
    .await;
    assert!(
        b(&f.item(EAST).await.unwrap(), "distro_open"),
        "the table could not be written"
    );
    f.ddb_proxy.up();
    f.wait_item("east closed once DynamoDB is back", EAST, |i| {
        !b(i, "distro_open")
    })
    .await;
    wait_for("StateSynced=True", WAIT, || async {
        (f.cluster_condition("StateSynced").await?.0 == "True").then_some(())
    })
    .await;

    // SNS goes away: the change is recorded at once, and announced when SNS is back.
    f.sns_proxy.down();
    f.patch_open(EAST, true);
    f.wait_item("east reopened", EAST, |i| b(i, "distro_open"))
        .await;
    wait_for("EventsDelivered=False", WAIT, || async {
        let (status, reason, _) = f.cluster_condition("EventsDelivered").await?;
        (status == "False" && reason == "PublishFailing").then_some(())
    })
    .await;
    f.sns_proxy.up();
    let seq = n(&f.item(EAST).await.unwrap(), "event_seq");
    f.wait_event("the reopen event, late", |e| {
        e["region"] == EAST && e["sequence"].as_u64() == Some(seq)
    })
    .await;
    wait_for("EventsDelivered=True", WAIT, || async {
        (f.cluster_condition("EventsDelivered").await?.0 == "True").then_some(())
    })
    .await;
    sequences(&f.events().await, EAST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_lost_with_a_killed_operator_is_sent_after_restart() {
    let mut f = Fixture::start("state-replay", "{mode: Manual}").await;
    healthy_items(&f).await;
    let announced = |i: &HashMap<String, AttributeValue>| {
        i.get("announced_version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    for region in [EAST, WEST] {
        f.wait_item("delivery recorded in the item", region, |i| {
            announced(i) == Some(n(i, "version"))
        })
        .await;
    }
    let west_events = f
        .events()
        .await
        .iter()
        .filter(|e| e["region"] == WEST)
        .count();

    // SNS refuses; the close is recorded and its event waits in the operator, which dies.
    f.sns_proxy.down();
    f.patch_open(EAST, false);
    let closed = f
        .wait_item("east closed", EAST, |i| !b(i, "distro_open"))
        .await;
    let version = n(&closed, "version");
    let seq = n(&closed, "event_seq");
    assert!(announced(&closed) < Some(version), "{closed:?}");
    wait_for("EventsDelivered=False", WAIT, || async {
        (f.cluster_condition("EventsDelivered").await?.0 == "False").then_some(())
    })
    .await;
    f.operator.take().unwrap().kill();
    f.sns_proxy.up();
    f.start_operator().await;

    let event = f
        .wait_event("the close event, after the restart", |e| {
            e["region"] == EAST && e["sequence"].as_u64() == Some(seq)
        })
        .await;
    assert_eq!(event["type"], "OpenChanged");
    assert_eq!(event["old"]["open"], true);
    assert_eq!(event["new"]["open"], false);
    assert_eq!(event["reason"], "DesiredClosed");
    f.wait_item("its delivery recorded", EAST, |i| {
        announced(i) == Some(version)
    })
    .await;
    let (_, metrics) = f.operator.as_ref().unwrap().get("/metrics").await.unwrap();
    assert!(metrics.contains("cvs_sns_replayed_total 1\n"), "{metrics}");
    // Once, and nothing replayed for west, which owed nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = f.events().await;
    let sent = |region: &str, seq: u64| {
        events
            .iter()
            .filter(|e| e["region"] == region && e["sequence"].as_u64() == Some(seq))
            .count()
    };
    assert_eq!(sent(EAST, seq), 1, "{events:?}");
    assert_eq!(
        events.iter().filter(|e| e["region"] == WEST).count(),
        west_events
    );
    sequences(&events, EAST);

    // An item the original system wrote (no version, no operator attributes) is taken over.
    let legacy = "d-legacy.cloudfront.net";
    f.dynamodb
        .put_item()
        .table_name(&f.table)
        .item("domain", AttributeValue::S(legacy.into()))
        .item("distro_open", AttributeValue::Bool(false))
        .item("stale", AttributeValue::Bool(false))
        .send()
        .await
        .unwrap();
    let legacy_instance = |annotations: &str| {
        format!(
            "apiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: event-legacy\n{annotations}spec:\n  clusteredStream: event\n  region: us-west-2\n  cloudfront: {{domain: {legacy}}}\n  origin: {{url: \"{}\"}}\n",
            f.sim.master_url(EAST, "s0001").unwrap()
        )
    };
    // Not without saying so: the item has no owner.
    kubectl_ok(
        &["apply", "-n", &f.ns, "-f", "-"],
        Some(&legacy_instance("")),
    );
    let message = wait_for("the legacy item refused", WAIT, || async {
        let (status, reason, message) = f.cluster_condition("StateSynced").await?;
        (status == "False" && reason == "NotOwner").then_some(message)
    })
    .await;
    assert!(message.contains("original system"), "{message}");
    assert!(
        !f.item_of_domain(legacy)
            .await
            .unwrap()
            .contains_key("version")
    );
    kubectl_ok(
        &["apply", "-n", &f.ns, "-f", "-"],
        Some(&legacy_instance(
            "  annotations: {cvs.dev/take-over-state-item: \"true\"}\n",
        )),
    );
    let taken_over = wait_for("the legacy item taken over", WAIT, || async {
        let item = f.item_of_domain(legacy).await?;
        (item.contains_key("version") && b(&item, "distro_open")).then_some(item)
    })
    .await;
    assert_eq!(n(&taken_over, "version"), 1);
    assert_eq!(s(&taken_over, "cluster"), format!("{}/event", f.ns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_mis_keyed_table_is_reported() {
    install_crds();
    let ns = namespace("state-check");
    let aws = aws_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let wrong = format!("{ns}-wrong");
    dynamodb
        .create_table()
        .table_name(&wrong)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: missing\nspec:\n  stateTable: {{name: {ns}-none, region: us-east-1}}\n---\napiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: wrong\nspec:\n  stateTable: {{name: {wrong}, region: us-east-1}}\n"
    );
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let _operator = Operator::start("state-check", &ns).await.unwrap();
    let api: Api<ClusteredStream> = Api::namespaced(client().await, &ns);
    for (cluster, reason, words) in [
        ("missing", "TableMissing", "does not exist"),
        ("wrong", "TableWrongKey", "must be keyed by 'domain'"),
    ] {
        wait_for(reason, WAIT, || async {
            let s = api.get(cluster).await.ok()?.status?;
            let c = s
                .conditions
                .into_iter()
                .find(|c| c.type_ == "StateSynced")?;
            (c.status == "False" && c.reason == reason && c.message.contains(words)).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_requested_and_refusals_are_reported() {
    install_crds();
    // DynamoDB Local has no global tables and refuses the replica; moto accepts the request.
    for (label, endpoint, status, reason) in [
        (
            "replica-local",
            std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap(),
            "False",
            "ReplicaRequestFailed",
        ),
        (
            "replica-moto",
            std::env::var("AWS_ENDPOINT_URL_SNS").unwrap(),
            "Unknown",
            "ReplicasRequested",
        ),
    ] {
        let ns = namespace(label);
        let manifest = format!(
            "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: {ns}-global, region: us-east-1, create: true, replicaRegions: [eu-west-1, ap-south-1]}}\n"
        );
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
        let _operator =
            Operator::start_full(label, &ns, &[], &[("AWS_ENDPOINT_URL_DYNAMODB", endpoint)])
                .await
                .unwrap();
        let api: Api<ClusteredStream> = Api::namespaced(client().await, &ns);
        let (message, synced) = wait_for(reason, WAIT, || async {
            let s = api.get("event").await.ok()?.status?;
            let c = s.conditions.iter().find(|c| c.type_ == "TableReplicated")?;
            let synced = s
                .conditions
                .iter()
                .find(|c| c.type_ == "StateSynced")?
                .status
                .clone();
            (c.status == status && c.reason == reason).then(|| (c.message.clone(), synced))
        })
        .await;
        assert!(
            message.contains("eu-west-1") && message.contains("ap-south-1"),
            "{label}: {message}"
        );
        assert_eq!(
            synced, "True",
            "{label}: the home region is used regardless"
        );
    }
}

/// Events of one instance (by region) have consecutive sequence numbers from 1: nothing was
/// lost.
fn gapless(events: &[Value], region: &str) {
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e["domain"] == instance_domain(region))
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "{region}: {events:?}");
}

/// (version, stale, distro_open) of east's, west's and `extra`'s items.
async fn item_states(f: &Fixture, extra: &str) -> Vec<(u64, bool, bool)> {
    let mut v = Vec::new();
    for d in [
        instance_domain(EAST),
        instance_domain(WEST),
        extra.to_owned(),
    ] {
        let item = f.item_of_domain(&d).await.unwrap();
        v.push((
            n(&item, "version"),
            b(&item, "stale"),
            b(&item, "distro_open"),
        ));
    }
    v
}

/// A StreamInstance `name` of ClusteredStream `cluster` on `domain`, probing `region`'s origin.
fn extra_instance(f: &Fixture, name: &str, cluster: &str, domain: &str, region: &str) -> String {
    format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {name}\nspec:\n  clusteredStream: {cluster}\n  region: {region}\n  cloudfront: {{domain: {domain}}}\n  origin: {{url: \"{}\"}}\n",
        f.sim.master_url(region, "s0001").unwrap()
    )
}

async fn instance_condition(f: &Fixture, name: &str, type_: &str) -> Option<(String, String)> {
    let api: Api<StreamInstance> = Api::namespaced(f.client.clone(), &f.ns);
    let s = api.get(name).await.ok()?.status?;
    let c = s.conditions.into_iter().find(|c| c.type_ == type_)?;
    Some((c.status, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_stale_and_a_closed_region_rewrites_and_announces_nothing() {
    let mut f = Fixture::start(
        "state-restart-stale",
        "{mode: Automatic, holdDownSeconds: 3}",
    )
    .await;
    // A third region on west's origin keeps minOpen satisfied while east and west are closed.
    let backup = "d-backup.cloudfront.net";
    kubectl_ok(
        &["apply", "-n", &f.ns, "-f", "-"],
        Some(&extra_instance(&f, "event-backup", "event", backup, WEST)),
    );
    healthy_items(&f).await;
    wait_for("backup item open and fresh", WAIT, || async {
        let i = f.item_of_domain(backup).await?;
        (b(&i, "distro_open") && b(&i, "playlist_fresh")).then_some(())
    })
    .await;

    // East's media playlists fail (stale at first sight, whatever the probe makes of a
    // playlist it has not seen before), and automatic failover closes it; west is closed by
    // patch.
    f.sim
        .apply_fault(
            FaultRequest::new(FaultKind::Http404)
                .region(EAST)
                .resource(ResourceFilter::Media),
        )
        .await
        .unwrap();
    f.wait_item("east failed over", EAST, |i| {
        s(i, "reason") == "FailedOver" && b(i, "stale")
    })
    .await;
    f.patch_open(WEST, false);
    f.wait_item("west closed", WEST, |i| s(i, "reason") == "DesiredClosed")
        .await;
    f.wait_event("east's health event", |e| {
        e["region"] == EAST && e["new"]["healthy"] == false
    })
    .await;
    f.wait_event("west's close event", |e| {
        e["region"] == WEST && e["type"] == "OpenChanged"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = item_states(&f, backup).await;
    assert_eq!(
        before.iter().map(|v| (v.1, v.2)).collect::<Vec<_>>(),
        [(true, false), (false, false), (false, true)]
    );
    let events_before = f.events().await.len();

    f.operator.take().unwrap().kill();
    f.start_operator().await;
    // Until and after the first verdicts: nothing is rewritten, nothing announced.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(12) {
        assert_eq!(
            item_states(&f, backup).await,
            before,
            "after {:?}",
            watch.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = f.events().await;
    assert_eq!(
        events.len(),
        events_before,
        "no event across the restart: {events:?}"
    );
    let instances: Api<StreamInstance> = Api::namespaced(f.client.clone(), &f.ns);
    let east = instances
        .get(&instance_name(EAST))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(east.open, Some(false));
    for region in [EAST, WEST] {
        gapless(&events, region);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_repairs_items_changed_by_hand_malformed_or_lost() {
    let f = Fixture::start("state-repair", "{mode: Manual}").await;
    healthy_items(&f).await;
    // Bounded by the item re-read interval (30 s) plus a reconcile.
    const REPAIR: Duration = Duration::from_secs(75);
    let set = |region: &str, attr: &str, v: AttributeValue| {
        let (f, attr, region) = (&f, attr.to_owned(), region.to_owned());
        async move {
            f.dynamodb
                .update_item()
                .table_name(&f.table)
                .key("domain", AttributeValue::S(instance_domain(&region)))
                .update_expression("SET #a = :v")
                .expression_attribute_names("#a", attr)
                .expression_attribute_values(":v", v)
                .send()
                .await
                .unwrap();
        }
    };
    let repaired_event = |reason: &'static str, words: &'static str| {
        let f = &f;
        async move {
            wait_for(&format!("{reason} Event ({words})"), REPAIR, || async {
                events_for(&f.client, &f.ns, "event")
                    .await
                    .into_iter()
                    .find(|e| {
                        e.reason.as_deref() == Some(reason)
                            && e.message.as_deref().is_some_and(|n| n.contains(words))
                    })
            })
            .await
        }
    };

    // Closed by hand: opened again, and the Event says what was wrong.
    let east = n(&f.item(EAST).await.unwrap(), "version");
    set(EAST, "distro_open", AttributeValue::Bool(false)).await;
    let fixed = wait_for("east reopened", REPAIR, || async {
        let i = f.item(EAST).await?;
        (i["distro_open"] == AttributeValue::Bool(true)).then_some(i)
    })
    .await;
    assert!(n(&fixed, "version") > east);
    repaired_event("StateItemChanged", "distro_open: false (expected true)").await;

    // A string where a boolean belongs is not read as true: it is rewritten.
    set(WEST, "distro_open", AttributeValue::S("false".into())).await;
    wait_for("west's string repaired", REPAIR, || async {
        let i = f.item(WEST).await?;
        (i["distro_open"] == AttributeValue::Bool(true)).then_some(())
    })
    .await;
    repaired_event("StateItemMalformed", "distro_open is the string").await;

    // A version that cannot be incremented neither crashes the operator nor wedges the item.
    set(EAST, "version", AttributeValue::N(u64::MAX.to_string())).await;
    set(EAST, "distro_open", AttributeValue::Bool(false)).await;
    wait_for("east's version repaired", REPAIR, || async {
        let i = f.item(EAST).await?;
        (i["version"].as_n().ok()? != &u64::MAX.to_string()
            && i["distro_open"] == AttributeValue::Bool(true))
        .then_some(())
    })
    .await;
    let (status, _) = f.operator.as_ref().unwrap().get("/healthz").await.unwrap();
    assert_eq!(status, 200);

    // The table is lost (deleted, as when DynamoDB Local restarts empty): it is created again
    // and every item written, versions and sequences going on from where they were.
    let west = f.item(WEST).await.unwrap();
    f.dynamodb
        .delete_table()
        .table_name(&f.table)
        .send()
        .await
        .unwrap();
    for region in [EAST, WEST] {
        wait_for(&format!("{region} rewritten"), REPAIR, || async {
            let i = f.item(region).await?;
            b(&i, "distro_open").then_some(())
        })
        .await;
    }
    let west_again = f.item(WEST).await.unwrap();
    assert!(n(&west_again, "version") > n(&west, "version"));
    assert!(n(&west_again, "event_seq") >= n(&west, "event_seq"));
    repaired_event("StateItemMissing", "the item was missing").await;
    wait_for("StateSynced=True", WAIT, || async {
        (f.cluster_condition("StateSynced").await?.0 == "True").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_claiming_one_domain_are_both_refused() {
    let f = Fixture::start("state-dup", "{mode: Manual}").await;
    healthy_items(&f).await;
    let before = f.item(EAST).await.unwrap();
    // Another ClusteredStream, same table, and an instance claiming east's domain, closed.
    let manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: other\nspec:\n  stateTable: {{name: {}, region: us-east-1}}\n",
        f.table
    );
    kubectl_ok(&["apply", "-n", &f.ns, "-f", "-"], Some(&manifest));
    let dup = extra_instance(&f, "intruder", "other", &instance_domain(EAST), EAST)
        .replace("spec:\n", "spec:\n  distroOpen: false\n");
    kubectl_ok(&["apply", "-n", &f.ns, "-f", "-"], Some(&dup));
    for who in ["intruder", instance_name(EAST).as_str()] {
        let (_, message) = wait_for(
            &format!("{who} refused"),
            Duration::from_secs(60),
            || async {
                let c = instance_condition(&f, who, "DomainUnique").await?;
                (c.0 == "False").then_some(c)
            },
        )
        .await;
        assert!(message.contains(&instance_domain(EAST)), "{message}");
    }
    wait_for("StateSynced=False DuplicateDomain", WAIT, || async {
        let (status, reason, _) = f.cluster_condition("StateSynced").await?;
        (status == "False" && reason == "DuplicateDomain").then_some(())
    })
    .await;
    // Neither writes the item: it stays as it was.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = f.item(EAST).await.unwrap();
    assert_eq!(n(&during, "version"), n(&before, "version"));
    assert!(b(&during, "distro_open"));
    assert_eq!(s(&during, "cluster"), format!("{}/event", f.ns));

    // The duplicate goes: the rightful instance is written again.
    kubectl_ok(&["delete", "streaminstance", "intruder", "-n", &f.ns], None);
    wait_for("east unique again", Duration::from_secs(60), || async {
        (instance_condition(&f, &instance_name(EAST), "DomainUnique")
            .await?
            .0
            == "True")
            .then_some(())
    })
    .await;
    f.patch_open(EAST, false);
    f.wait_item("east written again", EAST, |i| !b(i, "distro_open"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_does_not_exist_holds_up_no_other_topic() {
    let f = Fixture::start("state-topics", "{mode: Manual}").await;
    healthy_items(&f).await;
    // Another ClusteredStream whose topic ARN is mistyped: it never exists in moto.
    let typo = format!("arn:aws:sns:us-east-1:123456789012:{}-typo", f.ns);
    let manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: typo\nspec:\n  stateTable: {{name: {}-typo, region: us-east-1, create: true}}\n  notifications: {{snsTopicArn: \"{typo}\"}}\n",
        f.ns
    );
    kubectl_ok(&["apply", "-n", &f.ns, "-f", "-"], Some(&manifest));
    kubectl_ok(
        &["apply", "-n", &f.ns, "-f", "-"],
        Some(&extra_instance(
            &f,
            "typo-east",
            "typo",
            "d-typo.cloudfront.net",
            EAST,
        )),
    );
    let api: Api<ClusteredStream> = Api::namespaced(f.client.clone(), &f.ns);
    let message = wait_for("typo's topic parked", WAIT, || async {
        let s = api.get("typo").await.ok()?.status?;
        let c = s
            .conditions
            .into_iter()
            .find(|c| c.type_ == "EventsDelivered")?;
        (c.status == "False" && c.reason == "TopicUnusable").then_some(c.message)
    })
    .await;
    assert!(message.contains("waiting"), "{message}");

    // The other ClusteredStream's events still go out at once.
    f.patch_open(EAST, false);
    let closed = f
        .wait_item("east closed", EAST, |i| !b(i, "distro_open"))
        .await;
    f.wait_event("east's close event", |e| {
        e["region"] == EAST && e["sequence"].as_u64() == Some(n(&closed, "event_seq"))
    })
    .await;
    wait_for("EventsDelivered=True on the good topic", WAIT, || async {
        (f.cluster_condition("EventsDelivered").await?.0 == "True").then_some(())
    })
    .await;
    let events = f.events().await;
    gapless(&events, EAST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_namespace_cannot_overwrite_an_item() {
    let f = Fixture::start("state-owner", "{mode: Manual}").await;
    healthy_items(&f).await;
    let before = f.item(EAST).await.unwrap();
    // Another tenant names the same table and east's domain, with an operator of its own.
    let ns2 = namespace("state-intruder");
    let manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: evil\nspec:\n  stateTable: {{name: {}, region: us-east-1}}\n---\n{}",
        f.table,
        extra_instance(&f, "evil-east", "evil", &instance_domain(EAST), EAST).replace(
            "spec:\n  clusteredStream",
            "spec:\n  distroOpen: false\n  clusteredStream"
        )
    );
    kubectl_ok(&["apply", "-n", &ns2, "-f", "-"], Some(&manifest));
    let _intruder = Operator::start("state-intruder", &ns2).await.unwrap();
    let api: Api<ClusteredStream> = Api::namespaced(f.client.clone(), &ns2);
    let message = wait_for("the intruder refused", WAIT, || async {
        let s = api.get("evil").await.ok()?.status?;
        let c = s
            .conditions
            .into_iter()
            .find(|c| c.type_ == "StateSynced")?;
        (c.status == "False" && c.reason == "NotOwner").then_some(c.message)
    })
    .await;
    assert!(
        message.contains(&format!("{}/event/{}", f.ns, instance_name(EAST))),
        "{message}"
    );
    wait_for("a Warning Event on the intruder", WAIT, || async {
        events_for(&f.client, &ns2, "evil-east")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("StateItemNotOwned"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = f.item(EAST).await.unwrap();
    assert_eq!(n(&during, "version"), n(&before, "version"), "untouched");
    assert_eq!(s(&during, "cluster"), format!("{}/event", f.ns));
    assert!(b(&during, "distro_open"));
    // The owner goes on writing it.
    f.patch_open(EAST, false);
    let closed = f
        .wait_item("east closed by its owner", EAST, |i| !b(i, "distro_open"))
        .await;
    assert_eq!(
        s(&closed, "owner"),
        format!("{}/event/{}", f.ns, instance_name(EAST))
    );
}
