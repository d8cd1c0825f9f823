//! A real HTTP client (hyper-util, rustls) and a raw-socket one for malformed requests.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::certs::Certs;
use super::TIMEOUT;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct Client {
    addr: SocketAddr,
    scheme: &'static str,
    http1: Hyper<Connector, Full<Bytes>>,
    http2: Hyper<Connector, Full<Bytes>>,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub fn new(addr: SocketAddr, certs: Option<&Certs>, tls: bool) -> Client {
        let config = match certs {
            Some(c) => c.client_config(),
            None => ringfence::tls::client_config(None).unwrap(),
        };
        let connector = |h2_only: bool| {
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            let b = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config.clone())
                .https_or_http();
            if h2_only {
                b.enable_http2().wrap_connector(http)
            } else {
                b.enable_http1().wrap_connector(http)
            }
        };
        Client {
            addr,
            scheme: if tls { "https" } else { "http" },
            http1: Hyper::builder(TokioExecutor::new()).build(connector(false)),
            http2: Hyper::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector(true)),
        }
    }

    pub async fn get(&self, path: &str, host: &str) -> Reply {
        self.request("GET", path, host, &[], b"").await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        self.send(false, method, path, host, headers, body).await
    }

    pub async fn request_h2(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        self.send(true, method, path, "", headers, body).await
    }

    async fn send(
        &self,
        h2: bool,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let uri = format!("{}://{}{}", self.scheme, self.addr, path);
        let mut builder = Request::builder().method(method).uri(uri);
        if h2 {
            builder = builder.version(Version::HTTP_2);
        } else {
            builder = builder.header("host", host);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let client = if h2 { &self.http2 } else { &self.http1 };
        let response = tokio::time::timeout(TIMEOUT, client.request(request))
            .await
            .expect("answer in time")
            .expect("request succeeds");
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(TIMEOUT, body.collect())
            .await
            .expect("body in time")
            .expect("body reads")
            .to_bytes();
        Reply {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }
}

/// Why a request could not be put on an HTTP/2 connection as written.
pub const CANNOT_EXPRESS: &str = "cannot be expressed in HTTP/2";

/// Sends one request over a fresh HTTP/2 connection: with prior knowledge on plain TCP, or with
/// ALPN `h2` over TLS, naming `server_name` in SNI. `:path` is `target` as written and
/// `:authority` is `authority`; headers HTTP/2 forbids (connection-specific ones, Host) are left
/// out. A request the `http` crate cannot carry is `Err` starting with [`CANNOT_EXPRESS`].
pub async fn h2_reply(
    addr: SocketAddr,
    tls: Option<(&Certs, &str)>,
    method: &str,
    authority: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Reply, String> {
    use hyper_util::rt::TokioIo;
    let cannot = |what: &str| format!("{CANNOT_EXPRESS}: {what}");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(target)
        .build()
        .map_err(|e| cannot(&e.to_string()))?;
    let mut request = Request::builder()
        .method(http::Method::from_bytes(method.as_bytes()).map_err(|e| cannot(&e.to_string()))?)
        .uri(uri)
        .version(Version::HTTP_2);
    const FORBIDDEN: [&str; 6] = [
        "host",
        "connection",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
        "proxy-connection",
    ];
    for (name, value) in headers {
        if FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue;
        }
        let name =
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| cannot(&e.to_string()))?;
        let value =
            http::HeaderValue::from_bytes(value.as_bytes()).map_err(|e| cannot(&e.to_string()))?;
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| cannot(&e.to_string()))?;
    let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    let response = match tls {
        None => {
            let (mut sender, conn) = builder
                .handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            tokio::time::timeout(TIMEOUT, sender.send_request(request)).await
        }
        Some((certs, server_name)) => {
            let mut config = certs.client_config();
            config.alpn_protocols = vec![b"h2".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
            let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
                .map_err(|e| e.to_string())?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, conn) = builder
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            tokio::time::timeout(TIMEOUT, sender.send_request(request)).await
        }
    };
    let response = response
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(TIMEOUT, body.collect())
        .await
        .map_err(|_| "no body in time".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

/// Writes raw bytes on a fresh connection and returns everything read until the server closes
/// or the answer is complete (a test timeout bounds it).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    String::from_utf8_lossy(&raw_bytes(addr, request).await).into_owned()
}

/// [`raw`] without the lossy conversion.
pub async fn raw_bytes(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let stream = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .unwrap();
    exchange(stream, request).await
}

/// Writes `request` and reads until the server closes or goes quiet for 3 s. The server may
/// answer and close before reading everything (a refused body), so a failed write is not an
/// error: the answer is what counts.
async fn exchange<S>(mut stream: S, request: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(TIMEOUT, stream.write_all(request)).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(3), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Sends raw bytes (send `Connection: close` so the server ends the exchange) and parses the
/// first HTTP/1.1 answer; an error says what was read instead.
pub async fn raw_reply(addr: SocketAddr, request: &[u8]) -> Result<Reply, String> {
    let bytes = raw_bytes(addr, request).await;
    parse_reply(&bytes)
        .ok_or_else(|| format!("no HTTP answer: {:?}", String::from_utf8_lossy(&bytes)))
}

/// [`raw_reply`] on a connection made from the local address `from` (another loopback address,
/// so that the server sees a client other than 127.0.0.1).
pub async fn raw_reply_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    request: &[u8],
) -> Result<Reply, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(from, 0))
        .map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let bytes = exchange(stream, request).await;
    parse_reply(&bytes)
        .ok_or_else(|| format!("no HTTP answer: {:?}", String::from_utf8_lossy(&bytes)))
}

/// [`raw_reply`] over TLS (ALPN `http/1.1`), naming `server_name` in SNI.
pub async fn tls_raw_reply(
    addr: SocketAddr,
    certs: &Certs,
    server_name: &str,
    request: &[u8],
) -> Result<Reply, String> {
    tls_raw_reply_after(addr, b"", certs, server_name, request).await
}

/// [`tls_raw_reply`] with `preamble` written in the clear before the handshake (a PROXY
/// protocol header).
pub async fn tls_raw_reply_after(
    addr: SocketAddr,
    preamble: &[u8],
    certs: &Certs,
    server_name: &str,
    request: &[u8],
) -> Result<Reply, String> {
    let mut config = certs.client_config();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let mut tcp = tcp;
    tcp.write_all(preamble).await.map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let out = exchange(stream, request).await;
    parse_reply(&out).ok_or_else(|| format!("no HTTP answer: {:?}", String::from_utf8_lossy(&out)))
}

/// Reads one answer with a Content-Length from a connection that stays open, for a test whose
/// client sends nothing more until it has the answer: what the server does next (answer again,
/// close) is left to read. Bytes after the answer in the same read would be dropped.
pub async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> Reply {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let whole = parse_reply(&bytes).filter(|r| r.headers.contains_key("content-length"));
        if let Some(reply) = whole {
            return reply;
        }
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("the answer comes in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before its answer: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// Parses one HTTP/1.1 response with a Content-Length, chunked or close-delimited body.
fn parse_reply(bytes: &[u8]) -> Option<Reply> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let rest = &bytes[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let version = match status_line.get(..9)? {
        "HTTP/1.1 " => Version::HTTP_11,
        "HTTP/1.0 " => Version::HTTP_10,
        _ => return None,
    };
    let status = status_line.get(9..12)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            http::HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        let mut rest = rest;
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body
    } else if let Some(length) = headers.get("content-length") {
        let n: usize = length.to_str().ok()?.parse().ok()?;
        rest.get(..n)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Reply {
        status,
        version,
        headers,
        body: Bytes::from(body),
    })
}
