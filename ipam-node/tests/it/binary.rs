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
        vec!["--worker-threads", "0"],
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

#[test]
fn runs_on_as_many_runtime_threads_as_asked() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = node()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--worker-threads",
            "3",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("async runtime started") {
                let _ = tx.send(line);
                break;
            }
        }
    });
    let line = rx.recv_timeout(std::time::Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("no `async runtime started` line within 30 s");
    assert!(line.contains("workers=3"), "{line}");
}
