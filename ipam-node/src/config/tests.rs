use super::*;

/// clap reads the real process environment; every test that sets `IPAM_*` variables holds
/// this lock so they never see each other's values.
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

const VARS: &[&str] = &[
    "IPAM_ID",
    "IPAM_LISTEN",
    "IPAM_ADVERTISE",
    "IPAM_NO_INIT",
    "IPAM_DATA_DIR",
    "IPAM_TOKEN",
    "IPAM_TOKEN_FILE",
    "IPAM_JOIN",
    "IPAM_JOIN_TIMEOUT_SECS",
    "IPAM_CONFIG",
    "IPAM_HEARTBEAT_MS",
    "IPAM_ELECTION_TIMEOUT_MIN_MS",
    "IPAM_ELECTION_TIMEOUT_MAX_MS",
    "IPAM_SNAPSHOT_LOGS",
    "IPAM_SNAPSHOT_KEEP_LOGS",
    "IPAM_WRITE_DEADLINE_MS",
    "IPAM_READ_DEADLINE_MS",
    "IPAM_REQUEST_TIMEOUT_MS",
    "IPAM_LOG_LEVEL",
    "IPAM_LOG_FORMAT",
    "IPAM_TLS_CERT",
    "IPAM_TLS_KEY",
    "IPAM_TLS_CA",
    "IPAM_TLS_CLIENT_AUTH",
    "IPAM_MAX_CONNECTIONS",
    "IPAM_WORKER_THREADS",
];

fn with_env<R>(vars: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for v in VARS {
        std::env::remove_var(v);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let result = f();
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    result
}

fn parse(args: &[&str]) -> Args {
    Args::try_parse_from(std::iter::once("ipam-node").chain(args.iter().copied())).unwrap()
}

#[test]
fn no_flags_is_the_default_node() {
    let c = with_env(&[], || parse(&[]).merge(Args::default())).unwrap();
    let d = NodeConfig::default();
    assert_eq!(c.id, 1);
    assert_eq!(c.listen, "127.0.0.1:7470");
    assert_eq!(c.data_dir, PathBuf::from("ipam-data"));
    assert!(!c.no_init);
    assert!(c.token.is_none() && c.join.is_none() && c.advertise.is_none());
    assert_eq!(c.election_timeout, d.election_timeout);
}

#[test]
fn flags_win_over_env_which_wins_over_file() {
    let file = Args::from_toml(
        "id = 3\nlisten = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\nheartbeat_ms = 50\nno_init = true\nlog_format = \"json\"\n",
    )
    .unwrap();
    let c = with_env(
        &[("IPAM_ID", "4"), ("IPAM_LISTEN", "127.0.0.1:9001")],
        || parse(&["--id", "5"]).merge(file.clone()),
    )
    .unwrap();
    assert_eq!(c.id, 5, "flag over env and file");
    assert_eq!(c.listen, "127.0.0.1:9001", "env over file");
    assert_eq!(c.data_dir, PathBuf::from("/from/file"), "file over default");
    assert_eq!(c.heartbeat, Duration::from_millis(50));
    assert!(c.no_init);
    assert_eq!(c.log_format, LogFormat::Json);

    // An environment `false` overrides the file's `true`; a bare flag means true.
    let c = with_env(&[("IPAM_NO_INIT", "false")], || {
        parse(&[]).merge(file.clone())
    })
    .unwrap();
    assert!(!c.no_init);
    let c = with_env(&[("IPAM_NO_INIT", "false")], || {
        parse(&["--no-init"]).merge(Args::default())
    })
    .unwrap();
    assert!(c.no_init);
}

#[test]
fn proposer_knobs_reach_the_raft_config() {
    let file = Args::from_toml("max_ops_per_entry = 500\nqueue_capacity = 10\n").unwrap();
    let c = with_env(&[("IPAM_MAX_INFLIGHT_ENTRIES", "4")], || {
        parse(&["--queue-capacity", "20"]).merge(file.clone())
    })
    .unwrap();
    assert_eq!(
        (
            c.max_ops_per_entry,
            c.max_inflight_entries,
            c.queue_capacity
        ),
        (500, 4, 20)
    );
    let raft = crate::raft_config(&c, "127.0.0.1:1".into());
    assert_eq!(
        (
            raft.max_ops_per_entry,
            raft.max_inflight_entries,
            raft.queue_capacity
        ),
        (500, 4, 20)
    );
    let zero = with_env(&[], || {
        parse(&["--max-ops-per-entry", "0"]).merge(Args::default())
    });
    assert!(zero.is_err());
}

#[test]
fn the_state_cache_size_reaches_the_raft_config_within_bounds() {
    let default = with_env(&[], || parse(&[]).merge(Args::default())).unwrap();
    assert_eq!(default.state_cache_mib, 64);
    let file = Args::from_toml("state_cache_mib = 32\n").unwrap();
    let from_file = with_env(&[], || parse(&[]).merge(file.clone())).unwrap();
    assert_eq!(from_file.state_cache_mib, 32);
    let c = with_env(&[("IPAM_STATE_CACHE_MIB", "16")], || {
        parse(&[]).merge(file.clone())
    })
    .unwrap();
    assert_eq!(c.state_cache_mib, 16, "the environment wins over the file");
    let raft = crate::raft_config(&c, "127.0.0.1:1".into());
    assert_eq!(raft.state_cache_bytes, 16 << 20);
    for bad in ["0", "65537", "18446744073709551615"] {
        let refused = with_env(&[], || {
            parse(&["--state-cache-mib", bad]).merge(Args::default())
        });
        let err = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--state-cache-mib"), "{bad}: {err}");
    }
}

#[test]
fn config_file_comes_from_flag_or_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "id = 7\ndata_dir = \"d7\"\n").unwrap();
    let p = path.to_str().unwrap();
    let c = with_env(&[("IPAM_CONFIG", p)], || parse(&[]).resolve()).unwrap();
    assert_eq!((c.id, c.data_dir), (7, PathBuf::from("d7")));
    let c = with_env(&[], || parse(&["--config", p, "--id", "8"]).resolve()).unwrap();
    assert_eq!(c.id, 8);
}

#[test]
fn token_sources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "s3cret\n").unwrap();
    let p = path.to_str().unwrap();
    let c = with_env(&[], || parse(&["--token-file", p]).merge(Args::default()));
    assert_eq!(c.unwrap().token.as_deref(), Some("s3cret"));
    let file = Args::from_toml("token = \"fromfile\"").unwrap();
    let c = with_env(&[("IPAM_TOKEN", "fromenv")], || {
        parse(&[]).merge(file.clone())
    });
    assert_eq!(c.unwrap().token.as_deref(), Some("fromenv"));
    let c = with_env(&[], || parse(&["--token-file", p]).merge(file.clone()));
    assert_eq!(c.unwrap().token.as_deref(), Some("s3cret"));
    let c = with_env(&[], || parse(&[]).merge(file));
    assert_eq!(c.unwrap().token.as_deref(), Some("fromfile"));
    let missing = dir.path().join("absent");
    let e = with_env(&[], || {
        parse(&["--token-file", missing.to_str().unwrap()]).merge(Args::default())
    });
    assert!(matches!(e, Err(ConfigError::ReadTokenFile { .. })));
    assert!(Args::try_parse_from(["ipam-node", "--token", "a", "--token-file", p]).is_err());
}

#[test]
fn worker_threads_come_from_any_layer_and_default_to_one_per_cpu() {
    assert_eq!(NodeConfig::default().worker_threads, None);
    let file = Args::from_toml("worker_threads = 3\n").unwrap();
    let from_file = with_env(&[], || parse(&[]).merge(file.clone())).unwrap();
    assert_eq!(from_file.worker_threads, Some(3));
    let from_env = with_env(&[("IPAM_WORKER_THREADS", "2")], || {
        parse(&[]).merge(file.clone())
    })
    .unwrap();
    assert_eq!(from_env.worker_threads, Some(2));
    let from_flag = with_env(&[("IPAM_WORKER_THREADS", "2")], || {
        parse(&["--worker-threads", "1"]).merge(file.clone())
    })
    .unwrap();
    assert_eq!(from_flag.worker_threads, Some(1));
    for bad in ["0", "1025"] {
        let refused = with_env(&[], || {
            parse(&["--worker-threads", bad]).merge(Args::default())
        });
        assert!(refused.is_err(), "--worker-threads {bad} was accepted");
    }
}

#[test]
fn bad_values_are_refused() {
    assert!(Args::from_toml("idd = 3").is_err(), "unknown key");
    assert!(Args::from_toml("id = \"three\"").is_err());
    let bad = |args: &[&str]| with_env(&[], || parse(args).merge(Args::default()));
    assert!(bad(&["--id", "0"]).is_err());
    assert!(bad(&["--heartbeat-ms", "600"]).is_err());
    assert!(bad(&[
        "--election-timeout-min-ms",
        "900",
        "--election-timeout-max-ms",
        "800"
    ])
    .is_err());
    assert!(bad(&["--join", "127.0.0.1:7471"]).is_err());
    assert!(bad(&["--join", "http://127.0.0.1:7471,127.0.0.1:7472"]).is_err());
    assert!(
        bad(&["--join", "http://127.0.0.1:7471,"]).is_err(),
        "an empty entry"
    );
    let listed = bad(&["--join", "http://127.0.0.1:7471, http://127.0.0.1:7472"]).unwrap();
    assert_eq!(
        listed.join.as_deref(),
        Some("http://127.0.0.1:7471, http://127.0.0.1:7472")
    );
    assert!(bad(&["--token", ""]).is_err());
    assert!(bad(&["--otlp-endpoint", "collector:4318"]).is_err());
    let traced = bad(&["--otlp-endpoint", "http://collector:4318"]).unwrap();
    assert_eq!(
        traced.otlp_endpoint.as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    assert!(Args::try_parse_from(["ipam-node", "--id", "x"]).is_err());
    assert!(Args::try_parse_from(["ipam-node", "--log-format", "xml"]).is_err());
}

#[test]
fn durations_have_an_upper_bound() {
    let bad = |args: &[&str]| with_env(&[], || parse(args).merge(Args::default()));
    let e = bad(&["--write-deadline-ms", &u64::MAX.to_string()]).unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    assert!(bad(&["--join-timeout-secs", &u64::MAX.to_string()]).is_err());
    assert!(bad(&["--request-timeout-ms", "86400001"]).is_err());
    assert!(bad(&["--read-deadline-ms", "86400000"]).is_ok());
    assert!(bad(&["--install-snapshot-timeout-ms", "86400001"]).is_err());
    let c = bad(&["--install-snapshot-timeout-ms", "600000"]).expect("valid");
    assert_eq!(c.install_snapshot_timeout, Duration::from_secs(600));
    assert_eq!(
        crate::raft_config(&c, "127.0.0.1:1".into()).install_snapshot_timeout,
        Duration::from_secs(600)
    );
    let file = Args::from_toml("election_timeout_max_ms = 9223372036854775807").unwrap();
    assert!(with_env(&[], || parse(&[]).merge(file)).is_err());
    // A config built in code is checked by `run` the same way.
    let c = NodeConfig {
        write_deadline: Duration::MAX,
        ..Default::default()
    };
    assert!(c.check().is_err());
}

#[test]
fn every_flag_is_a_file_key() {
    let mut keys = Vec::new();
    for arg in <Args as clap::CommandFactory>::command().get_arguments() {
        let id = arg.get_id().as_str();
        // `--restore` is a one-shot flag: a file key would restore again on every restart.
        if matches!(id, "config" | "restore" | "help" | "version") {
            continue;
        }
        keys.push(id.to_string());
    }
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        let value = match key.as_str() {
            "listen" | "advertise" | "token" | "join" | "log_level" => "\"x\"",
            "otlp_endpoint" => "\"http://collector:4318\"",
            "data_dir" | "token_file" | "tls_cert" | "tls_key" | "tls_ca" => "\"/x\"",
            "no_init" | "tls_client_auth" => "true",
            "log_format" => "\"json\"",
            _ => "5",
        };
        let text = format!("{key} = {value}");
        assert!(Args::from_toml(&text).is_ok(), "{text}");
    }
    assert!(Args::from_toml("config = \"x.toml\"").is_err());
    assert!(Args::from_toml("restore = \"backup.bin\"").is_err());
}

#[test]
fn non_loopback_listener_needs_a_token() {
    let mut c = NodeConfig::default();
    assert!(c.check_listener("127.0.0.1:7470".parse().unwrap()).is_ok());
    assert!(c.check_listener("[::1]:7470".parse().unwrap()).is_ok());
    let e = c
        .check_listener("0.0.0.0:7470".parse().unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
    c.token = Some("t".into());
    let e = c
        .check_listener("0.0.0.0:7470".parse().unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("--advertise"), "{e}");
    c.advertise = Some("ipam-1.example:7470".into());
    assert!(c.check_listener("0.0.0.0:7470".parse().unwrap()).is_ok());
    assert!(c.check_listener("192.0.2.1:7470".parse().unwrap()).is_ok());
}
