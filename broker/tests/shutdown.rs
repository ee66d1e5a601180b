//! Bounded shutdown and bounded connections with real processes and real sockets:
//! SIGTERM ends `sluice-broker` with status 0 within its shutdown timeout whatever
//! clients do (idle raw sockets, a long poll in flight, a client that never reads), the
//! log is flushed, long polls answer early and successfully, idle connections are
//! closed and counted, and the stream limit is announced to clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    process::ExitStatus,
    time::{Duration, Instant},
};

use common::{BrokerProcess, TestBroker, connect, free_port};
use prost::Message;
use sluice_client::{Admin, Producer, ProducerConfig, ProducerRecord, proto};

/// The shutdown timeout the processes run with; exits are checked against it plus
/// [`MARGIN`] (never against a tight figure).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
const MARGIN: Duration = Duration::from_secs(5);

/// A broker process whose log is flushed only at shutdown (so that records found
/// after a restart prove the shutdown flush ran).
fn spawn(data: &std::path::Path, port: u16) -> BrokerProcess {
    let timeout = SHUTDOWN_TIMEOUT.as_millis().to_string();
    let mut b = BrokerProcess::spawn(data, port, &["--shutdown-timeout-ms", &timeout, "--flush-interval-ms", "600000"]);
    b.wait_ready();
    b
}

/// Creates `topic` and writes `n` records of `size` bytes; returns when all are acknowledged.
async fn produce(addr: &str, topic: &str, n: usize, size: usize) {
    let client = connect(addr).await;
    Admin::new(client.clone()).create_topic(topic, 1, BTreeMap::new()).await.unwrap();
    let producer = Producer::new(client, ProducerConfig::default());
    let mut acks = Vec::new();
    for i in 0..n {
        let mut value = format!("{i:08}").into_bytes();
        value.resize(size.max(8), b'x');
        acks.push(producer.send(ProducerRecord::new(topic).value(value)).await.unwrap());
    }
    for a in acks {
        a.await.unwrap();
    }
}

async fn high_watermark(addr: &str, topic: &str) -> u64 {
    let admin = Admin::new(connect(addr).await);
    admin.list_offset(topic, 0, proto::OffsetSpec::Latest, 0).await.unwrap().0
}

/// Sends SIGTERM and waits for the exit; panics with the log when it takes longer than
/// the shutdown timeout plus the margin.
fn terminate(broker: &mut BrokerProcess) -> (ExitStatus, Duration) {
    // kill(1) rather than libc::kill: the workspace forbids unsafe code, tests included.
    let sent = std::process::Command::new("kill").args(["-TERM", &broker.child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let started = Instant::now();
    loop {
        if let Some(status) = broker.child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        if started.elapsed() > SHUTDOWN_TIMEOUT + MARGIN {
            panic!("still running {:?} after SIGTERM: {}", started.elapsed(), broker.stderr());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM with `hold` open, then a restart on the same data: every record is there.
async fn sigterm_while(hold: impl FnOnce(&str) -> Vec<TcpStream>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut broker = spawn(&data, port);
    let addr = broker.addr.clone();
    produce(&addr, "kept", 100, 100).await;
    let sockets = hold(&addr);
    let (status, took) = terminate(&mut broker);
    assert!(status.success(), "exit {status} after {took:?}: {}", broker.stderr());
    assert!(broker.stderr().contains("log flushed"), "{}", broker.stderr());
    drop(sockets);
    drop(broker);
    let broker = spawn(&data, port);
    assert_eq!(high_watermark(&broker.addr, "kept").await, 100, "the shutdown flush kept every record");
}

fn idle_sockets(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_one_idle_socket_exits_0_in_time_and_flushes() {
    sigterm_while(|addr| idle_sockets(addr, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_500_idle_sockets_exits_0_in_time_and_flushes() {
    sigterm_while(|addr| {
        let sockets = idle_sockets(addr, 500);
        // Let the broker accept them all (the last one answers once accepted).
        let mut probe = h2_handshake(addr);
        read_settings(&mut probe);
        sockets.into_iter().chain(std::iter::once(probe)).collect()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_client_that_never_reads_exits_0_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = spawn(&data, free_port());
    let addr = broker.addr.clone();
    // 24 MiB in the log, asked for in one fetch whose answer the client never reads:
    // more than the socket buffers hold, so the broker's writes block.
    produce(&addr, "big", 24, 1024 * 1024 - 512).await;
    let mut s = h2_handshake(&addr);
    let request =
        proto::FetchRequest { topic: "big".into(), offset: 0, max_bytes: 32 * 1024 * 1024, ..Default::default() };
    send_grpc(&mut s, 1, "/sluice.v1.Sluice/Fetch", &request.encode_to_vec());
    std::thread::sleep(Duration::from_millis(500));
    let (status, took) = terminate(&mut broker);
    assert!(status.success(), "exit {status} after {took:?}: {}", broker.stderr());
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_ok_at_sigterm_and_the_broker_exits_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = spawn(&data, free_port());
    let addr = broker.addr.clone();
    produce(&addr, "quiet", 3, 10).await;
    let mut raw = connect(&addr).await.raw();
    let request = |max_wait_ms| proto::FetchRequest {
        topic: "quiet".into(),
        offset: 3,
        max_wait_ms,
        min_bytes: 1,
        ..Default::default()
    };
    // The connection and the fetch path are up before the long poll starts.
    raw.fetch(request(0)).await.expect("a fetch that does not wait");
    let started = Instant::now();
    let mut long_poll = std::pin::pin!(raw.fetch(request(25_000)));
    // Polled here, not in a spawned task that a loaded machine may start late: the request
    // is on the wire, and has had time to reach the broker, before SIGTERM. (Waiting
    // cannot end it early: nothing is produced.)
    let early = tokio::time::timeout(Duration::from_secs(2), long_poll.as_mut()).await;
    assert!(early.is_err(), "the long poll ended before SIGTERM: {early:?}");
    let terminate = tokio::task::spawn_blocking(move || terminate(&mut broker));
    let answer = long_poll.await;
    let waited = started.elapsed();
    let (status, took) = terminate.await.unwrap();
    assert!(status.success(), "exit {status} after {took:?}");
    let answer = answer.expect("the long poll answers OK, not an error").into_inner();
    assert!(answer.batches.is_empty(), "nothing past offset 3: {answer:?}");
    assert_eq!(answer.high_watermark, 3);
    assert!(waited < Duration::from_secs(20), "answered at shutdown, not after its max_wait: {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_counted() {
    let broker = TestBroker::start_with(|c| c.connections.idle_timeout = Some(Duration::from_millis(300))).await;
    let mut idle = TcpStream::connect(broker.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    // The broker may have sent its SETTINGS; read until end of stream.
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("expected end of stream after {:?}, got {e}", started.elapsed()),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(250), "closed only once idle: {:?}", started.elapsed());
    let metrics = broker.handle.as_ref().unwrap().broker().metrics().encode();
    assert!(metrics.contains("sluice_connections_closed_total{reason=\"idle\"} 1"), "{metrics}");
    // A client that keeps talking is not idle.
    let client = broker.client().await;
    for _ in 0..4 {
        Admin::new(client.clone()).list_topics(false).await.expect("connection kept while in use");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limit_is_announced_in_the_servers_settings() {
    let broker = TestBroker::start_with(|c| c.connections.max_concurrent_streams = 7).await;
    let mut s = h2_handshake(&broker.addr.to_string());
    let settings = read_settings(&mut s);
    // SETTINGS_MAX_CONCURRENT_STREAMS is setting 0x3.
    assert_eq!(settings.get(&3), Some(&7), "{settings:?}");
    let metrics = broker.handle.as_ref().unwrap().broker().metrics().encode();
    assert!(metrics.contains("sluice_connections_open 1"), "{metrics}");
    drop(s);
    broker.stop().await;
}

// --- a few raw HTTP/2 frames (RFC 9113), enough to open a connection and send one request.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Connects and sends the client preface with a large window (so that the broker may
/// send a lot before flow control stops it).
fn h2_handshake(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut settings = Vec::new();
    settings.extend_from_slice(&4u16.to_be_bytes()); // SETTINGS_INITIAL_WINDOW_SIZE
    settings.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &settings));
    out.extend(frame(0x8, 0, 0, &0x7fff_0000u32.to_be_bytes())); // WINDOW_UPDATE
    s.write_all(&out).unwrap();
    s
}

/// Reads frames until the server's (non-ACK) SETTINGS frame: its settings by id.
fn read_settings(s: &mut TcpStream) -> BTreeMap<u16, u32> {
    loop {
        let mut header = [0u8; 9];
        s.read_exact(&mut header).unwrap();
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        if header[3] == 0x4 && header[4] & 0x1 == 0 {
            return payload
                .chunks_exact(6)
                .map(|e| (u16::from_be_bytes([e[0], e[1]]), u32::from_be_bytes([e[2], e[3], e[4], e[5]])))
                .collect();
        }
    }
}

/// HEADERS (HPACK literals, no Huffman) and one DATA frame carrying a gRPC message.
fn send_grpc(s: &mut TcpStream, stream: u32, path: &str, message: &[u8]) {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "sluice"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00); // literal header field without indexing, new name
        block.push(u8::try_from(name.len()).unwrap());
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(message);
    let mut out = frame(0x1, 0x4, stream, &block); // HEADERS, END_HEADERS
    out.extend(frame(0x0, 0x1, stream, &body)); // DATA, END_STREAM
    s.write_all(&out).unwrap();
}
