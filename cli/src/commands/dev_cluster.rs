//! `sluice dev --brokers N`: a local replicated cluster. The controller (crate
//! `sluice-controller-grpc`, the same controller crate as the operator's) runs in this
//! process; each broker is its own `sluice-broker` process, so that a user or a test
//! can `kill -9` one. Brokers that exit stay down unless `--restart` is given.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use sluice_controller_grpc::{ControllerConfig, ControllerHandle};
use tokio::{process::Child, sync::watch, task::JoinSet};
use tracing::{info, warn};

use crate::args::{DevArgs, MetricsListen};

/// The line printed once every broker serves (tests and scripts wait for it).
pub const READY: &str = "Sluice dev cluster ready:";

/// One broker process to run.
#[derive(Debug, Clone)]
struct BrokerPlan {
    id: i32,
    grpc: SocketAddr,
    kafka: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    data_dir: PathBuf,
}

/// A free loopback port for `addr` when it asks for port 0, else `addr` moved by
/// `offset` ports.
fn port_for(addr: SocketAddr, offset: u16) -> Result<SocketAddr> {
    if addr.port() == 0 {
        let l = TcpListener::bind(SocketAddr::new(addr.ip(), 0)).context("cannot find a free port")?;
        return Ok(l.local_addr()?);
    }
    let port = addr.port().checked_add(offset).context("port out of range")?;
    Ok(SocketAddr::new(addr.ip(), port))
}

fn plans(args: &DevArgs) -> Result<Vec<BrokerPlan>> {
    (0..args.brokers)
        .map(|i| {
            // Broker i: gRPC on --listen's port + 2i, Kafka on --kafka-listen's + 2i (the
            // defaults interleave: 9092/9093, 9094/9095, ...), metrics on + i.
            let step = u16::try_from(2 * i).context("too many brokers")?;
            let one = u16::try_from(i).context("too many brokers")?;
            Ok(BrokerPlan {
                id: i32::try_from(i).context("too many brokers")?,
                grpc: port_for(args.listen, step)?,
                kafka: match args.kafka_listen {
                    MetricsListen::Off => None,
                    MetricsListen::On(a) => Some(port_for(a, step)?),
                },
                metrics: match args.metrics_listen {
                    MetricsListen::Off => None,
                    MetricsListen::On(a) => Some(port_for(a, one)?),
                },
                data_dir: args.data_dir.join(format!("broker-{i}")),
            })
        })
        .collect()
}

/// The `sluice-broker` to run: `--broker-bin`, else the one next to this executable.
fn broker_bin(args: &DevArgs) -> Result<PathBuf> {
    if let Some(b) = &args.broker_bin {
        return Ok(b.clone());
    }
    let me = std::env::current_exe().context("cannot tell where this executable is")?;
    let bin = me.with_file_name(format!("sluice-broker{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        bail!(
            "no sluice-broker next to {} (build it: cargo build -p sluice-broker), or name one with --broker-bin / SLUICE_BROKER_BIN",
            me.display()
        );
    }
    Ok(bin)
}

fn spawn(bin: &Path, plan: &BrokerPlan, controller: SocketAddr, log_format: &str) -> Result<Child> {
    let off = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
    std::fs::create_dir_all(&plan.data_dir).with_context(|| format!("cannot create {}", plan.data_dir.display()))?;
    tokio::process::Command::new(bin)
        .arg("--broker-id")
        .arg(plan.id.to_string())
        .arg("--controller")
        .arg(controller.to_string())
        .arg("--listen")
        .arg(plan.grpc.to_string())
        .arg("--kafka-listen")
        .arg(off(plan.kafka))
        .arg("--metrics-listen")
        .arg(off(plan.metrics))
        .arg("--data-dir")
        .arg(&plan.data_dir)
        .arg("--log-format")
        .arg(log_format)
        // Kafka Metadata names every broker with its own listener (from the controller).
        .env_remove("SLUICE_STANDALONE")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> Result<()> {
    sluice_broker::telemetry::init(&args.log_format);
    let stop = crate::signal::listen();
    let bin = broker_bin(&args)?;
    let plans = plans(&args)?;
    let state_file = args.data_dir.join("controller").join("state.json");
    let controller = sluice_controller_grpc::serve(ControllerConfig {
        listen: args.controller_listen,
        state_file: Some(state_file.clone()),
        session_timeout: Duration::from_millis(args.session_timeout_ms.max(100)),
    })
    .await
    .context("cannot start the controller")?;
    say(&format!("controller grpc={} data={}", controller.addr, state_file.display()));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut brokers = JoinSet::new();
    for plan in &plans {
        let child = spawn(&bin, plan, controller.addr, &args.log_format)?;
        let kafka = plan.kafka.map_or_else(|| "off".to_string(), |k| k.to_string());
        say(&format!("broker {} grpc={} kafka={kafka} pid={}", plan.id, plan.grpc, child.id().unwrap_or(0)));
        let supervise = Supervisor {
            bin: bin.clone(),
            plan: plan.clone(),
            controller: controller.addr,
            log_format: args.log_format.clone(),
            restart: args.restart,
            shutdown_timeout: Duration::from_secs(15),
        };
        brokers.spawn(supervise.run(child, stopping.clone()));
    }
    let mut stop = std::pin::pin!(stop);
    let stopped_early = tokio::select! {
        ready = wait_ready(&controller, &plans) => {
            match ready {
                Ok(took) => {
                    let grpc: Vec<String> = plans.iter().map(|p| p.grpc.to_string()).collect();
                    let kafka: Vec<String> = plans.iter().filter_map(|p| p.kafka.map(|k| k.to_string())).collect();
                    say(&format!(
                        "{READY} {} brokers in {} ms; grpc={}; Kafka bootstrap.servers={}; export SLUICE_BROKER={}",
                        plans.len(),
                        took.as_millis(),
                        grpc.join(","),
                        kafka.join(","),
                        grpc[0]
                    ));
                }
                Err(e) => warn!(error = %e, "the cluster did not come up in time; still running"),
            }
            false
        }
        _ = &mut stop => true,
    };
    if !stopped_early {
        stop.await;
    }
    info!("shutdown signal received, stopping the brokers");
    let _ = stopping_tx.send(true);
    while brokers.join_next().await.is_some() {}
    controller.shutdown().await.context("controller shutdown")?;
    Ok(())
}

/// Waits until every broker is registered (unfenced) with the controller and accepts
/// connections.
async fn wait_ready(controller: &ControllerHandle, plans: &[BrokerPlan]) -> Result<Duration> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        let m = controller.controller.metadata();
        let registered = plans.iter().all(|p| m.brokers.iter().any(|b| b.id == p.id && !b.fenced));
        let mut accepting = registered;
        for p in plans.iter().filter(|_| registered) {
            accepting &= tokio::net::TcpStream::connect(p.grpc).await.is_ok();
        }
        if accepting {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            bail!("not every broker registered and serving after {:?}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watches one broker process: says when it exits, restarts it when asked to, and stops
/// it (SIGTERM, then SIGKILL after the shutdown timeout) when the cluster stops.
#[derive(Debug)]
struct Supervisor {
    bin: PathBuf,
    plan: BrokerPlan,
    controller: SocketAddr,
    log_format: String,
    restart: bool,
    shutdown_timeout: Duration,
}

impl Supervisor {
    async fn run(self, mut child: Child, mut stopping: watch::Receiver<bool>) {
        let id = self.plan.id;
        loop {
            let exited = tokio::select! {
                status = child.wait() => Some(status),
                _ = stopping.wait_for(|s| *s) => None,
            };
            let Some(status) = exited else {
                self.stop(&mut child).await;
                return;
            };
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            say(&format!("broker {id} exited ({status})"));
            if !self.restart || *stopping.borrow() {
                return;
            }
            // A crash loop must not spin: a short pause before each restart.
            tokio::time::sleep(Duration::from_millis(200)).await;
            match spawn(&self.bin, &self.plan, self.controller, &self.log_format) {
                Ok(c) => {
                    say(&format!("broker {id} restarted pid={}", c.id().unwrap_or(0)));
                    child = c;
                }
                Err(e) => {
                    warn!(broker = id, error = %format!("{e:#}"), "cannot restart the broker");
                    return;
                }
            }
        }
    }

    async fn stop(&self, child: &mut Child) {
        let id = self.plan.id;
        if let Some(pid) = child.id() {
            // kill(1): the workspace forbids the unsafe of libc::kill.
            let _ = tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
        match tokio::time::timeout(self.shutdown_timeout, child.wait()).await {
            Ok(Ok(status)) => say(&format!("broker {id} exited ({status})")),
            _ => {
                warn!(broker = id, "the broker did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
