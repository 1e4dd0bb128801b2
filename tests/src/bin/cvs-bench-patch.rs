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
    let _operator = Operator::start("bench-patch", &ns).await?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws_config().await);
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

    let api: Api<cvs_operator::resources::StreamInstance> = Api::namespaced(client().await, &ns);
    let mut to_table = Vec::with_capacity(args.patches);
    let mut api_answer = Vec::with_capacity(args.patches);
    for i in 0..args.patches {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..250))).await;
        let open = i % 2 == 1;
        let patch = serde_json::json!({"spec": {"distroOpen": open}});
        let sent = Instant::now();
        api.patch("eu-west-1", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        api_answer.push(ms(sent.elapsed()));
        loop {
            if item_open().await == Some(open) {
                break;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("patch {i} did not reach the table within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        to_table.push(ms(sent.elapsed()));
    }
    println!("| measured | patches | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    let to_table = dist(to_table).context("no patches timed")?;
    row("patch sent -> item changed", &to_table);
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
