//! A node started in this process for the CLI's tests (`ipam_node::run` on a `127.0.0.1:0`
//! listener with a temporary data dir) and helpers to run the real `ipam-cli` binary at it.
//! The same harness as `cli.rs`, shared by the newer test files.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use ipam_node::NodeConfig;
use serde_json::Value;

/// Multi-node tests take this first, so that they run one at a time, as when each test file was
/// its own binary: they share two cores with the rest of the binary's tests. A test that
/// panicked while holding it poisons nothing the next one needs.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a node may take to elect itself and become ready on a busy 2-core machine.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A node serving on its own runtime thread until dropped.
pub struct TestNode {
    pub addr: SocketAddr,
    token: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// A fresh single-node cluster.
    pub fn start(token: Option<&str>) -> TestNode {
        TestNode::start_with(token, |_| {}, true)
    }

    pub fn start_with(
        token: Option<&str>,
        configure: impl FnOnce(&mut NodeConfig),
        wait_ready: bool,
    ) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = NodeConfig {
            data_dir: dir.path().to_path_buf(),
            token: token.map(str::to_string),
            ..Default::default()
        };
        configure(&mut config);
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| e.to_string())?;
                addr_tx
                    .send(listener.local_addr().map_err(|e| e.to_string())?)
                    .ok();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                ipam_node::run(listener, config, shutdown)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        let addr = match addr_rx.recv_timeout(READY_DEADLINE) {
            Ok(addr) => addr,
            Err(_) => panic!("node did not bind: {:?}", thread.join()),
        };
        let mut node = TestNode {
            addr,
            token: token.map(str::to_string),
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        };
        if wait_ready {
            node.wait_ready();
        } else {
            node.wait_serving();
        }
        node
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> ipam_client::Client {
        ipam_client::Client::new(&self.endpoint(), self.token.clone()).expect("client")
    }

    /// Polls `probe` until it holds, failing at once if the node's thread ended.
    pub fn wait_for(&mut self, what: &str, probe: impl Fn(&ipam_client::Client) -> bool) {
        let client = self.client();
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if probe(&client) {
                return;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let result = self.thread.take().map(|t| t.join());
                panic!("node stopped before it was {what}: {result:?}");
            }
            assert!(
                Instant::now() < deadline,
                "node not {what} within {READY_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Until `/readyz` answers 200.
    pub fn wait_ready(&mut self) {
        self.wait_for("ready", |c| block_on(c.readyz()).unwrap_or(false));
    }

    /// Until this node's membership counts `n` voters.
    pub fn wait_for_voters(&mut self, n: usize) {
        self.wait_for("showing all voters", |c| {
            block_on(c.cluster_status()).is_ok_and(|s| {
                s.members
                    .iter()
                    .filter(|m| m.role == ipam_client::types::MemberRole::Voter)
                    .count()
                    == n
            })
        });
    }

    /// Until `/healthz` answers 200 (a node waiting to be added is never ready).
    pub fn wait_serving(&mut self) {
        self.wait_for("serving", |c| block_on(c.healthz()).is_ok());
    }

    /// `ipam-cli --endpoint <this node> [--token T] ...`, environment cleared.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipam-cli"));
        cmd.env_remove("IPAM_ENDPOINT")
            .env_remove("IPAM_TOKEN")
            .timeout(Duration::from_secs(120))
            .arg("--endpoint")
            .arg(self.endpoint());
        if let Some(token) = &self.token {
            cmd.env("IPAM_TOKEN", token);
        }
        cmd
    }

    /// Runs the CLI with `args`, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).output().expect("run ipam-cli");
        assert!(
            out.status.success(),
            "ipam-cli {args:?} failed with {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs the CLI with `args` and `-o json`, expecting success; returns the parsed JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// Runs the CLI with `args`, expecting exit status `code`; returns stderr, which must be
    /// exactly one line.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        fails(self.cli().args(args), code)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if !std::thread::panicking() {
                match result {
                    Ok(Ok(())) => {}
                    other => panic!("node did not stop cleanly: {other:?}"),
                }
            }
        }
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

pub fn fails(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().expect("run ipam-cli");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    if code != 2 {
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
        assert!(stderr.starts_with("error: "), "{stderr:?}");
    }
    stderr
}
