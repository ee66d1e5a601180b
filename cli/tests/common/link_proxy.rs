//! A TCP proxy in front of one address, for partition tests: `cut()` makes the link
//! silent — open connections stay open but nothing is forwarded either way, and new ones
//! are accepted and held silent — as a network partition looks to both ends (no RST, no
//! FIN: requests hang until their own timeouts). `heal()` closes what was held, so both
//! ends reconnect, and forwards again. It runs on its own one-thread runtime; dropping it
//! closes everything.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct LinkProxy {
    /// Where clients connect instead of the target.
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    rt: Option<tokio::runtime::Runtime>,
}

impl LinkProxy {
    pub fn start(target: SocketAddr) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, is_cut) = watch::channel(false);
        rt.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(inbound, target, is_cut.clone()));
            }
        });
        Self { addr, cut, rt: Some(rt) }
    }

    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }

    pub fn heal(&self) {
        let _ = self.cut.send(false);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    if *cut.borrow() {
        // Accepted while cut: held silent, closed at the heal.
        let _ = cut.wait_for(|c| !*c).await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    let was_cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
        r = cut.wait_for(|c| *c) => r.is_ok(),
    };
    if was_cut {
        // Cut: nothing more is forwarded; both sockets stay open until the heal.
        let _ = cut.wait_for(|c| !*c).await;
    }
}
