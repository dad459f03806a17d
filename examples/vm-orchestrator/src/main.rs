//! `vm-orchestrator`: `serve` runs an orchestrator node embedding raft-ipam; `vm …` and
//! `pool create` drive a running one over its HTTP API.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ipam_raft::{Config, Ipam, IpamError};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use vm_orchestrator::{api, MockBackend, Orchestrator};

#[derive(Parser)]
#[command(about = "Example VM orchestrator embedding raft-ipam")]
struct Cli {
    /// Orchestrator to talk to (client commands)
    #[arg(long, env = "VMO_ENDPOINT", default_value = "http://127.0.0.1:7480")]
    endpoint: String,
    /// Print the API's JSON instead of text
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an orchestrator node (IPAM embedded, raft on the same listener)
    Serve {
        /// Node id of the embedded raft member
        #[arg(long, default_value_t = 1)]
        id: u64,
        /// Address to bind (port 0 picks one)
        #[arg(long, default_value = "127.0.0.1:7480")]
        listen: String,
        /// Data directory of the embedded IPAM
        #[arg(long, default_value = "./vmo-data")]
        data_dir: PathBuf,
        /// Join the orchestrator cluster through this node instead of starting a new one
        #[arg(long)]
        join: Option<String>,
    },
    /// Manage VMs
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
    /// Manage IP pools
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
}

#[derive(Subcommand)]
enum VmCommand {
    /// Create a VM; one NIC per --ip-pool, --ip or --ip-selector, in that order (eth0, eth1, …)
    Create {
        name: String,
        #[arg(long = "ip-pool")]
        pools: Vec<String>,
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// The least loaded pool with these labels (`zone=a,tier=gold`)
        #[arg(long = "ip-selector", value_name = "KEY=VALUE[,KEY=VALUE]")]
        selectors: Vec<String>,
    },
    /// List VMs
    List,
    /// Show a VM
    Show { name: String },
    /// Delete a VM, releasing its addresses
    Delete { name: String },
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Create a pool
    Create { name: String, cidr: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            id,
            listen,
            data_dir,
            join,
        } => serve(id, &listen, data_dir, join).await,
        Command::Vm { command } => {
            let (method, path, body) = match command {
                VmCommand::Create {
                    name,
                    pools,
                    ips,
                    selectors,
                } => {
                    let mut selector_nics = Vec::with_capacity(selectors.len());
                    for s in &selectors {
                        selector_nics.push(json!({"selector": parse_selector(s)?}));
                    }
                    let nics: Vec<Value> = pools
                        .iter()
                        .map(|p| json!({"pool": p}))
                        .chain(ips.iter().map(|ip| json!({"ip": ip})))
                        .chain(selector_nics)
                        .collect();
                    (
                        reqwest::Method::POST,
                        "/vms".to_string(),
                        Some(json!({"name": name, "nics": nics})),
                    )
                }
                VmCommand::List => (reqwest::Method::GET, "/vms".to_string(), None),
                VmCommand::Show { name } => (reqwest::Method::GET, format!("/vms/{name}"), None),
                VmCommand::Delete { name } => {
                    (reqwest::Method::DELETE, format!("/vms/{name}"), None)
                }
            };
            let answer = call(&cli.endpoint, method, &path, body).await?;
            print(&answer, cli.json);
            Ok(())
        }
        Command::Pool {
            command: PoolCommand::Create { name, cidr },
        } => {
            let body = json!({"name": name, "cidr": cidr});
            let answer = call(&cli.endpoint, reqwest::Method::POST, "/pools", Some(body)).await?;
            print(&answer, cli.json);
            Ok(())
        }
    }
}

/// `k=v[,k=v]` as a JSON object.
fn parse_selector(s: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    for pair in s.split(',') {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), Value::String(v.to_string()));
            }
            _ => anyhow::bail!("--ip-selector: expected KEY=VALUE[,KEY=VALUE], got {s:?}"),
        }
    }
    Ok(out)
}

async fn serve(
    id: u64,
    listen: &str,
    data_dir: PathBuf,
    join: Option<String>,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("info,openraft=warn")
        .init();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let addr = listener.local_addr()?.to_string();
    let ipam = Ipam::start(Config::new(id, data_dir, addr.clone())).await?;
    let orchestrator = Arc::new(Orchestrator::new(
        ipam.clone(),
        Arc::new(MockBackend::default()),
    ));
    let app = api::router(orchestrator).merge(ipam.raft_router());
    println!("listening on {addr}");
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    });
    match join {
        // Ask a member to add this node; it answers once this node is a voter.
        Some(url) => {
            let body = json!({"id": id, "addr": addr});
            call(&url, reqwest::Method::POST, "/cluster/join", Some(body)).await?;
        }
        None => match ipam.init(vec![(id, addr)]).await {
            Ok(()) | Err(IpamError::AlreadyInitialized) => {}
            Err(e) => return Err(e.into()),
        },
    }
    server.await??;
    ipam.shutdown().await?;
    Ok(())
}

async fn call(
    endpoint: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut request = client.request(method, format!("{}{path}", endpoint.trim_end_matches('/')));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("reach {endpoint}"))?;
    let status = response.status();
    let value: Value = response.json().await.context("read the answer")?;
    if !status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .unwrap_or("unknown error");
        bail!("{status}: {message}");
    }
    Ok(value)
}

fn print(value: &Value, json: bool) {
    if json {
        println!("{value:#}");
        return;
    }
    let vms: Vec<&Value> = match value.get("vms") {
        Some(Value::Array(vms)) => vms.iter().collect(),
        _ if value.get("nics").is_some() => vec![value],
        _ => {
            println!("{value}");
            return;
        }
    };
    println!(
        "{:<20} {:<6} {:<12} {:<24} GATEWAY",
        "VM", "NIC", "POOL", "ADDRESS"
    );
    for vm in vms {
        for nic in vm["nics"].as_array().into_iter().flatten() {
            println!(
                "{:<20} {:<6} {:<12} {:<24} {}",
                vm["name"].as_str().unwrap_or(""),
                nic["nic"].as_str().unwrap_or(""),
                nic["pool"].as_str().unwrap_or(""),
                format!(
                    "{}/{}",
                    nic["address"].as_str().unwrap_or(""),
                    nic["prefix_len"]
                ),
                nic["gateway"].as_str().unwrap_or("-"),
            );
        }
    }
}
