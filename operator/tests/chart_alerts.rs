//! The Helm chart's PrometheusRule (charts/cvs-operator/templates/prometheusrule.yaml) names only
//! metrics the operator exports, with the suffix Prometheus sees (`_total` on counters, and no
//! `_total` on gauges), so no alert silently watches a series that never exists.

use cvs_operator::metrics::{ConditionLabels, HealthLabels, Metrics};
use std::collections::BTreeMap;
use std::time::Duration;

/// The metrics with one sample in each labelled family (an empty family renders nothing), the
/// StreamInstance `Open=False` flip counted as the cluster reconciler counts it.
fn rendered() -> String {
    let m = Metrics::default();
    m.observe_reconcile("cluster", Duration::from_millis(3));
    m.observe_error("cluster", "kube");
    m.observe_probe("media", Duration::from_millis(3), None);
    m.status_writes
        .get_or_create(&cvs_operator::metrics::ControllerLabels {
            controller: "cluster",
        })
        .inc();
    m.health_transitions
        .get_or_create(&HealthLabels { to: "stale" })
        .inc();
    m.condition_transitions
        .get_or_create(&ConditionLabels {
            kind: "StreamInstance",
            condition: "Open".to_owned(),
            status: "False".to_owned(),
        })
        .inc();
    m.render()
}

/// Every exported metric family by name, with its type, from the `# TYPE` lines.
fn exported() -> BTreeMap<String, String> {
    rendered()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some((name.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// The series names a sample of `family` carries (a counter `x` is sampled as `x_total`; a
/// histogram `x` as `x_bucket`, `x_sum` and `x_count`).
fn series_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{family}_total")],
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_owned()],
    }
}

/// The `cvs_...` names in a text: a maximal run of `[a-z0-9_]` starting with `cvs_`.
fn cvs_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("cvs_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !preceded {
            names.push(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn every_metric_the_alerts_use_is_exported() {
    let rule = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../charts/cvs-operator/templates/prometheusrule.yaml"),
    )
    .unwrap();
    let exported = exported();
    assert!(
        exported.contains_key("cvs_stale_renditions"),
        "{exported:?}"
    );
    let known: Vec<String> = exported
        .iter()
        .flat_map(|(family, kind)| series_names(family, kind))
        .collect();
    let used = cvs_names(&rule);
    assert!(used.len() >= 6, "the rule names too few metrics: {used:?}");
    // The region-closed alert selects the flip by the labels the operator gives it.
    let selector = r#"kind="StreamInstance",condition="Open",status="False""#;
    assert!(rule.contains(selector), "{rule}");
    assert!(
        rendered().contains(&format!("cvs_condition_transitions_total{{{selector}}} 1")),
        "{}",
        rendered()
    );
    for name in &used {
        assert!(
            known.contains(name),
            "the PrometheusRule names {name}, which the operator does not export; exported: {known:?}"
        );
    }
}

#[test]
fn a_misspelt_metric_is_caught() {
    let exported = exported();
    let known: Vec<String> = exported
        .iter()
        .flat_map(|(family, kind)| series_names(family, kind))
        .collect();
    assert!(known.contains(&"cvs_state_errors_total".to_owned()));
    assert!(!known.contains(&"cvs_state_errors".to_owned()));
    assert!(!known.contains(&"cvs_stale_renditions_total".to_owned()));
    assert_eq!(
        cvs_names("rate(cvs_sns_failures_total{job=\"x\"}[5m]) > 0 or my_cvs_other"),
        vec!["cvs_sns_failures_total".to_owned()]
    );
}
