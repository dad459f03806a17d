//! `ipam-cli` against TLS listeners: a trusted node answers; an unknown CA, an expired
//! certificate, a certificate for another name and a missing client certificate are each one
//! line on stderr and a non-zero exit; unusable TLS files are a usage error.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use ipam_node::certs::{Ca, Issued};
use ipam_node::serve::{self, ServeOptions};
use ipam_node::tls::{Tls, TlsFiles};
use time::OffsetDateTime;

fn days(n: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(n)
}

fn write_pair(dir: &Path, name: &str, issued: &Issued) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    (cert, key)
}

/// A TLS listener answering `/api/v1/cluster` with an empty JSON object, on its own runtime
/// thread (the CLI runs as a blocking child process).
fn serve_tls(files: TlsFiles) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route(
                "/api/v1/cluster",
                axum::routing::get(|| async {
                    axum::Json(serde_json::json!({
                        "id": 1, "leader": 1, "term": 1, "last_log_index": 1,
                        "commit_index": 1, "applied_index": 1, "members": []
                    }))
                }),
            );
            let mut options = ServeOptions::new(Duration::from_secs(1));
            options.tls = Some(Arc::new(Tls::load(files).unwrap()));
            serve::serve(listener, app, options, async move {
                let _ = stopped.await;
            })
            .await;
        });
    });
    (addr_rx.recv_timeout(Duration::from_secs(30)).unwrap(), stop)
}

fn cli(addr: SocketAddr, args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::cargo_bin("ipam-cli")
        .unwrap()
        .env_remove("IPAM_TOKEN")
        .env_remove("IPAM_CA_CERT")
        .env_remove("IPAM_CLIENT_CERT")
        .env_remove("IPAM_CLIENT_KEY")
        .args(["--endpoint", &format!("https://{addr}"), "--timeout", "20"])
        .args(args)
        .args(["cluster", "status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[track_caller]
fn one_line_error(code: i32, stderr: &str, expected_code: i32, needle: &str) {
    assert_eq!(code, expected_code, "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
}

#[test]
fn certificate_problems_are_one_line_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("test CA", days(-1), days(30)).unwrap();
    let other = Ca::new("other CA", days(-1), days(30)).unwrap();
    let ca_pem = d.join("ca.pem");
    std::fs::write(&ca_pem, ca.cert_pem()).unwrap();
    let other_pem = d.join("other.pem");
    std::fs::write(&other_pem, other.cert_pem()).unwrap();
    let client = ca.issue("cli", &[], false, days(-1), days(30)).unwrap();
    let (client_cert, client_key) = write_pair(d, "client", &client);

    let files = |name: &str, issued: &Issued, client_auth: bool| {
        let (cert, key) = write_pair(d, name, issued);
        TlsFiles {
            cert,
            key,
            ca: Some(ca_pem.clone()),
            client_auth,
        }
    };
    let good = files(
        "good",
        &ca.issue_node("127.0.0.1", days(-1), days(30)).unwrap(),
        true,
    );
    let expired = files(
        "expired",
        &ca.issue_node("127.0.0.1", days(-30), days(-2)).unwrap(),
        false,
    );
    let misnamed = files(
        "misnamed",
        &ca.issue(
            "ipam-9.example",
            &["ipam-9.example".into()],
            true,
            days(-1),
            days(30),
        )
        .unwrap(),
        false,
    );
    let (good_addr, _s1) = serve_tls(good);
    let (expired_addr, _s2) = serve_tls(expired);
    let (misnamed_addr, _s3) = serve_tls(misnamed);
    let os = |p: &Path| p.as_os_str().to_owned();
    let (ca_arg, other_arg) = (os(&ca_pem), os(&other_pem));
    let (cc, ck) = (os(&client_cert), os(&client_key));
    let flag = |s: &str| std::ffi::OsString::from(s);

    let with_identity = |ca: &std::ffi::OsString| {
        vec![
            flag("--ca-cert"),
            ca.clone(),
            flag("--client-cert"),
            cc.clone(),
            flag("--client-key"),
            ck.clone(),
        ]
    };

    let args = with_identity(&ca_arg);
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = cli(good_addr, &a);
    assert_eq!(code, 0, "trusted node: {stderr}");

    let args = with_identity(&other_arg);
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = cli(good_addr, &a);
    one_line_error(code, &stderr, 1, "not signed by a trusted CA");

    let args = with_identity(&ca_arg);
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = cli(expired_addr, &a);
    one_line_error(code, &stderr, 1, "expired");
    let (code, stderr) = cli(misnamed_addr, &a);
    one_line_error(code, &stderr, 1, "does not name");

    let args = [flag("--ca-cert"), ca_arg.clone()];
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = cli(good_addr, &a);
    assert_ne!(code, 0, "no client certificate: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");

    let missing = d.join("absent.pem");
    let args = [flag("--ca-cert"), os(&missing)];
    let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    let (code, stderr) = cli(good_addr, &a);
    one_line_error(code, &stderr, 2, "absent.pem");
}
