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

    // Leader election: the Lease in the release namespace, read, created and renewed; nothing
    // else (no list, watch or delete; no other namespace).
    let can_i_lease = |verb: &str, namespace: &str| {
        let out = kubectl(
            &[
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "auth",
                "can-i",
                verb,
                "leases.coordination.k8s.io",
                "-n",
                namespace,
            ],
            None,
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for verb in ["get", "create", "update"] {
        assert_eq!(can_i_lease(verb, &ns), "yes", "{verb} leases in {ns}");
    }
    for verb in ["list", "watch", "delete", "patch"] {
        assert_eq!(can_i_lease(verb, &ns), "no", "{verb} leases in {ns}");
    }
    assert_eq!(
        can_i_lease("get", "default"),
        "no",
        "get leases in another namespace"
    );
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

/// The example event (manifests/event, the kustomization Argo CD syncs) passes every rule of the
/// CRDs in the real API server, the cross-field (CEL) ones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_event_kustomization_is_accepted_by_the_api_server() {
    install_crds();
    let ns = namespace("event");
    let dir = repo_root().join("manifests/event");
    let rendered = kubectl_ok(&["kustomize", dir.to_str().unwrap()], None);
    assert_eq!(
        rendered.matches("kind: StreamInstance").count(),
        3,
        "{rendered}"
    );
    assert_eq!(
        rendered.matches("kind: ClusteredStream").count(),
        1,
        "{rendered}"
    );
    assert_eq!(rendered.matches("namespace: live").count(), 4, "{rendered}");
    let here = rendered.replace("namespace: live", &format!("namespace: {ns}"));
    let out = kubectl_ok(
        &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
        Some(&here),
    );
    assert_eq!(out.matches("(server dry run)").count(), 4, "{out}");
}

/// With `dashboard.enabled`, the chart's rights are enough for the dashboard: the operator, as
/// the chart's ServiceAccount, reviews a person's token, checks their permission and closes an
/// instance for them; without it, the ServiceAccount has none of those rights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_grants_the_dashboard_what_it_needs_only_when_enabled() {
    install_crds();
    let ns = namespace("chart-dash");
    let helm =
        std::env::var("CVS_HELM").expect("CVS_HELM: run through `make test`, which builds helm");
    let chart = repo_root().join("charts/cvs-operator");
    // A release name of its own: the dashboard's ClusterRole and binding are cluster-wide.
    let release = format!("d{}", std::process::id());
    let render = |extra: &[&str]| {
        let out = Command::new(&helm)
            .args([
                "template",
                &release,
                chart.to_str().unwrap(),
                "--namespace",
                &ns,
            ])
            .args(["--set", &format!("watchNamespace={ns}")])
            .args(extra)
            .output()
            .expect("helm runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let sa = format!("system:serviceaccount:{ns}:{release}-cvs-operator");
    let kubeconfig = std::env::temp_dir().join(format!("{ns}-kubeconfig"));
    impersonating_kubeconfig(&sa, &kubeconfig);
    let can_i = |args: &[&str]| {
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
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&render(&[])));
    assert_eq!(
        can_i(&["create", "tokenreviews.authentication.k8s.io"]),
        "no"
    );
    assert_eq!(
        can_i(&["create", "subjectaccessreviews.authorization.k8s.io"]),
        "no"
    );
    assert_eq!(
        can_i(&["patch", "streaminstances.cvs.dev", "-n", &ns]),
        "no"
    );

    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&render(&["--set", "dashboard.enabled=true"])),
    );
    assert_eq!(
        can_i(&["create", "tokenreviews.authentication.k8s.io"]),
        "yes"
    );
    assert_eq!(
        can_i(&["create", "subjectaccessreviews.authorization.k8s.io"]),
        "yes"
    );
    assert_eq!(
        can_i(&["patch", "streaminstances.cvs.dev", "-n", &ns]),
        "yes"
    );
    assert_eq!(
        can_i(&["update", "streaminstances.cvs.dev", "-n", &ns]),
        "no"
    );

    // A person allowed to patch StreamInstances signs in and closes one, through the operator
    // running with nothing but the chart's rights.
    let example = std::fs::read_to_string(repo_root().join("manifests/example.yaml")).unwrap();
    kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&example));
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: closer}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: closer}}\nrules:\n  - {{apiGroups: [cvs.dev], resources: [streaminstances], verbs: [patch]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: closer}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: closer}}\nsubjects:\n  - {{kind: ServiceAccount, name: closer, namespace: {ns}}}\n"
        )),
    );
    let token = kubectl_ok(&["create", "token", "closer", "-n", &ns], None);
    let dashboard = format!("127.0.0.1:{}", free_port());
    let operator = Operator::start_full(
        "chart-dash",
        &ns,
        &["--probe-timeout", "1s", "--dashboard-addr", &dashboard],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap().to_owned())],
    )
    .await
    .expect("the operator starts with the chart's permissions");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{dashboard}/api/session"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "token": token.trim() }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", operator.log_text());
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let r = http
        .post(format!(
            "http://{dashboard}/api/namespaces/{ns}/streaminstances/live-event-us-east-1/distro-open"
        ))
        .header("cookie", &cookie)
        .header("x-csrf-token", body["csrfToken"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(r#"{"open": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", operator.log_text());
    let instances: Api<StreamInstance> = Api::namespaced(client().await, &ns);
    assert!(
        !instances
            .get("live-event-us-east-1")
            .await
            .unwrap()
            .spec
            .distro_open
    );
    wait_for(
        "the dashboard's Event under the chart's RBAC",
        Duration::from_secs(30),
        || async {
            events_for(&client().await, &ns, "live-event-us-east-1")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("DistroOpenChangedFromDashboard"))
        },
    )
    .await;
    let log = operator.log_text();
    assert!(!log.contains("forbidden"), "{log}");
    let _ = std::fs::remove_file(&kubeconfig);
    for kind in ["clusterrole", "clusterrolebinding"] {
        for name in ["dashboard", "namespaces"] {
            let _ = kubectl(
                &["delete", kind, &format!("{release}-cvs-operator-{name}")],
                None,
            );
        }
    }
}
