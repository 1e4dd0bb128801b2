//! The Helm chart: it renders, the API server accepts every object in both its cluster-wide and
//! namespaced forms, and the permissions it grants are enough for the operator to do its work
//! (the operator runs impersonating the chart's ServiceAccount).

use cvs_e2e::*;
use cvs_operator::resources::StreamInstance;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use std::process::Command;
use std::time::Duration;

fn helm_template(ns: &str, extra: &[&str]) -> String {
    let helm =
        std::env::var("CVS_HELM").expect("CVS_HELM: run through `make test`, which builds helm");
    let chart = repo_root().join("charts/cvs-operator");
    let out = Command::new(helm)
        .args([
            "template",
            "cvs",
            chart.to_str().unwrap(),
            "--namespace",
            ns,
        ])
        .args(extra)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A copy of the test kubeconfig whose user impersonates `user`.
fn impersonating_kubeconfig(user: &str, path: &std::path::Path) {
    let original = std::env::var("KUBECONFIG").unwrap();
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(original).unwrap()).unwrap();
    for u in config["users"].as_sequence_mut().unwrap() {
        u["user"]["as"] = serde_yaml::Value::String(user.to_owned());
    }
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_installs_and_grants_exactly_what_the_operator_needs() {
    install_crds();
    let ns = namespace("chart");

    // Cluster-wide form: every object is valid for the real API server.
    let cluster_wide = helm_template(&ns, &[]);
    assert!(cluster_wide.contains("kind: ClusterRole"), "{cluster_wide}");
    kubectl_ok(
        &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
        Some(&cluster_wide),
    );

    // Namespaced form, installed for real.
    let namespaced = helm_template(&ns, &["--set", &format!("watchNamespace={ns}")]);
    assert!(namespaced.contains("kind: Role\n"), "{namespaced}");
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&namespaced));

    let kubeconfig = std::env::temp_dir().join(format!("{ns}-kubeconfig"));
    impersonating_kubeconfig(
        &format!("system:serviceaccount:{ns}:cvs-cvs-operator"),
        &kubeconfig,
    );
    // The ServiceAccount may read its kinds but not change a spec.
    let denied = kubectl(
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "auth",
            "can-i",
            "patch",
            "streaminstances.cvs.dev",
            "-n",
            &ns,
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&denied.stdout).trim(), "no");
    // On the status subresource: patch (server-side apply) only; no get, no update.
    let can_i = |verb: &str, resource: &str| {
        let out = kubectl(
            &[
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "auth",
                "can-i",
                verb,
                resource,
                "--subresource=status",
                "-n",
                &ns,
            ],
            None,
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for resource in ["streaminstances.cvs.dev", "clusteredstreams.cvs.dev"] {
        assert_eq!(can_i("patch", resource), "yes", "patch {resource}/status");
        for verb in ["get", "update"] {
            assert_eq!(can_i(verb, resource), "no", "{verb} {resource}/status");
        }
    }

    // The tenant policy (on by default) may read its own Namespace's annotations, nothing more;
    // Secrets are not readable unless originCredentials.secretAccess is set.
    let plain = |args: &[&str]| {
        let mut all = vec![
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "auth",
            "can-i",
        ];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&kubectl(&all, None).stdout)
            .trim()
            .to_owned()
    };
    assert_eq!(plain(&["get", &format!("namespaces/{ns}")]), "yes");
    assert_eq!(plain(&["get", "namespaces/kube-system"]), "no");
    assert_eq!(plain(&["list", "namespaces"]), "no");
    assert_eq!(plain(&["get", "secrets", "-n", &ns]), "no");
    let with_secrets = helm_template(
        &ns,
        &[
            "--set",
            &format!("watchNamespace={ns}"),
            "--set",
            "originCredentials.secretAccess=true",
        ],
    );
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&with_secrets));
    assert_eq!(plain(&["get", "secrets", "-n", &ns]), "yes");
    assert_eq!(plain(&["list", "secrets", "-n", &ns]), "no");
    assert_eq!(plain(&["watch", "secrets", "-n", &ns]), "no");

    let example = std::fs::read_to_string(repo_root().join("manifests/example.yaml")).unwrap();
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&example));
    let operator = Operator::start_full(
        "chart",
        &ns,
        &["--probe-timeout", "1s"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap().to_owned())],
    )
    .await
    .expect("the operator starts with the chart's permissions");

    let client = client().await;
    let instances: Api<StreamInstance> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "status written under the chart's RBAC",
        Duration::from_secs(30),
        || async {
            let s = instances.get("live-event-us-east-1").await.ok()?.status?;
            let healthy = s.conditions.iter().find(|c| c.type_ == "Healthy")?;
            (s.open == Some(true) && healthy.status == "False").then_some(())
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client, &ns);
    wait_for(
        "an Event recorded under the chart's RBAC",
        Duration::from_secs(30),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| e.reporting_component.as_deref() == Some("cvs-operator"))
        },
    )
    .await;
    let log = operator.log_text();
    assert!(!log.contains("forbidden"), "{log}");
}
