//! A fault-injecting TCP proxy for tests: forwards bytes both ways between clients and
//! an upstream broker; when armed, it forwards the next request a client sends, then
//! drops everything the broker answers on that connection and cuts it, as a network
//! that loses a response would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Client-to-broker reads at least this large are taken for a request carrying a batch
/// (HTTP/2 pings, settings and window updates are smaller).
const REQUEST_BYTES: usize = 200;
/// How long the broker gets to handle the request before the connection is cut.
const CUT_AFTER: Duration = Duration::from_millis(300);

#[derive(Debug, Default)]
struct Faults {
    armed: AtomicBool,
    cuts: AtomicU32,
}

/// The proxy; stops accepting when dropped.
pub struct FaultProxy {
    pub addr: String,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let faults = Arc::new(Faults::default());
        let upstream = upstream.to_string();
        let f = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(&upstream).await else { continue };
                tokio::spawn(relay(client, broker, f.clone()));
            }
        });
        Self { addr, faults, task }
    }

    /// Loses the response to the next request (on whichever connection sends it).
    pub fn arm(&self) {
        self.faults.armed.store(true, Ordering::SeqCst);
    }

    /// True while armed and not yet triggered.
    pub fn armed(&self) -> bool {
        self.faults.armed.load(Ordering::SeqCst)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u32 {
        self.faults.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, broker: TcpStream, faults: Arc<Faults>) {
    let _ = client.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut broker_rx, mut broker_tx) = broker.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let up = {
        let cut = cut.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match client_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let lose_response = n >= REQUEST_BYTES && faults.armed.swap(false, Ordering::SeqCst);
                if lose_response {
                    // Before forwarding, so no byte of the answer gets through.
                    cut.store(true, Ordering::SeqCst);
                }
                if broker_tx.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                if lose_response {
                    tokio::time::sleep(CUT_AFTER).await;
                    faults.cuts.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match broker_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if cut.load(Ordering::SeqCst) {
                continue;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either side ending (or the cut) closes both sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
