//! A node in a child process, so that a test can crash it with SIGKILL. An in-process stop
//! always closes redb cleanly; only a killed process shows whether what a node acknowledged
//! was really on disk.
//!
//! The child is this same test binary, re-run with [`CHILD_ENV`] set and filtered to one
//! `#[ignore]`d test whose body is [`child_main`]. It prints `listening on <addr>` once its
//! node serves, and runs until killed or until its stdin (a pipe from the test) closes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipam_raft::{Config, Ipam};

/// Tells the re-run test binary to act as a child node: `"<id> <port> <data dir>"`.
pub const CHILD_ENV: &str = "IPAM_TESTS_CHILD_NODE";
/// Overrides the child's election timeout: `"<min ms> <max ms>"`.
pub const CHILD_ELECTION_ENV: &str = "IPAM_TESTS_CHILD_ELECTION_MS";

/// The child's election timeout: longer than the in-process nodes', so that while they are up
/// one of them leads.
const CHILD_ELECTION: (Duration, Duration) =
    (Duration::from_millis(1_500), Duration::from_millis(2_500));

/// A node running in a child process.
pub struct ChildNode {
    id: u64,
    addr: SocketAddr,
    data_dir: PathBuf,
    entry_test: String,
    process: Option<Child>,
    election_ms: Option<(u64, u64)>,
}

impl ChildNode {
    /// Starts node `id` on `data_dir` in a child process running `entry_test` (the full name
    /// of the test in this binary that calls [`child_main`]), on a fresh loopback port.
    pub async fn spawn(entry_test: &str, id: u64, data_dir: &Path) -> ChildNode {
        ChildNode::spawn_with_election(entry_test, id, data_dir, None).await
    }

    /// [`ChildNode::spawn`] with the election timeout `election_ms` (min, max) instead of the
    /// child's default, so that the child can win elections against in-process nodes.
    pub async fn spawn_with_election(
        entry_test: &str,
        id: u64,
        data_dir: &Path,
        election_ms: Option<(u64, u64)>,
    ) -> ChildNode {
        let mut node = ChildNode {
            id,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            entry_test: entry_test.to_owned(),
            process: None,
            election_ms,
        };
        node.launch().await;
        node
    }

    /// Pauses the child with SIGSTOP: it keeps its sockets and memory but answers nothing
    /// until [`ChildNode::resume`] — a stalled leader, not a crashed one.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused child with SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(process) = &self.process {
            let status = Command::new("kill")
                .args([signal, &process.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {signal} node {}", self.id);
        }
    }

    /// The address the child's node advertises (kept across restarts).
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Its data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Kills the child with SIGKILL and reaps it: nothing of its shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            // `Child::kill` is SIGKILL on Unix.
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts the killed node again from its data dir, on the same port.
    pub async fn restart(&mut self) {
        assert!(self.process.is_none(), "node {} is running", self.id);
        self.launch().await;
    }

    async fn launch(&mut self) {
        let exe = std::env::current_exe().expect("test binary path");
        let mut command = Command::new(exe);
        if let Some((min, max)) = self.election_ms {
            command.env(CHILD_ELECTION_ENV, format!("{min} {max}"));
        }
        let mut process = command
            .args([&self.entry_test, "--exact", "--ignored", "--nocapture"])
            .env(
                CHILD_ENV,
                format!(
                    "{} {} {}",
                    self.id,
                    self.addr.port(),
                    self.data_dir.display()
                ),
            )
            // The child exits when this pipe closes, so it never outlives the test process,
            // even one that is itself killed.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child node");
        let stdout = process.stdout.take().expect("child stdout");
        self.process = Some(process);
        let id = self.id;
        let listening = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let addr = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|line| line.strip_prefix("listening on ").map(str::to_owned));
            // Keep draining, so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            addr
        });
        let addr = tokio::time::timeout(crate::WAIT, listening)
            .await
            .unwrap_or_else(|_| panic!("child node {id} did not start within {:?}", crate::WAIT))
            .expect("reading the child's output")
            .unwrap_or_else(|| panic!("child node {id} exited before listening"));
        self.addr = addr.parse().expect("child address");
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The child's side: when [`CHILD_ENV`] is set, runs that node until the process is killed;
/// otherwise returns at once (the entry test then does nothing).
pub fn child_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ' ');
    let (Some(id), Some(port), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{CHILD_ENV}={spec:?}: expected \"<id> <port> <data dir>\"");
    };
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let id: u64 = id.parse().expect("child node id");
    let port: u16 = port.parse().expect("child port");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    runtime.block_on(async move {
        let listener = crate::wait_until("the child's port", crate::WAIT, || async {
            tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        let addr = listener.local_addr().expect("local addr");
        let mut config = Config::new(id, dir, addr.to_string());
        config.election_timeout = election_override().unwrap_or(CHILD_ELECTION);
        let ipam = Ipam::start(config).await.expect("start child node");
        println!("listening on {addr}");
        axum::serve(listener, ipam.raft_router())
            .await
            .expect("child server");
    });
}

/// The election timeout [`CHILD_ELECTION_ENV`] asks for, if any.
fn election_override() -> Option<(Duration, Duration)> {
    let spec = std::env::var(CHILD_ELECTION_ENV).ok()?;
    let mut parts = spec.split(' ').map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(min), Some(max)) => Some((Duration::from_millis(min), Duration::from_millis(max))),
        _ => None,
    }
}
