//! The CRDs deleted and created again while the operator runs (a cluster rebuilt by Argo CD, a
//! chart uninstalled by mistake): `/readyz` says not ready while they are missing, and once they
//! are back a new StreamInstance is reconciled within seconds. A test binary of its own,
//! because deleting the CRDs deletes every custom object in the cluster.

use cvs_e2e::*;
use cvs_operator::resources::StreamInstance;
use kube::api::Api;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_recovers_when_its_crds_are_deleted_and_created_again() {
    install_crds();
    let ns = namespace("crd-lifecycle");
    let operator = Operator::start("crd-lifecycle", &ns)
        .await
        .expect("operator starts");
    assert_eq!(operator.get("/readyz").await.unwrap().0, 200);

    let crds = repo_root().join("crds");
    kubectl_ok(
        &["delete", "-f", crds.to_str().unwrap(), "--wait=true"],
        None,
    );
    let why = wait_for(
        "/readyz to fail while the CRDs are missing",
        Duration::from_secs(30),
        || async {
            let (code, body) = operator.get("/readyz").await.ok()?;
            (code == 503).then_some(body)
        },
    )
    .await;
    assert!(why.contains("watch"), "{why}");
    // Missing CRDs are not a dead process: liveness holds.
    assert_eq!(operator.get("/healthz").await.unwrap().0, 200);
    // Long enough for kube's default backoff to have grown (to 12.8 s and more).
    tokio::time::sleep(Duration::from_secs(20)).await;

    install_crds();
    let back = Instant::now();
    let instance = "apiVersion: cvs.dev/v1alpha1\nkind: StreamInstance\nmetadata:\n  name: after\nspec:\n  clusteredStream: no-such-stream\n  region: us-east-1\n  cloudfront: {domain: d-after.cloudfront.net}\n  origin: {url: \"http://127.0.0.1:1/master.m3u8\"}\n";
    // The API server may need a moment after Established before it stores objects of the kind.
    wait_for(
        "the instance to be created",
        Duration::from_secs(30),
        || async {
            kubectl(&["apply", "-n", &ns, "-f", "-"], Some(instance))
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let client = client().await;
    let instances: Api<StreamInstance> = Api::namespaced(client, &ns);
    // Generous for a loaded 2-core machine; before, the operator stayed blind for minutes.
    wait_for(
        "the new instance to be reconciled",
        Duration::from_secs(30),
        || async {
            let s = instances.get("after").await.ok()?.status?;
            s.conditions
                .iter()
                .any(|c| c.type_ == "Bound" && c.reason == "ClusteredStreamNotFound")
                .then_some(())
        },
    )
    .await;
    eprintln!("reconciled {:?} after the CRDs were back", back.elapsed());
    wait_for("/readyz to recover", Duration::from_secs(30), || async {
        (operator.get("/readyz").await.ok()?.0 == 200).then_some(())
    })
    .await;
    let log = operator.log_text();
    assert!(
        log.contains("WARN") && log.contains("watch failed"),
        "watch errors are logged at WARN: {log}"
    );
}
