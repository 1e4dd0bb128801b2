//! The merged master playlist and the steering manifest end to end: the operator fetches each
//! instance's master from the HLS origin simulator, merges them, and publishes both objects to
//! moto's S3 (and the manifest at its HTTP endpoint); they follow every state change (close by
//! patch, automatic failover on freeze, heal, instance added, instance deleted), and a
//! publication target that is down is retried without holding back the other.

use cvs_e2e::*;
use cvs_operator::resources::ClusteredStream;
use hls_sim::api::{FaultKind, FaultRequest, ResourceFilter};
use hls_sim::{SimConfig, SimHandle, Simulator};
use kube::api::Api;
use serde_json::Value;
use std::time::Duration;

const EAST: &str = "us-east-1";
const WEST: &str = "eu-west-1";
const SOUTH: &str = "ap-south-1";
const WAIT: Duration = Duration::from_secs(40);
const KEY: &str = "live/event/master.m3u8";
const STEERING_KEY: &str = "live/event/master.steering.json";

struct Fixture {
    sim: SimHandle,
    ns: String,
    s3: aws_sdk_s3::Client,
    east_bucket: String,
    west_bucket: String,
    operator: Operator,
    client: kube::Client,
}

impl Fixture {
    async fn start(test: &str) -> Fixture {
        install_crds();
        let sim = Simulator::start(SimConfig {
            regions: vec![EAST.into(), WEST.into(), SOUTH.into()],
            streams: 1,
            renditions: 2,
            audio_renditions: 1,
            target_duration: Duration::from_secs(1),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let ns = namespace(test);
        let aws = aws_config().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&aws)
                .force_path_style(true)
                .build(),
        );
        let east_bucket = format!("{ns}-east");
        let west_bucket = format!("{ns}-west");
        // Only the east bucket exists at first: the west target is down.
        s3.create_bucket()
            .bucket(&east_bucket)
            .send()
            .await
            .unwrap();
        let manifest = format!(
            "apiVersion: cvs.dev/v1alpha1
kind: ClusteredStream
metadata:
  name: event
spec:
  stateTable: {{name: {ns}-state, region: us-east-1, create: true}}
  failover: {{mode: Automatic, holdDownSeconds: 2}}
  playlist:
    cacheControl: max-age=1
    targets:
    - {{region: us-east-1, bucket: {east_bucket}, key: {KEY}}}
    - {{region: eu-west-1, bucket: {west_bucket}, key: {KEY}}}
  steering:
    enabled: true
    serverUri: https://{}/{STEERING_KEY}
    ttlSeconds: 5
",
            instance_domain(EAST)
        );
        kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
        for region in [EAST, WEST] {
            kubectl_ok(
                &["apply", "-n", &ns, "-f", "-"],
                Some(&region_instance_manifest(&sim, region)),
            );
        }
        let operator = Operator::start_with(
            "publish",
            &ns,
            &["--probe-timeout", "1500ms", "--rediscover-interval", "2s"],
        )
        .await
        .expect("operator starts");
        Fixture {
            sim,
            ns,
            s3,
            east_bucket,
            west_bucket,
            operator,
            client: client().await,
        }
    }

    async fn object(&self, bucket: &str, key: &str) -> Option<(String, String, String)> {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .ok()?;
        let content_type = out.content_type.clone().unwrap_or_default();
        let cache_control = out.cache_control.clone().unwrap_or_default();
        let body = out.body.collect().await.ok()?.into_bytes();
        Some((
            String::from_utf8(body.to_vec()).ok()?,
            content_type,
            cache_control,
        ))
    }

    async fn priority(&self, bucket: &str) -> Option<Vec<String>> {
        let (body, _, _) = self.object(bucket, STEERING_KEY).await?;
        let v: Value = serde_json::from_str(&body).ok()?;
        Some(
            v["PATHWAY-PRIORITY"]
                .as_array()?
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect(),
        )
    }

    async fn http_priority(&self) -> Option<Vec<String>> {
        let (code, body) = self
            .operator
            .get(&format!("/steering/{}/event.json", self.ns))
            .await
            .ok()?;
        if code != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        Some(
            v["PATHWAY-PRIORITY"]
                .as_array()?
                .iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// Waits until the steering manifest in both buckets and at the HTTP endpoint lists `want`.
    async fn wait_priority(&self, what: &str, want: &[&str]) {
        wait_for(what, WAIT, || async {
            let east = self.priority(&self.east_bucket).await?;
            let west = self.priority(&self.west_bucket).await?;
            let http = self.http_priority().await?;
            (east == want && west == want && http == want).then_some(())
        })
        .await
    }

    /// Waits until the master in both buckets lists exactly the pathways `want`.
    async fn wait_master_pathways(&self, what: &str, want: &[&str]) -> String {
        wait_for(what, WAIT, || async {
            let (east, _, _) = self.object(&self.east_bucket, KEY).await?;
            let (west, _, _) = self.object(&self.west_bucket, KEY).await?;
            (east == west && pathways(&east) == want).then_some(east)
        })
        .await
    }

    fn patch(&self, kind: &str, name: &str, patch: &str) {
        kubectl_merge_patch(&self.ns, kind, name, patch);
    }

    async fn published(&self) -> Option<(String, String, String)> {
        let api: Api<ClusteredStream> = Api::namespaced(self.client.clone(), &self.ns);
        let s = api.get("event").await.ok()?.status?;
        let c = s.conditions.into_iter().find(|c| c.type_ == "Published")?;
        Some((c.status, c.reason, c.message))
    }
}

/// The distinct PATHWAY-IDs of a master's variants, sorted.
fn pathways(master: &str) -> Vec<String> {
    let mut p: Vec<String> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF"))
        .filter_map(|l| l.split("PATHWAY-ID=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    p.sort();
    p.dedup();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_steering_follow_every_state_change() {
    let f = Fixture::start("publish").await;

    // The east target publishes although the west one is down; the failure is a condition.
    let master = wait_for("master in the east bucket", WAIT, || async {
        let (body, ct, cc) = f.object(&f.east_bucket, KEY).await?;
        (pathways(&body) == [WEST, EAST]).then_some((body, ct, cc))
    })
    .await;
    assert_eq!(master.1, "application/vnd.apple.mpegurl");
    assert_eq!(master.2, "max-age=1");
    let body = master.0;
    assert!(
        body.contains(&format!("https://{}/", instance_domain(EAST)))
            && body.contains(&format!("https://{}/", instance_domain(WEST))),
        "{body}"
    );
    assert!(
        !body.contains("127.0.0.1"),
        "origin host left in the master:\n{body}"
    );
    assert!(
        body.contains("#EXT-X-CONTENT-STEERING:SERVER-URI="),
        "{body}"
    );
    // The published master is read by hls.js's own parser, as a player would.
    let file = std::env::temp_dir().join(format!("{}-master.m3u8", f.ns));
    std::fs::write(&file, &body).unwrap();
    let parsed = std::process::Command::new(repo_root().join("tests/js/parse-master.sh"))
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let summary = String::from_utf8_lossy(&parsed.stdout);
    assert!(parsed.status.success(), "hls.js: {summary}\n{body}");
    let summary: Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(
        summary["pathways"],
        serde_json::json!([WEST, EAST]),
        "{summary}"
    );
    assert_eq!(summary["steering"]["pathwayId"], WEST, "{summary}");
    let (_, ct, _) = f.object(&f.east_bucket, STEERING_KEY).await.unwrap();
    assert_eq!(ct, "application/json");
    let failing = wait_for("west target reported", WAIT, || async {
        let p = f.published().await?;
        (p.1 == "TargetFailing").then_some(p)
    })
    .await;
    assert_eq!(failing.0, "False");
    assert!(failing.2.contains(&f.west_bucket), "{failing:?}");

    // The target comes back: it is retried and catches up.
    f.s3.create_bucket()
        .bucket(&f.west_bucket)
        .send()
        .await
        .unwrap();
    f.wait_master_pathways("west bucket catches up", &[WEST, EAST])
        .await;
    wait_for("Published", WAIT, || async {
        let p = f.published().await?;
        (p.0 == "True" && p.1 == "Published").then_some(())
    })
    .await;
    f.wait_priority("both healthy", &[WEST, EAST]).await;
    let api: Api<ClusteredStream> = Api::namespaced(f.client.clone(), &f.ns);
    let status = api.get("event").await.unwrap().status.unwrap();
    let playlist = status.playlist.expect("status.playlist");
    assert_eq!(playlist.hash.as_ref().unwrap().len(), 64);
    assert!(playlist.targets.iter().all(|t| t.in_sync), "{playlist:?}");

    // Close east by patch: steering drops it; the master keeps its variants (the default).
    f.patch(
        "streaminstance",
        &instance_name(EAST),
        r#"{"spec":{"distroOpen":false}}"#,
    );
    f.wait_priority("east closed", &[WEST]).await;
    f.wait_master_pathways("east kept in master", &[WEST, EAST])
        .await;
    // With closedVariants: Omit, a closed region leaves the master too.
    f.patch(
        "clusteredstream",
        "event",
        r#"{"spec":{"playlist":{"closedVariants":"Omit"}}}"#,
    );
    f.wait_master_pathways("east omitted", &[WEST]).await;
    f.patch(
        "streaminstance",
        &instance_name(EAST),
        r#"{"spec":{"distroOpen":true}}"#,
    );
    f.wait_priority("east reopened", &[WEST, EAST]).await;
    f.wait_master_pathways("east back in master", &[WEST, EAST])
        .await;

    // Freeze west: automatic failover closes it; heal: it comes back after the hold-down.
    let freeze = f
        .sim
        .apply_fault(
            FaultRequest::new(FaultKind::Freeze)
                .region(WEST)
                .resource(ResourceFilter::Media),
        )
        .await
        .unwrap();
    f.wait_priority("west failed over", &[EAST]).await;
    f.sim.heal_fault(freeze.id).await.unwrap();
    f.wait_priority("west healed", &[WEST, EAST]).await;

    // An instance added joins the master and the steering manifest; deleted, it leaves both.
    kubectl_ok(
        &["apply", "-n", &f.ns, "-f", "-"],
        Some(&region_instance_manifest(&f.sim, SOUTH)),
    );
    f.wait_master_pathways("south added", &[SOUTH, WEST, EAST])
        .await;
    f.wait_priority("south healthy", &[SOUTH, WEST, EAST]).await;
    kubectl_ok(
        &[
            "delete",
            "streaminstance",
            &instance_name(SOUTH),
            "-n",
            &f.ns,
        ],
        None,
    );
    f.wait_master_pathways("south deleted", &[WEST, EAST]).await;
    f.wait_priority("south gone", &[WEST, EAST]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_master_keeps_the_last_good_copy_and_a_never_seen_one_is_left_out() {
    let f = Fixture::start("publish-bad").await;
    f.s3.create_bucket()
        .bucket(&f.west_bucket)
        .send()
        .await
        .unwrap();
    let before = f.wait_master_pathways("both merged", &[WEST, EAST]).await;

    // West's master starts answering 404: its last good copy stays in the merge, with the reason.
    f.sim
        .apply_fault(
            FaultRequest::new(FaultKind::Http404)
                .region(WEST)
                .resource(ResourceFilter::Master),
        )
        .await
        .unwrap();
    // South's master never answers: it is left out, with the reason.
    f.sim
        .apply_fault(
            FaultRequest::new(FaultKind::Http404)
                .region(SOUTH)
                .resource(ResourceFilter::Master),
        )
        .await
        .unwrap();
    kubectl_ok(
        &["apply", "-n", &f.ns, "-f", "-"],
        Some(&region_instance_manifest(&f.sim, SOUTH)),
    );
    let api: Api<ClusteredStream> = Api::namespaced(f.client.clone(), &f.ns);
    let contributions = wait_for("reasons in status", WAIT, || async {
        let playlist = api.get("event").await.ok()?.status?.playlist?;
        let c = playlist.contributions;
        let west = c.iter().find(|c| c.name == instance_name(WEST))?;
        let south = c.iter().find(|c| c.name == instance_name(SOUTH))?;
        (west.reason.contains("last good") && south.reason.contains("never")).then_some(c)
    })
    .await;
    let west = contributions
        .iter()
        .find(|c| c.name == instance_name(WEST))
        .unwrap();
    assert!(west.merged && west.last_good.is_some(), "{west:?}");
    assert!(west.reason.contains("HTTP 404"), "{west:?}");
    let south = contributions
        .iter()
        .find(|c| c.name == instance_name(SOUTH))
        .unwrap();
    assert!(!south.merged, "{south:?}");
    let (now, _, _) = f.object(&f.east_bucket, KEY).await.unwrap();
    assert_eq!(pathways(&now), [WEST, EAST], "{now}");
    assert_eq!(pathways(&before), pathways(&now));

    // Healed, south joins.
    f.sim.heal_all().await;
    f.wait_master_pathways("south joins once its master answers", &[SOUTH, WEST, EAST])
        .await;
}
