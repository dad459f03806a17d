//! `ipam-cli events` (listing, paging, pool filter, `--follow` as table rows and JSON lines)
//! and `ipam-cli ip history` against a node in this process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::TestNode;

fn setup(node: &TestNode) {
    node.ok(&["ip-pool", "create", "vms", "10.0.0.0/29", "--no-gateway"]);
    node.ok(&["ip-pool", "create", "db", "10.1.0.0/29", "--no-gateway"]);
    node.ok(&["ip", "allocate", "vms", "--owner", "web-1"]);
    node.ok(&["ip", "release", "vms", "10.0.0.1"]);
    node.ok(&["ip", "allocate", "vms", "--owner", "web-2"]);
}

/// A `--follow` child and a thread forwarding its stdout lines.
struct Follow {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follow {
    fn start(node: &TestNode, args: &[&str]) -> Follow {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ipam-cli"))
            .env_remove("IPAM_ENDPOINT")
            .env_remove("IPAM_TOKEN")
            .arg("--endpoint")
            .arg(node.endpoint())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ipam-cli");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follow { child, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line from --follow")
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_list_and_history() {
    let node = TestNode::start(None);
    setup(&node);
    let out = node.ok(&["events"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID  AT"), "{out}");
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[1].contains("pool_created  vms"), "{out}");
    assert!(
        lines[4].contains("released") && lines[4].contains("web-1"),
        "{out}"
    );

    let list = node.json(&["events", "--pool", "vms", "--limit", "2"]);
    let ids: Vec<&str> = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "3"]);
    assert_eq!(list["next"], "3");
    let out = node.ok(&["events", "--pool", "vms", "--limit", "2"]);
    assert!(out.ends_with("more: --after 3\n"), "{out}");
    let rest = node.json(&["events", "--after", "3"]);
    assert_eq!(rest["events"][0]["kind"], "released");

    let h = node.json(&["ip", "history", "10.0.0.1"]);
    let kinds: Vec<(&str, &str)> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["owner"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("allocated", "web-2"),
            ("released", "web-1"),
            ("allocated", "web-1")
        ]
    );
    let out = node.ok(&["ip", "history", "10.0.0.1", "--limit", "1"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("web-2"), "{out}");
    let out = node.ok(&["ip", "history", "10.9.0.1"]);
    assert_eq!(out, "10.9.0.1 has no recorded events\n");
    let err = node.fails(1, &["ip", "history", "not-an-ip"]);
    assert!(err.contains("invalid_argument"), "{err}");
    let err = node.fails(1, &["events", "--limit", "0"]);
    assert!(err.contains("invalid_argument"), "{err}");
}

#[test]
fn events_follow_prints_each_event_as_it_arrives() {
    let node = TestNode::start(None);
    setup(&node);
    let json = Follow::start(&node, &["-o", "json", "events", "--follow", "--after", "3"]);
    let table = Follow::start(&node, &["events", "--follow", "--pool", "db"]);
    let first: serde_json::Value = serde_json::from_str(&json.line()).expect("JSON line");
    assert_eq!(first["id"], "4");
    assert_eq!(first["kind"], "released");
    let second: serde_json::Value = serde_json::from_str(&json.line()).expect("JSON line");
    assert_eq!(second["id"], "5");
    assert!(table.line().starts_with("        ID  AT"));

    // The header is out, so the table follower is watching: a new write reaches both.
    node.ok(&["ip", "allocate", "db", "--owner", "pg-1"]);
    let third: serde_json::Value = serde_json::from_str(&json.line()).expect("JSON line");
    assert_eq!(third["id"], "6");
    assert_eq!(third["owner"], "pg-1");
    let row = table.line();
    assert!(row.trim_start().starts_with("6  "), "{row}");
    assert!(row.contains("allocated") && row.contains("pg-1"), "{row}");
}
