//! Every PromQL expression of `deploy/grafana/raft-ipam.json` and `deploy/prometheus/alerts.yml`
//! names only metrics that a real node exports: a node is started in-process, exercised so that
//! every metric family has a sample, and its `/metrics` is compared with the metric names a
//! small PromQL tokenizer finds in the expressions.

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::start;

fn repo_file(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// Aggregation operators: `sum by (x) (...)` puts the grouping between the name and `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names an expression selects: identifiers outside label matchers (`{...}`),
/// ranges (`[...]`), strings and grouping lists (`by (...)`), that are not function calls or
/// keywords. Grafana variables (`$pool`, `$__rate_interval`) are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut grouping_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if grouping_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                grouping_next = false;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers, including `1e-9` and durations like `5m` outside ranges.
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || (chars[i] == '-' && chars[i - 1] == 'e'))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                if KEYWORDS.contains(&lower.as_str()) {
                    grouping_next = matches!(
                        lower.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    );
                } else if chars.get(j) != Some(&'(') && !AGGREGATIONS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    // Template variables: `label_values(metric, label)`.
                    ("definition", Value::String(s)) => {
                        if let Some(inner) = s
                            .strip_prefix("label_values(")
                            .and_then(|r| r.split(',').next())
                        {
                            out.push(inner.trim().to_string());
                        }
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// `expr:` values of the alert rules (block scalars or one line).
fn alert_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest == "|" || rest == ">-" {
            let indent = line.len() - line.trim_start().len();
            let body: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            out.push(body.join("\n"));
        } else {
            out.push(rest.to_string());
        }
    }
    out
}

#[test]
fn the_tokenizer_finds_metrics_and_nothing_else() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{job=~"$job",x="b c"}[$__rate_interval])))
           / clamp_min(b_total offset 5m, 1e-9) - on (job) group_right c:d > bool 0.5 and max without (pool) (e)"#,
    );
    let want: BTreeSet<String> = ["a_bucket", "b_total", "c:d", "e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
}

#[tokio::test]
async fn every_metric_of_the_dashboard_and_the_alerts_is_exported() {
    let dashboard: Value = serde_json::from_str(&repo_file("deploy/grafana/raft-ipam.json"))
        .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let alerts = alert_exprs(&repo_file("deploy/prometheus/alerts.yml"));
    assert_eq!(alerts.len(), 7, "{alerts:?}");

    // A node with a pool, allocations (one of them a cache hit) and a failed allocation, so
    // that every family, labelled ones included, has a sample.
    let n = start(None, true).await;
    let r = n
        .post("/api/v1/pools", json!({"name": "p", "cidr": "10.0.0.0/29"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for _ in 0..2 {
        let r = n
            .post("/api/v1/pools/p/allocations", json!({"owner": "o"}))
            .await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    n.post("/api/v1/pools/missing/allocations", json!({"owner": "o"}))
        .await
        .expect(404, "pool_not_found");
    let r = n.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let exported: BTreeSet<String> = r
        .text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();

    let mut missing = Vec::new();
    let mut named = BTreeSet::new();
    for expr in exprs.iter().chain(&alerts) {
        for name in metric_names(expr) {
            // `up` is Prometheus's own scrape health, not the node's.
            if name != "up" && !exported.contains(&name) {
                missing.push(format!("{name} (in {expr})"));
            }
            named.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "not exported: {missing:#?}\nexported: {exported:#?}"
    );
    // The tokenizer found the metrics the panels are about.
    for m in [
        "ipam_pool_allocated",
        "ipam_pool_capacity_total",
        "ipam_allocation_duration_seconds_bucket",
        "ipam_allocation_errors_total",
        "ipam_raft_is_leader",
        "ipam_cache_hits_total",
        "ipam_http_request_duration_seconds_bucket",
        "ipam_peer_calls_total",
        "ipam_peer_streams_opened_total",
        "ipam_lease_expirations_total",
        "ipam_pool_cooling",
    ] {
        assert!(named.contains(m), "{m} not found in {named:?}");
    }
}
