//! Fault injection for the dependency tests: a TCP proxy that can stall, reset after some
//! bytes, delay or pass traffic through, switched at run time; an address that refuses
//! connections; and a tiny DNS server on loopback that answers NXDOMAIN, SERVFAIL, nothing
//! at all, or an address, by name. All on 127.0.0.1: nothing leaves the machine.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// What the fault proxy does with the next connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Both ways, untouched.
    Pass,
    /// Accepts and reads, never answers (a hung server).
    Stall,
    /// Passes this many bytes of the answer, then resets the connection.
    ResetAfter(usize),
    /// Waits this long before passing anything on.
    Delay(Duration),
}

/// A TCP proxy in front of `target`, its behaviour switched with [`FaultProxy::set`].
#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// On 127.0.0.1.
    pub async fn start(target: SocketAddr, fault: Fault) -> FaultProxy {
        FaultProxy::start_on(std::net::Ipv4Addr::LOCALHOST, target, fault).await
    }

    /// On `ip` (another loopback address, for the origin tests' address policy).
    pub async fn start_on(ip: std::net::Ipv4Addr, target: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let proxy = FaultProxy {
            addr: listener.local_addr().unwrap(),
            fault: Arc::new(Mutex::new(fault)),
            connections: Arc::default(),
        };
        let (mode, count) = (proxy.fault.clone(), proxy.connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let fault = *mode.lock().unwrap();
                tokio::spawn(handle(client, target, fault));
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies to connections accepted from now on (open ones keep their fault).
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

async fn handle(mut client: TcpStream, target: SocketAddr, fault: Fault) {
    match fault {
        Fault::Stall => {
            let mut sink = [0u8; 4096];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Fault::Delay(wait) => {
            tokio::time::sleep(wait).await;
            pass(client, target, None).await;
        }
        Fault::Pass => pass(client, target, None).await,
        Fault::ResetAfter(n) => pass(client, target, Some(n)).await,
    }
}

/// Copies both ways; with `cut`, resets the client's connection after that many bytes of
/// the answer (SO_LINGER 0, then close: an RST, as a crashed peer or middlebox sends).
async fn pass(client: TcpStream, target: SocketAddr, cut: Option<usize>) {
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    if cut.is_some() {
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    let (mut from_upstream, mut to_upstream) = upstream.into_split();
    let (mut client_read, mut client_write) = client.into_split();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let up = tokio::spawn(async move {
        tokio::select! {
            _ = tokio::io::copy(&mut client_read, &mut to_upstream) => {}
            _ = stopped => {}
        }
        client_read
    });
    let mut sent = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from_upstream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let allowed = cut.map_or(n, |limit| n.min(limit.saturating_sub(sent)));
        if client_write.write_all(&buf[..allowed]).await.is_err() {
            break;
        }
        sent += allowed;
        if cut.is_some_and(|limit| sent >= limit) {
            break;
        }
    }
    // The halves put together again and dropped: the socket closes without a FIN first
    // (a write half's own drop would send one), with an RST when cut.
    let _ = stop.send(());
    if let Ok(read) = up.await {
        drop(read.reunite(client_write));
    }
}

/// An address on `ip` where nothing listens: connections are refused at once.
pub fn refusing_addr(ip: std::net::Ipv4Addr) -> SocketAddr {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap()
}

/// How the test DNS server answers a name.
#[derive(Debug, Clone, Copy)]
pub enum DnsAnswer {
    /// One A record.
    Address(std::net::Ipv4Addr),
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// SERVFAIL: the server is in trouble.
    ServerFailure,
    /// No answer at all.
    Silence,
}

/// A DNS server on 127.0.0.1 (UDP) answering A queries by name, and REFUSED otherwise.
/// Hand-written for the tests: a header, one question copied back, one answer.
pub async fn start_dns(answers: Vec<(&'static str, DnsAnswer)>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let query = &buf[..n];
            let Some((name, question_end)) = question(query) else {
                continue;
            };
            let qtype = u16::from_be_bytes([query[question_end - 4], query[question_end - 3]]);
            let answer = answers
                .iter()
                .find(|(known, _)| name.eq_ignore_ascii_case(known))
                .map(|(_, a)| *a);
            let (rcode, record) = match answer {
                Some(DnsAnswer::Silence) => continue,
                Some(DnsAnswer::Address(ip)) if qtype == 1 => (0u8, Some(ip)),
                // The name exists, but has no record of this type (AAAA): NOERROR, empty.
                Some(DnsAnswer::Address(_)) => (0, None),
                Some(DnsAnswer::NoSuchName) => (3, None),
                Some(DnsAnswer::ServerFailure) => (2, None),
                None => (5, None),
            };
            let mut reply = Vec::with_capacity(question_end + 16);
            reply.extend_from_slice(&query[..2]); // id
            reply.push(0x81 | (query[2] & 0x01)); // QR, RD copied
            reply.push(0x80 | rcode); // RA, rcode
            reply.extend_from_slice(&[0, 1, 0, u8::from(record.is_some()), 0, 0, 0, 0]);
            reply.extend_from_slice(&query[12..question_end]);
            if let Some(ip) = record {
                reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
                reply.extend_from_slice(&ip.octets());
            }
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

/// The first question's name (dotted, no trailing dot) and where the question ends.
fn question(query: &[u8]) -> Option<(String, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).into_owned());
        at += len;
    }
    (query.len() >= at + 4).then(|| (labels.join("."), at + 4))
}
