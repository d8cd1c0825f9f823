//! Live heap bytes per server-side TLS session: N sessions are made (a TLS 1.3 handshake, ALPN
//! http/1.1, one request and its answer), then dropped; what the drop frees, over N, is what one
//! holds. One session's frees are listed by size.
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{ClientConfig, ClientConnection, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
static FREED: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
static NFREED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) {
            let i = NFREED.fetch_add(1, Ordering::Relaxed);
            if i < FREED.len() {
                FREED[i].store(l.size(), Ordering::Relaxed);
            }
        }
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: usize = 200;
const NAME: &str = "lyncweb.contoso.com";
const REQUEST: &[u8] =
    b"GET /ucwa/oauth/v1/applications/192/me HTTP/1.1\r\nHost: lyncweb.contoso.com\r\n\r\n";
const ANSWER: &[u8] = b"HTTP/1.1 204 No Content\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n";

/// Drops `sessions`, the last one alone with its frees listed; prints bytes and blocks per session.
fn measure<T>(what: &str, mut sessions: Vec<T>) {
    let one = sessions.pop().unwrap();
    NFREED.store(0, Ordering::Relaxed);
    TRACE.store(true, Ordering::Relaxed);
    drop(one);
    TRACE.store(false, Ordering::Relaxed);
    let sizes: Vec<usize> = (0..NFREED.load(Ordering::Relaxed).min(FREED.len()))
        .map(|i| FREED[i].load(Ordering::Relaxed))
        .collect();
    let n = sessions.len() as isize;
    let (bytes, blocks) = (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed));
    drop(sessions);
    let bytes = (bytes - LIVE.load(Ordering::Relaxed)) / n;
    let blocks = (blocks - BLOCKS.load(Ordering::Relaxed)) / n;
    println!("| {what} | {bytes} | {blocks} | {sizes:?} |");
}

fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![NAME.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(server), Arc::new(client))
}

/// tokio-rustls' server stream on loopback TCP, boxed as ringfence boxed it.
async fn buffered(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(client));
    let (mut servers, mut clients) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 1024];
    for _ in 0..N {
        let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let name = ServerName::try_from(NAME).unwrap();
        let (c, s) = tokio::join!(
            connector.connect(name, c.unwrap()),
            acceptor.accept(s.unwrap().0)
        );
        let (mut c, mut s) = (c.unwrap(), Box::new(s.unwrap()));
        c.write_all(REQUEST).await.unwrap();
        s.read_exact(&mut buf[..REQUEST.len()]).await.unwrap();
        s.write_all(ANSWER).await.unwrap();
        s.flush().await.unwrap();
        c.read_exact(&mut buf[..ANSWER.len()]).await.unwrap();
        servers.push(s);
        clients.push(c);
    }
    measure(
        "buffered `ServerConnection` in tokio-rustls' `TlsStream` (boxed)",
        servers,
    );
}

/// An unbuffered server session driven in memory against a buffered client, its buffers emptied.
struct Unbuffered {
    conn: UnbufferedServerConnection,
    incoming: Vec<u8>,
}

impl Unbuffered {
    /// Runs both sides until neither has anything to do; `answer` is sent once writable.
    fn pump(&mut self, client: &mut ClientConnection, mut answer: Option<&[u8]>) -> Vec<u8> {
        let mut plain = Vec::new();
        loop {
            while client.wants_write() {
                client.write_tls(&mut self.incoming).unwrap();
            }
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let mut busy = true;
            match state.unwrap() {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        plain.extend_from_slice(record.unwrap().payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    let mut out = vec![0u8; 16];
                    let n = match e.encode(&mut out) {
                        Ok(n) => n,
                        Err(EncodeError::InsufficientSize(s)) => {
                            out.resize(s.required_size, 0);
                            e.encode(&mut out).unwrap()
                        }
                        Err(e) => panic!("{e}"),
                    };
                    client.read_tls(&mut &out[..n]).unwrap();
                    client.process_new_packets().unwrap();
                }
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => busy = false,
                ConnectionState::WriteTraffic(mut w) => match answer.take() {
                    Some(data) => {
                        let mut out = vec![0u8; data.len() + 64];
                        let n = match w.encrypt(data, &mut out) {
                            Ok(n) => n,
                            Err(EncryptError::InsufficientSize(s)) => {
                                out.resize(s.required_size, 0);
                                w.encrypt(data, &mut out).unwrap()
                            }
                            Err(e) => panic!("{e}"),
                        };
                        client.read_tls(&mut &out[..n]).unwrap();
                        client.process_new_packets().unwrap();
                    }
                    None => busy = false,
                },
                other => panic!("{other:?}"),
            }
            self.incoming.drain(..discard);
            if !busy && !client.wants_write() {
                return plain;
            }
        }
    }
}

fn unbuffered(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> Vec<Box<Unbuffered>> {
    let mut sessions = Vec::new();
    for _ in 0..N {
        let name = ServerName::try_from(NAME).unwrap();
        let mut c = ClientConnection::new(Arc::clone(client), name).unwrap();
        let mut s = Box::new(Unbuffered {
            conn: UnbufferedServerConnection::new(Arc::clone(server)).unwrap(),
            incoming: Vec::new(),
        });
        s.pump(&mut c, None);
        assert!(!c.is_handshaking());
        c.writer().write_all(REQUEST).unwrap();
        assert_eq!(s.pump(&mut c, None), REQUEST);
        s.pump(&mut c, Some(ANSWER));
        let mut got = Vec::new();
        let _ = c.reader().read_to_end(&mut got);
        assert_eq!(got, ANSWER);
        s.incoming = Vec::new();
        sessions.push(s);
    }
    sessions
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (server, client) = configs();
    println!("| {N} sessions, TLS 1.3, rustls 0.23.46 (ring) | bytes each | blocks each | one session's blocks |");
    println!("|---|---:|---:|---|");
    buffered(&server, &client).await;
    measure(
        "unbuffered `UnbufferedServerConnection` (boxed with an empty buffer, as ringfence's stream)",
        unbuffered(&server, &client),
    );
    let kernel: Vec<_> = unbuffered(&server, &client)
        .into_iter()
        .map(|s| Box::new(s.conn.dangerous_into_kernel_connection().unwrap()))
        .collect();
    measure(
        "`KernelConnection` with its `ExtractedSecrets` (boxed), what kTLS would keep",
        kernel,
    );
}
