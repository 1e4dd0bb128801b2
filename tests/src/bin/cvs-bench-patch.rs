//! Benchmark: the delay from `kubectl patch ... distroOpen` to the state-table item changing.
//!
//! Needs the environment with DynamoDB Local (`eval "$(tests/env/up.sh)"`) and a built
//! operator (`target/release/cvs-operator`, or `CVS_OPERATOR_BIN`). Creates a namespace with one
//! ClusteredStream (minOpen 1) and two StreamInstances (plus `--extra-instances`, all with
//! unreachable origins), then closes and reopens one instance
//! `--patches` times through the API server, each time timing from the moment the patch request
//! is sent to the moment a strongly consistent read of its item shows the new `distro_open`
//! (polled every 5 ms). Patches are spaced by a random 0-250 ms so they never fall into step with
//! anything periodic in the operator. Prints p50/p90/p99/max, and the same for the API server's
//! answer to the patch alone (the part of the delay that is not the operator's).
//!
//! With `--steering`, the ClusteredStream also publishes a steering manifest to a bucket in
//! moto's S3, and each patch is also timed to the moment the manifest object in S3, and the one
//! the operator serves at `/steering/<namespace>/event.json`, list (or stop listing) the patched
//! region (both polled every 5 ms, concurrently with the table).

use anyhow::Context as _;
use aws_sdk_dynamodb::types::AttributeValue;
use clap::Parser;
use cvs_e2e::*;
use kube::api::{Api, Patch, PatchParams};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Patches to time (each one flips the instance).
    #[arg(long, default_value_t = 100)]
    patches: usize,
    /// More StreamInstances in the same ClusteredStream, so the patch competes with the work of
    /// a larger cluster (each probed and written to the table like the timed one).
    #[arg(long, default_value_t = 0)]
    extra_instances: usize,
    /// Also time the steering manifest, in S3 and at the operator's HTTP endpoint.
    #[arg(long)]
    steering: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    require_env();
    install_crds();
    let ns = namespace("bench-patch");
    let table = format!("{ns}-state");
    let mut manifest = format!(
        "apiVersion: cvs.dev/v1alpha1\nkind: ClusteredStream\nmetadata:\n  name: event\nspec:\n  stateTable: {{name: {table}, region: us-east-1, create: true}}\n"
    );
    let bucket = format!("{ns}-playlist");
    let aws = aws_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws)
            .force_path_style(true)
            .build(),
    );
    if args.steering {
        s3.create_bucket().bucket(&bucket).send().await?;
        manifest.push_str(&format!(
            "  playlist:\n    targets: [{{region: us-east-1, bucket: {bucket}, key: {STEERING_MASTER}}}]\n  steering: {{enabled: true, serverUri: \"https://d-us-east-1.cloudfront.net/{STEERING_KEY}\"}}\n"
        ));
    }
    for region in ["us-east-1", "eu-west-1"] {
        manifest.push_str(&format!(
            "---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: {region}\nspec:\n  clusteredStream: event\n  region: {region}\n  cloudfront: {{domain: d-{region}.cloudfront.net}}\n  origin: {{url: \"http://127.0.0.1:9/master.m3u8\"}}\n"
        ));
    }
    for n in 0..args.extra_instances {
        manifest.push_str(&format!(
            "---\napiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: extra-{n}\nspec:\n  clusteredStream: event\n  region: us-west-2\n  cloudfront: {{domain: d-extra-{n}.cloudfront.net}}\n  origin: {{url: \"http://127.0.0.1:9/extra-{n}.m3u8\"}}\n"
        ));
    }
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    let operator = Operator::start("bench-patch", &ns).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let steering_url = format!("http://{}/steering/{ns}/event.json", operator.addr);
    // Whether the steering manifest lists eu-west-1, in S3 and at the HTTP endpoint.
    let s3_lists = || async {
        let out = s3
            .get_object()
            .bucket(&bucket)
            .key(STEERING_KEY)
            .send()
            .await
            .ok()?;
        let body = out.body.collect().await.ok()?.into_bytes();
        Some(lists_west(&body))
    };
    let http_lists = || async {
        let r = http.get(&steering_url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        Some(lists_west(&r.bytes().await.ok()?))
    };
    let item_open = || async {
        let out = dynamodb
            .get_item()
            .table_name(&table)
            .key(
                "domain",
                AttributeValue::S("d-eu-west-1.cloudfront.net".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .ok()?;
        out.item?.get("distro_open")?.as_bool().ok().copied()
    };
    // The item exists and is open before timing starts.
    wait_for("the first item", Duration::from_secs(60), || async {
        (item_open().await == Some(true)).then_some(())
    })
    .await;
    if args.steering {
        wait_for(
            "the first steering manifest",
            Duration::from_secs(60),
            || async {
                (s3_lists().await == Some(true) && http_lists().await == Some(true)).then_some(())
            },
        )
        .await;
    }

    let api: Api<cvs_operator::resources::StreamInstance> = Api::namespaced(client().await, &ns);
    let mut to_table = Vec::with_capacity(args.patches);
    let mut api_answer = Vec::with_capacity(args.patches);
    let mut to_s3 = Vec::with_capacity(args.patches);
    let mut to_http = Vec::with_capacity(args.patches);
    for i in 0..args.patches {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..250))).await;
        let open = i % 2 == 1;
        let patch = serde_json::json!({"spec": {"distroOpen": open}});
        let sent = Instant::now();
        api.patch("eu-west-1", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        api_answer.push(ms(sent.elapsed()));
        let table_seen = async {
            loop {
                if item_open().await == Some(open) {
                    return Ok(ms(sent.elapsed()));
                }
                if sent.elapsed() > Duration::from_secs(30) {
                    anyhow::bail!("patch {i} did not reach the table within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let seen = |what: &'static str, lists: bool| async move {
            if !args.steering {
                return Ok(None);
            }
            loop {
                let now = match what {
                    "s3" => s3_lists().await,
                    _ => http_lists().await,
                };
                if now == Some(lists) {
                    return Ok(Some(ms(sent.elapsed())));
                }
                if sent.elapsed() > Duration::from_secs(30) {
                    anyhow::bail!(
                        "patch {i} did not reach the steering manifest ({what}) within 30 s"
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let (table_ms, s3_ms, http_ms) =
            tokio::try_join!(table_seen, seen("s3", open), seen("http", open))?;
        to_table.push(table_ms);
        to_s3.extend(s3_ms);
        to_http.extend(http_ms);
    }
    println!("| measured | patches | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    let to_table = dist(to_table).context("no patches timed")?;
    row("patch sent -> item changed", &to_table);
    if let Some(d) = dist(to_s3) {
        row("patch sent -> steering manifest in S3 changed", &d);
    }
    if let Some(d) = dist(to_http) {
        row(
            "patch sent -> steering manifest at the HTTP endpoint changed",
            &d,
        );
    }
    row(
        "patch sent -> API server answered",
        &dist(api_answer).context("no patches timed")?,
    );
    println!(
        "\ngoal p99 < 1000 ms: {} (p99 {} ms)",
        if to_table.p99 < 1000 {
            "met"
        } else {
            "not met"
        },
        to_table.p99
    );
    Ok(())
}

const STEERING_MASTER: &str = "live/event/master.m3u8";
const STEERING_KEY: &str = "live/event/master.steering.json";

/// Whether a steering manifest's PATHWAY-PRIORITY lists eu-west-1 (the patched region).
fn lists_west(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v["PATHWAY-PRIORITY"]
                .as_array()
                .map(|a| a.iter().any(|p| p == "eu-west-1"))
        })
        .unwrap_or(false)
}

/// Whole milliseconds, rounded.
fn ms(d: Duration) -> i64 {
    (d.as_secs_f64() * 1000.0).round() as i64
}

/// Prints one Markdown row of a distribution's percentiles.
fn row(what: &str, d: &Dist) {
    println!(
        "| {what} | {} | {} ms | {} ms | {} ms | {} ms |",
        d.n, d.p50, d.p90, d.p99, d.max
    );
}
