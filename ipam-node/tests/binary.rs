//! The `ipam-node` binary's own behaviour: refusing unsafe or invalid settings with a clear
//! message and a non-zero exit status.

use std::process::Command;

fn node() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipam-node"));
    for (k, _) in std::env::vars() {
        if k.starts_with("IPAM_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn refuses_a_public_listener_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = node()
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without a cluster token"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was served");
}

#[test]
fn refuses_invalid_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nunknown_key = 1\n").unwrap();
    for args in [
        vec!["--config", cfg.to_str().unwrap()],
        vec!["--heartbeat-ms", "2000"],
        vec!["--log-format", "xml"],
        vec!["--id", "zero"],
        vec!["--write-deadline-ms", "18446744073709551615"],
    ] {
        let out = node()
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("d"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.is_empty(), "{args:?}: no message");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = node().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("IPAM_DATA_DIR") && help.contains("--join"),
        "{help}"
    );
}
