//! The dashboard end to end, against the real API server (RBAC, ServiceAccount tokens from the
//! TokenRequest API), DynamoDB Local, moto and the HLS simulator: who may read and act is the
//! cluster's decision; a permitted close changes the StreamInstance, the state table and leaves
//! an Event naming the person; the live stream shows a frozen rendition within the detection
//! bound plus one second; and hundreds of open pages cost the API server nothing.

use aws_sdk_dynamodb::types::AttributeValue;
use cvs_e2e::*;
use cvs_operator::resources::StreamInstance;
use hls_sim::api::{FaultKind, FaultRequest, ResourceFilter};
use hls_sim::{SimConfig, SimHandle, Simulator};
use kube::api::Api;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const STREAM: &str = "s0001";
const WAIT: Duration = Duration::from_secs(40);
/// The simulator's target duration; the staleness bound is 1.5 times it.
const TD: Duration = Duration::from_secs(2);

/// The tests read the API server's request counters, so they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Fixture {
    sim: SimHandle,
    ns: String,
    table: String,
    client: kube::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    operator: Operator,
    /// The dashboard's base URL, `http://127.0.0.1:PORT`.
    base: String,
    http: reqwest::Client,
    _inbox: EventInbox,
}

impl Fixture {
    async fn start(test: &str, extra: &[&str]) -> Fixture {
        install_crds();
        let sim = Simulator::start(SimConfig {
            regions: vec![EAST.into(), WEST.into()],
            streams: 1,
            renditions: 2,
            audio_renditions: 1,
            target_duration: TD,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let ns = namespace(test);
        let inbox = EventInbox::create(&ns).await.unwrap();
        let table = format!("{ns}-state");
        let mut manifest = format!(
            "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: {table}, region: us-east-1, create: true}}\n  minOpen: 1\n  notifications: {{snsTopicArn: \"{}\"}}\n",
            inbox.topic_arn
        );
        for region in [EAST, WEST] {
            manifest.push_str(&format!(
                "---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {}\nspec:\n  clusteredStream: event\n  region: {region}\n  cloudfront: {{domain: {}}}\n  origin: {{url: \"{}\"}}\n",
                instance_name(region),
                instance_domain(region),
                sim.master_url(region, STREAM).unwrap()
            ));
        }
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
        // Two people: `closer` may patch StreamInstances in this namespace, `watcher` may not.
        let rbac = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: closer}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: watcher}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: close-regions}}\nrules:\n  - apiGroups: [cvs.dev]\n    resources: [streaminstances]\n    verbs: [get, patch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: closer}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: close-regions}}\nsubjects:\n  - {{kind: ServiceAccount, name: closer, namespace: {ns}}}\n"
        );
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&rbac));
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec![
            "--dashboard-addr",
            addr.as_str(),
            "--probe-timeout",
            "1500ms",
        ];
        args.extend_from_slice(extra);
        if extra.contains(&"--leader-election") {
            args.extend_from_slice(&[
                "--leader-election-namespace",
                ns.as_str(),
                "--leader-election-identity",
                "replica-a",
            ]);
        }
        let operator = Operator::start_with(test, &ns, &args)
            .await
            .expect("operator starts");
        let aws = aws_config().await;
        Fixture {
            sim,
            table,
            client: client().await,
            dynamodb: aws_sdk_dynamodb::Client::new(&aws),
            operator,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _inbox: inbox,
            ns,
        }
    }

    /// A token for ServiceAccount `sa` of the test namespace, from the TokenRequest API.
    fn token(&self, sa: &str) -> String {
        kubectl_ok(
            &["create", "token", sa, "-n", &self.ns, "--duration", "1h"],
            None,
        )
        .trim()
        .to_owned()
    }

    async fn sign_in(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/session", self.base))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "token": token }).to_string())
            .send()
            .await
            .unwrap()
    }

    /// Signs in as ServiceAccount `sa`: the session cookie and CSRF token.
    async fn session(&self, sa: &str) -> Session {
        let r = self.sign_in(&self.token(sa)).await;
        assert_eq!(r.status(), 200, "sign-in as {sa}");
        let cookie = r
            .headers()
            .get("set-cookie")
            .expect("a session cookie")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let body = json_of(r).await;
        assert_eq!(
            body["user"],
            format!("system:serviceaccount:{}:{sa}", self.ns)
        );
        Session {
            cookie: cookie.split(';').next().unwrap().to_owned(),
            csrf: body["csrfToken"].as_str().unwrap().to_owned(),
        }
    }

    async fn get(&self, path: &str, session: Option<&Session>) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(s) = session {
            r = r.header("cookie", &s.cookie);
        }
        r.send().await.unwrap()
    }

    async fn set_open(
        &self,
        region: &str,
        open: bool,
        session: Option<&Session>,
        csrf: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!(
                "{}/api/namespaces/{}/streaminstances/{}/distro-open",
                self.base,
                self.ns,
                instance_name(region)
            ))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "open": open }).to_string());
        if let Some(s) = session {
            r = r.header("cookie", &s.cookie);
        }
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t);
        }
        r.send().await.unwrap()
    }

    async fn instance(&self, region: &str) -> StreamInstance {
        Api::<StreamInstance>::namespaced(self.client.clone(), &self.ns)
            .get(&instance_name(region))
            .await
            .unwrap()
    }

    async fn item(&self, region: &str) -> Option<HashMap<String, AttributeValue>> {
        state_item(&self.dynamodb, &self.table, &instance_domain(region))
            .await
            .ok()?
    }

    /// Waits until both instances are healthy and open in the state table.
    async fn wait_serving(&self) {
        for region in [EAST, WEST] {
            wait_for(
                &format!("{region} open and fresh in the table"),
                WAIT,
                || async {
                    let item = self.item(region).await?;
                    (b(&item, "distro_open") && b(&item, "playlist_fresh")).then_some(())
                },
            )
            .await;
        }
    }
}

struct Session {
    cookie: String,
    csrf: String,
}

fn b(item: &HashMap<String, AttributeValue>, k: &str) -> bool {
    item.get(k).is_some_and(|v| *v.as_bool().unwrap())
}

async fn json_of(r: reqwest::Response) -> Value {
    let bytes = r.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)))
}

/// A live event stream as a page reads it.
struct Events {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Events {
    /// The next `state` event's snapshot, within `within`.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let message: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(message).unwrap();
                if let Some(data) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .filter(|_| text.starts_with("event: state\n"))
                {
                    return Some(serde_json::from_str(data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

fn instance_of<'a>(snapshot: &'a Value, name: &str) -> Option<&'a Value> {
    snapshot["clusters"][0]["instances"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == name)
}

/// The API server's request counters: (every request, requests a viewer could have caused:
/// reads of either kind and token or access reviews).
async fn apiserver_requests(client: &kube::Client) -> (f64, f64) {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .expect("the API server's /metrics");
    let (mut all, mut viewer) = (0.0, 0.0);
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        all += value;
        let read = labels.contains("group=\"cvs.dev\"")
            && ["GET", "LIST", "WATCH"]
                .iter()
                .any(|v| labels.contains(&format!("verb=\"{v}\"")));
        let review = labels.contains("resource=\"tokenreviews\"")
            || labels.contains("resource=\"subjectaccessreviews\"");
        if read || review {
            viewer += value;
        }
    }
    (all, viewer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_token_the_api_server_accepts_and_its_rbac_let_a_person_close_a_region() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::start("dash-auth", &[]).await;
    f.wait_serving().await;

    // No token: nothing.
    for path in ["/api/state", "/api/events", "/api/session"] {
        let r = f.get(path, None).await;
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(json_of(r).await["error"].is_string());
    }
    let r = f.set_open(EAST, false, None, None).await;
    assert_eq!(r.status(), 401);
    // A token the API server does not accept: no session.
    let r = f
        .sign_in("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl")
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = f.sign_in("not a token").await;
    assert_eq!(r.status(), 401);

    let watcher = f.session("watcher").await;
    let closer = f.session("closer").await;
    // Reading needs only a session.
    let r = f.get("/api/state", Some(&watcher)).await;
    assert_eq!(r.status(), 200);
    let state = json_of(r).await;
    assert_eq!(state["clusters"][0]["name"], "event");
    assert_eq!(state["operator"]["leader"], true);

    // No (or someone else's) CSRF token: refused, whoever asks.
    for (who, csrf) in [(&closer, None), (&closer, Some(watcher.csrf.as_str()))] {
        let r = f.set_open(EAST, false, Some(who), csrf).await;
        assert_eq!(r.status(), 403);
        assert_eq!(json_of(r).await["error"], "CSRF token missing or wrong");
    }

    // Without RBAC permission: refused, and nothing changes.
    let r = f
        .set_open(EAST, false, Some(&watcher), Some(&watcher.csrf))
        .await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        json_of(r).await["error"],
        format!(
            "system:serviceaccount:{}:watcher may not patch streaminstances/{} in {}",
            f.ns,
            instance_name(EAST),
            f.ns
        )
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let east = f.instance(EAST).await;
    assert!(east.spec.distro_open, "the refused close changed nothing");
    assert!(
        east.metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .all(|m| m.manager.as_deref() != Some("cvs-dashboard")),
        "the dashboard wrote nothing"
    );
    let item = f.item(EAST).await.unwrap();
    assert!(b(&item, "distro_open") && b(&item, "desired_open"));

    // The permitted person closes us-east-1.
    let r = f
        .set_open(EAST, false, Some(&closer), Some(&closer.csrf))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(r).await,
        serde_json::json!({"namespace": f.ns, "name": instance_name(EAST), "distroOpen": false})
    );
    let east = f.instance(EAST).await;
    assert!(!east.spec.distro_open);
    assert!(
        east.metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref() == Some("cvs-dashboard")),
        "patched under the cvs-dashboard field manager"
    );
    wait_for("us-east-1 closed in the state table", WAIT, || async {
        let item = f.item(EAST).await?;
        (!b(&item, "distro_open") && !b(&item, "desired_open")).then_some(())
    })
    .await;
    let user = format!("system:serviceaccount:{}:closer", f.ns);
    let event = wait_for("the Event naming the person", WAIT, || async {
        events_for(&f.client, &f.ns, &instance_name(EAST))
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("DistroOpenChangedFromDashboard"))
    })
    .await;
    assert_eq!(
        event.message.as_deref(),
        Some(format!("{user} set distroOpen=false from the dashboard").as_str())
    );
    // The snapshot follows, and its timeline names the person and carries the SNS sequence of
    // the state-table change.
    let state = wait_for("the snapshot shows us-east-1 closed", WAIT, || async {
        let state = json_of(f.get("/api/state", Some(&watcher)).await).await;
        let east = instance_of(&state, &instance_name(EAST))?;
        let timeline = state["clusters"][0]["timeline"].as_array()?;
        let announced = timeline.iter().any(|e| {
            e["instance"] == instance_name(EAST)
                && e["kind"] == "OpenChanged"
                && e["eventSeq"].is_u64()
        });
        (east["desiredOpen"] == false && east["effectiveOpen"] == false && announced)
            .then_some(state)
    })
    .await;
    let timeline = state["clusters"][0]["timeline"].as_array().unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e["kind"] == "DistroOpenChangedFromDashboard" && e["user"] == user.as_str()),
        "{timeline:?}"
    );
    assert_eq!(state["clusters"][0]["effectiveOpenCount"], 1);
    assert_eq!(state["clusters"][0]["desiredOpenCount"], 1);

    // minOpen holds whatever the dashboard asks: closing the other too leaves it open.
    let r = f
        .set_open(WEST, false, Some(&closer), Some(&closer.csrf))
        .await;
    assert_eq!(r.status(), 200);
    wait_for("eu-west-1 held open for minOpen", WAIT, || async {
        let state = json_of(f.get("/api/state", Some(&watcher)).await).await;
        let west = instance_of(&state, &instance_name(WEST))?.clone();
        (west["openReason"] == "HeldOpenForMinOpen" && west["effectiveOpen"] == true).then_some(())
    })
    .await;

    // Signed out, the session is gone.
    let r = f
        .http
        .delete(format!("{}/api/session", f.base))
        .header("cookie", &closer.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = f
        .set_open(EAST, true, Some(&closer), Some(&closer.csrf))
        .await;
    assert_eq!(r.status(), 401);
    drop(f.operator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_shows_a_frozen_rendition_and_viewers_cost_the_api_server_nothing() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::start("dash-live", &[]).await;
    f.wait_serving().await;
    let watcher = f.session("watcher").await;
    let open_stream = || async {
        let r = f.get("/api/events", Some(&watcher)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Events {
            response: r,
            buffer: Vec::new(),
        }
    };
    let mut events = open_stream().await;
    let east = instance_name(EAST);
    // Every rendition of us-east-1 judged fresh on the page first.
    let started = Instant::now();
    loop {
        let s = events
            .next(WAIT)
            .await
            .expect("snapshots on the event stream");
        let all_fresh = instance_of(&s, &east)
            .and_then(|i| i["renditions"].as_array())
            .is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["fresh"] == true));
        if all_fresh {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "us-east-1 never all fresh on the page"
        );
    }

    let frozen_at = Instant::now();
    f.sim
        .apply_fault(
            FaultRequest::new(FaultKind::Freeze)
                .region(EAST)
                .stream(STREAM)
                .rendition("720p")
                .resource(ResourceFilter::Media),
        )
        .await
        .expect("fault applies");
    let (stale, shown_after) = loop {
        let s = events
            .next(WAIT)
            .await
            .expect("snapshots keep coming while a rendition freezes");
        let stale = instance_of(&s, &east)
            .and_then(|i| i["renditions"].as_array())
            .and_then(|r| r.iter().find(|r| r["fresh"] == false).cloned());
        if let Some(r) = stale {
            break (r, frozen_at.elapsed());
        }
        assert!(frozen_at.elapsed() < WAIT, "no stale rendition on the page");
    };
    assert!(stale["uri"].as_str().unwrap().contains("720p"), "{stale}");
    // The detection bound (1.5 x TD + 250 ms after the playlist's last new segment, which is at
    // or before the freeze) plus one second for the page.
    let bound = TD.mul_f64(1.5) + Duration::from_millis(250) + Duration::from_secs(1);
    println!(
        "frozen rendition shown stale on the event stream {} ms after the freeze (bound {} ms); ageMs {} boundMs {}",
        shown_after.as_millis(),
        bound.as_millis(),
        stale["ageMs"],
        stale["boundMs"]
    );
    assert!(
        shown_after <= bound,
        "shown stale {shown_after:?} after the freeze; bound {bound:?}"
    );
    assert_eq!(stale["boundMs"], 3000, "{stale}");

    // 200 pages open at once cost the API server nothing: no read of either kind, no review.
    const PAGES: usize = 200;
    let (all_before, viewer_before) = apiserver_requests(&f.client).await;
    let mut pages = Vec::with_capacity(PAGES);
    for _ in 0..PAGES {
        pages.push(open_stream().await);
    }
    for page in &mut pages {
        page.next(Duration::from_secs(10))
            .await
            .expect("each page gets a snapshot at once");
    }
    // Hold them through several updates, and read the state as often as a poller would.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..100 {
        assert_eq!(f.get("/api/state", Some(&watcher)).await.status(), 200);
    }
    for page in &mut pages {
        page.next(Duration::from_secs(10))
            .await
            .expect("each page keeps getting snapshots");
    }
    let (all_after, viewer_after) = apiserver_requests(&f.client).await;
    println!(
        "{PAGES} event streams for ~6 s and 100 state reads: {} viewer-kind API requests, {} API requests in all (the operator's own work and this test's /metrics reads included)",
        viewer_after - viewer_before,
        all_after - all_before
    );
    assert_eq!(
        viewer_after - viewer_before,
        0.0,
        "viewers caused reads or reviews at the API server"
    );
    // Open pages do not hold up a shutdown: their streams end and the operator exits cleanly.
    let code = f
        .operator
        .terminate(Duration::from_secs(15))
        .await
        .expect("the operator stops with 200 pages open");
    assert_eq!(code, Some(0));
    drop(pages);
}

/// Every replica serves the dashboard: a standby shows what the leader writes to status (through
/// watches of its own), and once it leads, the probe engine's live state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_shows_what_the_leader_writes_until_it_leads() {
    let _serial = SERIAL.lock().await;
    // The Lease lives in the test's namespace (see Fixture::start).
    let mut f = Fixture::start("dash-standby", &["--leader-election"]).await;
    f.wait_serving().await;
    let port = free_port();
    let standby_addr = format!("127.0.0.1:{port}");
    let standby = Operator::start_with(
        "dash-standby-b",
        &f.ns,
        &[
            "--dashboard-addr",
            &standby_addr,
            "--probe-timeout",
            "1500ms",
            "--leader-election",
            "--leader-election-namespace",
            &f.ns,
            "--leader-election-identity",
            "replica-b",
        ],
    )
    .await
    .expect("the standby starts");
    f.base = format!("http://{standby_addr}");
    let watcher = f.session("watcher").await;
    let state = wait_for("the standby's snapshot of both instances", WAIT, || async {
        let state = json_of(f.get("/api/state", Some(&watcher)).await).await;
        let both = [EAST, WEST].iter().all(|r| {
            instance_of(&state, &instance_name(r)).is_some_and(|i| {
                i["healthy"] == true
                    && i["renditions"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["fresh"] == true))
            })
        });
        both.then_some(state)
    })
    .await;
    assert_eq!(state["operator"]["leader"], false, "{}", state["operator"]);

    // The leader stops (and releases the Lease): the standby leads and shows live state.
    let leader = std::mem::replace(&mut f.operator, standby);
    leader
        .terminate(Duration::from_secs(20))
        .await
        .expect("the leader stops");
    wait_for("the new leader's live snapshot", WAIT, || async {
        let state = json_of(f.get("/api/state", Some(&watcher)).await).await;
        let east = instance_of(&state, &instance_name(EAST))?;
        (state["operator"]["leader"] == true
            && east["renditions"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["judged"] == true)))
        .then_some(())
    })
    .await;
}
