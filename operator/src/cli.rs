//! Command line of `sluice-operator`: `crd` prints the CRDs, `run` (the default) runs
//! the operator with the usual client configuration (in-cluster, else `KUBECONFIG` or
//! `~/.kube/config`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::context::Settings;
use crate::leader::{DEFAULT_DURATION_SECONDS, DEFAULT_GRACE_SECONDS, LeaderSettings};
use crate::runtime::RunSettings;
use crate::{Error, Result};

#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version, about = "The Sluice Kubernetes operator")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every Sluice CRD as YAML (what `crds/` holds).
    Crd,
    /// Run the operator (the default).
    Run(RunArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Watch only this namespace (all namespaces by default).
    #[arg(long, env = "SLUICE_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace of the `sluice-operator` Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity in the leader election (the pod name); host name and pid by default.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader's Lease is valid without renewal (a crashed leader is replaced within it).
    #[arg(long, default_value_t = DEFAULT_DURATION_SECONDS)]
    pub lease_duration: u64,
    /// Seconds before expiry the leader renews its Lease.
    #[arg(long, default_value_t = DEFAULT_GRACE_SECONDS)]
    pub lease_grace: u64,
    /// Look at broker Leases at least this often (seconds).
    #[arg(long, default_value_t = 30)]
    pub recheck: u64,
    /// Read each ConsumerGroup's state and lag from its coordinator this often (seconds).
    #[arg(long, default_value_t = 5)]
    pub group_poll: u64,
    /// Address of the `/metrics` and `/healthz` server.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log as JSON lines.
    #[arg(long, env = "SLUICE_LOG_JSON")]
    pub log_json: bool,
}

impl RunArgs {
    fn settings(&self) -> RunSettings {
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
                .unwrap_or_else(|| "sluice-operator".into());
            format!("{host}-{}", std::process::id())
        });
        RunSettings {
            namespace: self.namespace.clone(),
            leader: LeaderSettings {
                namespace: self.lease_namespace.clone(),
                identity,
                duration_seconds: self.lease_duration,
                grace_seconds: self.lease_grace,
            },
            reconcile: Settings {
                recheck: Duration::from_secs(self.recheck.max(1)),
                group_poll: Duration::from_secs(self.group_poll.max(1)),
                ..Settings::default()
            },
            metrics_addr: Some(self.metrics_addr),
        }
    }
}

/// Runs the command `cli` asks for.
pub async fn main(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", crate::crdgen::yaml()?);
            Ok(())
        }
        Some(Command::Run(args)) => run(args).await,
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> Result<()> {
    init_tracing(args.log_json);
    let client = kube::Client::try_default().await.map_err(|e| Error::Config(e.to_string()))?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        tracing::info!("shutting down");
    };
    crate::runtime::run(client, args.settings(), Default::default(), shutdown).await
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
