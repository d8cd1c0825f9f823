//! A real HTTP client (hyper-util, rustls) and a raw-socket one for malformed requests.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Writes raw bytes on a fresh connection and returns everything read until the server closes
/// or the answer is complete (a test timeout bounds it).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(3), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
