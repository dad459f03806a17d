//! The real `ipam-cli` binary against a node started in this process (`ipam_node::run` on a
//! `127.0.0.1:0` listener with a temporary data dir): every command, table and JSON output,
//! and the exit status of each error path.

use assert_cmd::Command;
use serde_json::Value;

use crate::common::{fails, TestNode};

/// The line of `table` whose first column is `first`.
fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{table}"))
}

#[test]
fn pool_commands() {
    let node = TestNode::start(None);

    let created = node.ok(&[
        "ip-pool",
        "create",
        "vms",
        "10.0.0.0/24",
        "--reserve",
        "10.0.0.2-10.0.0.9",
        "--reserve",
        "10.0.0.100",
        "--label",
        "env=prod",
        "--label",
        "team=infra",
        "--description",
        "VM network",
    ]);
    // 256 - network - broadcast - gateway 10.0.0.1 - 8 - 1 reserved.
    assert!(created.contains("capacity     244\n"), "{created}");
    assert!(created.contains("gateway      10.0.0.1\n"), "{created}");
    assert!(
        created.contains("reserved     10.0.0.2-10.0.0.9\n             10.0.0.100\n"),
        "{created}"
    );

    let json = node.json(&[
        "ip-pool",
        "create",
        "small",
        "10.1.0.0/29",
        "--no-gateway",
        "--label",
        "env=dev",
    ]);
    assert_eq!(json["gateway"], Value::Null);
    assert_eq!(json["stats"]["capacity"], "6");
    node.ok(&[
        "ip-pool",
        "create",
        "gw",
        "10.2.0.0/24",
        "--gateway",
        "10.2.0.254",
    ]);
    node.ok(&[
        "ip-pool",
        "create",
        "v6",
        "fd00::/64",
        "--label",
        "env=prod",
    ]);

    let table = node.ok(&["ip-pool", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CIDR",
            "GATEWAY",
            "CAPACITY",
            "ALLOCATED",
            "FREE",
            "UTILIZATION"
        ]
    );
    // Numbers are right-aligned: every row ends in the same column.
    assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["gw", "small", "v6", "vms"]);
    assert!(row(&table, "gw").contains("10.2.0.254"), "{table}");
    let v6: Vec<&str> = row(&table, "v6").split_whitespace().collect();
    // A /64 holds 2^64 - 1 allocatable addresses: printed exactly, never through f64.
    assert_eq!(
        v6,
        [
            "v6",
            "fd00::/64",
            "-",
            "18,446,744,073,709,551,615",
            "0",
            "18,446,744,073,709,551,615",
            "0.0%"
        ]
    );

    let filtered = node.ok(&["ip-pool", "list", "--label", "env=prod"]);
    let names: Vec<&str> = filtered
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["v6", "vms"]);
    let json = node.json(&[
        "ip-pool",
        "list",
        "--label",
        "env=prod",
        "--label",
        "team=infra",
    ]);
    assert_eq!(json["pools"].as_array().unwrap().len(), 1);
    assert_eq!(json["pools"][0]["name"], "vms");
    assert_eq!(json["pools"][0]["labels"]["team"], "infra");

    let shown = node.ok(&["ip-pool", "show", "vms"]);
    assert!(shown.contains("description  VM network\n"), "{shown}");
    assert!(
        shown.contains("labels       env=prod,team=infra\n"),
        "{shown}"
    );
    assert!(shown.contains("utilization  0.0%\n"), "{shown}");
    let json = node.json(&["--consistency", "local", "ip-pool", "show", "v6"]);
    assert_eq!(json["stats"]["capacity"], "18446744073709551615");

    // Errors: one line with the node's code, distinct exit statuses.
    let err = node.fails(3, &["ip-pool", "show", "nope"]);
    assert!(err.contains("pool_not_found"), "{err}");
    let err = node.fails(4, &["ip-pool", "create", "other", "10.0.0.128/25"]);
    assert!(err.contains("pool_overlap") && err.contains("vms"), "{err}");
    let err = node.fails(4, &["ip-pool", "create", "vms", "10.9.0.0/24"]);
    assert!(err.contains("pool_exists"), "{err}");
    let err = node.fails(1, &["ip-pool", "create", "bad", "10.3.0.5/24"]);
    assert!(err.contains("invalid_argument"), "{err}");
    node.fails(
        2,
        &[
            "ip-pool",
            "create",
            "x",
            "10.4.0.0/24",
            "--gateway",
            "10.4.0.1",
            "--no-gateway",
        ],
    );

    // Delete: plain, then a pool with allocations.
    node.ok(&["ip-pool", "delete", "gw"]);
    node.fails(3, &["ip-pool", "delete", "gw"]);
    node.ok(&["ip", "allocate", "small", "--owner", "vm-1"]);
    let err = node.fails(4, &["ip-pool", "delete", "small"]);
    assert!(err.contains("pool_not_empty"), "{err}");
    // --force without a terminal and without --yes is refused before anything is sent.
    let err = fails(
        node.cli()
            .args(["ip-pool", "delete", "small", "--force"])
            .write_stdin(""),
        2,
    );
    assert!(err.contains("--yes"), "{err}");
    node.ok(&["ip-pool", "show", "small"]);
    assert_eq!(
        node.ok(&["ip-pool", "delete", "small", "--force", "--yes"]),
        "deleted pool small\n"
    );
    node.fails(3, &["ip-pool", "show", "small"]);
    // JSON output of a call that answers nothing is empty; the exit status says it worked.
    assert_eq!(node.ok(&["-o", "json", "ip-pool", "delete", "v6"]), "");
}

#[test]
fn ip_commands() {
    let node = TestNode::start(None);
    // 6 allocatable addresses: 10.0.0.1 to 10.0.0.6.
    node.ok(&["ip-pool", "create", "vms", "10.0.0.0/29", "--no-gateway"]);

    let out = node.ok(&["ip", "allocate", "vms", "--owner", "vm-1", "--label", "k=v"]);
    assert!(out.starts_with("allocated\n"), "{out}");
    assert!(out.contains("ip          10.0.0.1\n"), "{out}");
    assert!(out.contains("owner       vm-1\n"), "{out}");
    assert!(out.contains("labels      k=v\n"), "{out}");
    // The same owner again: its existing allocation.
    let out = node.ok(&["ip", "allocate", "vms", "--owner", "vm-1"]);
    assert!(out.starts_with("existing allocation"), "{out}");
    assert!(out.contains("10.0.0.1"), "{out}");

    let a = node.json(&[
        "ip", "allocate", "vms", "--owner", "vm-2", "--ip", "10.0.0.5",
    ]);
    assert_eq!(a["ip"], "10.0.0.5");
    assert_eq!(a["pool"], "vms");
    assert_eq!(a["owner"], "vm-2");
    let generation = a["generation"].as_u64().expect("generation is an integer");

    let err = node.fails(
        4,
        &[
            "ip", "allocate", "vms", "--owner", "vm-3", "--ip", "10.0.0.5",
        ],
    );
    assert!(err.contains("address_in_use"), "{err}");
    let err = node.fails(
        4,
        &[
            "ip", "allocate", "vms", "--owner", "vm-1", "--ip", "10.0.0.6",
        ],
    );
    assert!(err.contains("owner_conflict"), "{err}");
    let err = node.fails(
        1,
        &[
            "ip", "allocate", "vms", "--owner", "vm-3", "--ip", "10.0.0.7",
        ],
    );
    assert!(err.contains("invalid_argument"), "{err}");
    let err = node.fails(3, &["ip", "allocate", "nope", "--owner", "vm-3"]);
    assert!(err.contains("pool_not_found"), "{err}");

    for owner in ["vm-3", "vm-4", "vm-5", "vm-6"] {
        node.ok(&["ip", "allocate", "vms", "--owner", owner]);
    }
    let err = node.fails(4, &["ip", "allocate", "vms", "--owner", "vm-7"]);
    assert!(err.contains("pool_exhausted"), "{err}");

    // Listing: one page with a hint, then every page.
    let page = node.ok(&["ip-pool", "allocations", "vms", "--limit", "2"]);
    let lines: Vec<&str> = page.lines().collect();
    assert!(
        lines[0].starts_with("IP        OWNER  GENERATION  ALLOCATED AT"),
        "{page}"
    );
    assert_eq!(lines.len(), 4, "{page}");
    assert!(lines[3].contains("--after 10.0.0.2"), "{page}");
    let all = node.ok(&["ip-pool", "allocations", "vms", "--limit", "2", "--all"]);
    assert_eq!(all.lines().count(), 7, "{all}");
    assert!(row(&all, "10.0.0.5").contains("vm-2"), "{all}");
    let json = node.json(&["ip-pool", "allocations", "vms", "--limit", "4", "--all"]);
    let ips: Vec<&str> = json["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ip"].as_str().unwrap())
        .collect();
    assert_eq!(
        ips,
        ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    );
    assert!(json.get("next").is_none());
    let json = node.json(&["ip-pool", "allocations", "vms", "--limit", "4"]);
    assert_eq!(json["next"], "10.0.0.4");
    let json = node.json(&["ip-pool", "allocations", "vms", "--owner", "vm-2"]);
    assert_eq!(json["allocations"][0]["ip"], "10.0.0.5");
    node.fails(3, &["ip-pool", "allocations", "nope"]);

    let table = node.ok(&["ip-pool", "list"]);
    let cols: Vec<&str> = row(&table, "vms").split_whitespace().collect();
    assert_eq!(cols[2..], ["-", "6", "6", "0", "100.0%"]);

    // Lookups.
    let out = node.ok(&["ip", "show", "10.0.0.5"]);
    assert!(out.contains("owner       vm-2\n"), "{out}");
    assert!(
        out.contains(&format!("generation  {generation}\n")),
        "{out}"
    );
    let json = node.json(&["ip", "show", "10.0.0.5"]);
    assert_eq!(json["pool"], "vms");
    assert_eq!(json["allocation"]["owner"], "vm-2");
    assert_eq!(
        node.ok(&["ip", "show", "192.0.2.1"]),
        "192.0.2.1 is in no pool\n"
    );

    // Releases: a stale generation is refused, the right one frees the address.
    let stale = (generation + 1000).to_string();
    let err = node.fails(
        4,
        &["ip", "release", "vms", "10.0.0.5", "--generation", &stale],
    );
    assert!(err.contains("generation_mismatch"), "{err}");
    let out = node.ok(&[
        "ip",
        "release",
        "vms",
        "10.0.0.5",
        "--generation",
        &generation.to_string(),
    ]);
    assert_eq!(out, "released 10.0.0.5 from pool vms\n");
    assert_eq!(
        node.ok(&["ip", "show", "10.0.0.5"]),
        "10.0.0.5 is not allocated (pool vms)\n"
    );
    let err = node.fails(3, &["ip", "release", "vms", "10.0.0.5"]);
    assert!(err.contains("allocation_not_found"), "{err}");

    assert_eq!(
        node.ok(&["ip", "release", "vms", "--owner", "vm-3"]),
        "released 10.0.0.2 from pool vms\n"
    );
    assert_eq!(
        node.ok(&["ip", "release", "vms", "--owner", "vm-3"]),
        "vm-3 held no address in pool vms\n"
    );
    let json = node.json(&["ip", "release", "vms", "--owner", "vm-4"]);
    assert_eq!(json, serde_json::json!({"released": ["10.0.0.3"]}));
    node.fails(2, &["ip", "release", "vms"]);
}

#[test]
fn cluster_commands() {
    let node = TestNode::start(None);

    let status = node.ok(&["cluster", "status"]);
    assert!(status.contains("node            1\n"), "{status}");
    assert!(status.contains("leader          1\n"), "{status}");
    let member = row(&status, "1");
    assert!(
        member.contains(&node.addr.to_string())
            && member.contains("voter")
            && member.contains("leader"),
        "{status}"
    );
    let json = node.json(&["cluster", "status"]);
    assert_eq!(json["id"], 1);
    assert_eq!(json["leader"], 1);
    assert_eq!(json["members"][0]["role"], "voter");

    let err = node.fails(4, &["cluster", "init"]);
    assert!(err.contains("already_initialized"), "{err}");

    // A second node that waits to be added.
    let second = TestNode::start_with(
        None,
        |c| {
            c.id = 2;
            c.no_init = true;
        },
        false,
    );
    let addr2 = second.addr.to_string();
    let out = node.ok(&["cluster", "add-learner", "2", &addr2]);
    assert!(out.contains("node 2"), "{out}");
    let json = node.json(&["cluster", "status"]);
    let roles: Vec<(u64, &str)> = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [(1, "voter"), (2, "learner")]);

    let out = node.ok(&["cluster", "promote", "2"]);
    assert!(out.starts_with("node 2 promoted to voter\n\n"), "{out}");
    assert!(row(&out, "2").contains("voter"), "{out}");
    let status = node.ok(&["cluster", "status"]);
    assert!(row(&status, "2").contains("voter"), "{status}");
    // The second node forwards writes to the leader and reads through it.
    second.ok(&["ip-pool", "create", "vms", "10.0.0.0/24"]);
    assert!(node.ok(&["ip-pool", "list"]).contains("vms"));

    node.ok(&["cluster", "voters", "1"]);
    let status = node.ok(&["cluster", "status"]);
    assert!(row(&status, "2").contains("learner"), "{status}");
    let json = node.json(&["cluster", "remove", "2"]);
    assert_eq!(json["members"].as_array().unwrap().len(), 1, "{json}");
    let json = node.json(&["cluster", "status"]);
    assert_eq!(json["members"].as_array().unwrap().len(), 1, "{json}");
    node.fails(2, &["cluster", "voters"]);
    node.fails(2, &["cluster", "init", "--member", "x=127.0.0.1:1"]);
}

#[test]
fn cluster_init_forms_a_cluster_from_an_uninitialised_node() {
    let mut node = TestNode::start_with(None, |c| c.no_init = true, false);
    let addr = node.addr.to_string();
    let member = format!("1={addr}");
    let out = node.ok(&["cluster", "init", "--member", &member]);
    assert_eq!(out, "initialised a cluster of nodes 1\n");
    node.wait_ready();
    let json = node.json(&["cluster", "status"]);
    assert_eq!(json["leader"], 1);
    assert_eq!(json["members"][0]["addr"], addr);
}

#[test]
fn tokens_are_checked() {
    let node = TestNode::start(Some("s3cret"));
    node.ok(&["ip-pool", "list"]);
    let err = fails(
        node.cli()
            .env("IPAM_TOKEN", "wrong")
            .args(["ip-pool", "list"]),
        6,
    );
    assert!(err.contains("unauthorized"), "{err}");
    let err = fails(
        node.cli()
            .env_remove("IPAM_TOKEN")
            .args(["cluster", "status"]),
        6,
    );
    assert!(err.contains("unauthorized"), "{err}");
    // An empty IPAM_TOKEN is no token.
    let err = fails(
        node.cli().env("IPAM_TOKEN", "").args(["ip-pool", "list"]),
        6,
    );
    assert!(err.contains("unauthorized"), "{err}");
    // --token wins over the environment.
    node.cli()
        .env("IPAM_TOKEN", "wrong")
        .args(["--token", "s3cret", "ip-pool", "list"])
        .assert()
        .success();
}

#[test]
fn a_node_that_is_down_is_one_line_naming_the_endpoint() {
    // Bound then closed: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{addr}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipam-cli"));
    cmd.env_remove("IPAM_TOKEN")
        .env("IPAM_ENDPOINT", &endpoint)
        .args(["ip-pool", "list"]);
    let err = fails(&mut cmd, 5);
    assert_eq!(
        err,
        format!("error: cannot reach {endpoint}: connection refused\n")
    );
}

#[test]
fn an_endpoint_list_skips_a_node_that_is_down() {
    let node = TestNode::start(None);
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let list = format!("http://{down},{}", node.endpoint());
    let out = Command::new(env!("CARGO_BIN_EXE_ipam-cli"))
        .env_remove("IPAM_TOKEN")
        .env("IPAM_ENDPOINT", &list)
        .args(["ip-pool", "create", "vms", "10.0.0.0/24"])
        .output()
        .expect("run ipam-cli");
    assert!(out.status.success(), "{out:?}");
    let pools = node.json(&["ip-pool", "list"]);
    assert_eq!(pools["pools"][0]["name"], "vms", "{pools}");

    // Nothing up: the last node's error.
    let other = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipam-cli"));
    cmd.env_remove("IPAM_TOKEN")
        .env("IPAM_ENDPOINT", format!("http://{down},http://{other}"))
        .args(["ip-pool", "list"]);
    let err = fails(&mut cmd, 5);
    assert_eq!(
        err,
        format!("error: cannot reach http://{other}: connection refused\n")
    );
}

#[test]
fn a_node_that_does_not_answer_times_out() {
    // Accepts connections (the kernel's backlog) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipam-cli"));
    cmd.env_remove("IPAM_TOKEN").args([
        "--endpoint",
        &endpoint,
        "--timeout",
        "0.5",
        "ip-pool",
        "list",
    ]);
    let err = fails(&mut cmd, 5);
    assert_eq!(err, format!("error: request to {endpoint} timed out\n"));
    drop(listener);
}

#[test]
fn usage_errors_and_completions() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipam-cli"));
    fails(cmd.args(["ip-pool", "frobnicate"]), 2);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipam-cli"));
    fails(cmd.args(["--endpoint", "ftp://x", "ip-pool", "list"]), 2);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipam-cli"));
    fails(
        cmd.args([
            "ip-pool",
            "create",
            "a",
            "10.0.0.0/24",
            "--label",
            "novalue",
        ]),
        2,
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ipam-cli"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("ip-pool") && text.contains("add-learner"),
            "{shell}"
        );
    }
}

#[test]
fn lease_commands() {
    let node = TestNode::start(None);
    node.ok(&["ip-pool", "create", "vms", "10.0.0.0/29", "--no-gateway"]);
    let a = node.json(&["ip", "allocate", "vms", "--owner", "agent", "--ttl", "1h"]);
    assert_eq!(a["ttl_seconds"], 3600);
    assert!(a["expires_at"].is_string(), "{a}");
    let out = node.ok(&["ip", "allocate", "vms", "--owner", "pinned"]);
    assert!(out.contains("expires     never\n"), "{out}");

    let out = node.ok(&["ip", "renew", "vms", "10.0.0.1", "--ttl", "10m"]);
    assert!(out.starts_with("renewed\n"), "{out}");
    assert!(out.contains("owner       agent\n"), "{out}");
    let r = node.json(&["ip", "renew", "vms", "10.0.0.1"]);
    assert_eq!(r["ttl_seconds"], 600);
    let err = node.fails(
        4,
        &["ip", "renew", "vms", "10.0.0.1", "--generation", "999"],
    );
    assert!(err.contains("generation_mismatch"), "{err}");
    let err = node.fails(3, &["ip", "renew", "vms", "10.0.0.6"]);
    assert!(err.contains("allocation_not_found"), "{err}");
    let err = node.fails(2, &["ip", "allocate", "vms", "--owner", "x", "--ttl", "1w"]);
    assert!(err.contains("unknown unit"), "{err}");

    let out = node.ok(&["lease", "renew", "--owner", "agent"]);
    assert!(row(&out, "10.0.0.1").contains("agent"), "{out}");
    let r = node.json(&["lease", "renew", "--owner", "pinned"]);
    assert_eq!(r["renewed"], serde_json::json!([]));
    let out = node.ok(&["lease", "renew", "--owner", "nobody"]);
    assert_eq!(out, "nobody holds no lease\n");

    let p = node.json(&["ip-pool", "show", "vms"]);
    assert_eq!(p["stats"]["cooling"], "0");
}

#[test]
fn pool_update_range_freeze_and_preview_commands() {
    let node = TestNode::start(None);
    let created = node.json(&[
        "ip-pool",
        "create",
        "p",
        "10.7.0.0/30",
        "--dns",
        "10.7.0.53",
        "--mtu",
        "9000",
        "--route",
        "10.9.0.0/16=10.7.0.1",
        "--domain",
        "p.example",
        "--cooldown",
        "10m",
        "--default-ttl",
        "1h",
        "--weight",
        "7",
        "--max-utilization",
        "0.5",
    ]);
    assert_eq!(created["reuse_cooldown_seconds"], 600);
    assert_eq!(created["default_ttl_seconds"], 3600);
    assert_eq!(created["max_utilization"], 0.5);
    assert_eq!(created["routes"][0]["via"], "10.7.0.1");

    let text = node.ok(&["ip", "allocate", "p", "--owner", "a"]);
    assert!(text.contains("prefix   10.7.0.2/30\n"), "{text}");
    assert!(
        text.contains("routes   10.9.0.0/16 via 10.7.0.1\n"),
        "{text}"
    );
    let shown = node.json(&["ip", "show", "10.7.0.2"]);
    assert_eq!(shown["allocation"]["network"]["mtu"], 9000);
    node.fails(4, &["ip", "allocate", "p", "--owner", "b"]);

    let pool = node.json(&["ip-pool", "add-range", "p", "10.7.1.0/29"]);
    assert_eq!(pool["ranges"][1]["gateway"], "10.7.1.1");
    let shown = node.ok(&["ip-pool", "show", "p"]);
    assert!(
        shown.contains("ranges       10.7.0.0/30 (gateway 10.7.0.1)\n             10.7.1.0/29 (gateway 10.7.1.1)\n"),
        "{shown}"
    );
    assert_eq!(
        node.ok(&["ip-pool", "next-free", "p", "--count", "2"]),
        "10.7.1.2\n10.7.1.3\n"
    );
    let pool = node.json(&[
        "ip-pool",
        "update",
        "p",
        "--revision",
        "2",
        "--mtu",
        "1500",
        "--label",
        "env=prod",
    ]);
    assert_eq!(pool["mtu"], 1500);
    assert_eq!(pool["revision"], 3);
    let err = node.fails(
        4,
        &["ip-pool", "update", "p", "--revision", "2", "--mtu", "1400"],
    );
    assert!(err.contains("revision"), "{err}");
    node.fails(1, &["ip-pool", "update", "p", "--mtu", "100"]);

    node.ok(&["ip-pool", "freeze", "p"]);
    node.fails(4, &["ip", "allocate", "p", "--owner", "c"]);
    node.fails(4, &["ip-pool", "delete", "p", "--force", "--yes"]);
    assert_eq!(
        node.json(&["ip-pool", "next-free", "p"])["addresses"],
        serde_json::json!([])
    );
    node.ok(&["ip", "allocate", "p", "--owner", "c", "--ip", "10.7.1.5"]);
    node.ok(&["ip-pool", "unfreeze", "p"]);
    node.fails(4, &["ip-pool", "remove-range", "p", "10.7.1.0/29"]);
    node.ok(&["ip", "release", "p", "10.7.1.5"]);
    let pool = node.json(&["ip-pool", "remove-range", "p", "10.7.1.0/29"]);
    assert_eq!(pool["ranges"].as_array().map(Vec::len), Some(1));
    node.fails(1, &["ip-pool", "remove-range", "p", "10.7.0.0/30"]);
    node.fails(3, &["ip-pool", "next-free", "nope"]);
    node.fails(2, &["ip-pool", "update", "p", "--cooldown", "5w"]);
}
