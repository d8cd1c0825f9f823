//! `bare-proxy LISTEN UPSTREAM`: what a hyper user writes to proxy HTTP/1.1 with no policy, no
//! metrics and no audit. A hyper server per connection, hyper-util's pooled legacy client to the
//! upstream, one thread (as ringfence runs with `RINGFENCE_WORKER_THREADS=1`). The request body
//! is read whole before it is sent, as ringfence reads a guarded one; the answer is streamed.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: bare-proxy LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM_ADDR is host:port");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind LISTEN_ADDR");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let client = client.clone();
                    async move {
                        let (mut parts, body) = request.into_parts();
                        // A body that breaks off is sent as far as it came: nothing to judge here.
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                        parts.uri = format!("http://{upstream}{path}")
                            .parse()
                            .expect("a valid upstream URI");
                        let forwarded = Request::from_parts(parts, Full::new(body));
                        client.request(forwarded).await
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

