//! The admin listener: `/metrics`, `/live`, `/ready` and `POST /reload`, never on the public
//! listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::descriptors::{self, AcceptErrors, Loan, Reserve, ADMIN_LOAN, ADMIN_RESERVE};
use crate::state::Shared;

/// Serves the admin endpoints until `stop`. It keeps [`ADMIN_RESERVE`] spare descriptors: when
/// client traffic has taken every other one, an accept here that fails for want of a descriptor
/// closes one of them and accepts again into the room, and the connection gives it back when it
/// closes. So `/metrics`, `/live` and `/ready` keep answering at the limit (the `process_*`
/// metrics are missing from such a scrape: they need descriptors to read `/proc` with).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let label = listener
        .local_addr()
        .map_or_else(|_| "admin".to_owned(), |a| a.to_string());
    let mut errors = AcceptErrors::new(&shared.metrics.accept_errors, &label);
    let reserve = Reserve::new(ADMIN_RESERVE);
    // Descriptors closed for the next accept, handed to the connection it accepts.
    let mut loan: Option<Loan> = None;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                let wait = errors.failed(&e);
                if descriptors::out_of_descriptors(&e) {
                    // Another part of the process may have taken a lent descriptor first: the
                    // loan grows until the reserve is empty.
                    let lent = match &mut loan {
                        Some(loan) => loan.extend(ADMIN_LOAN),
                        None => {
                            loan = reserve.lend(ADMIN_LOAN);
                            loan.is_some()
                        }
                    };
                    if lent {
                        continue;
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        errors.accepted();
        let loan = loan.take();
        if loan.is_none() {
            // What an earlier loan could not take back.
            reserve.top_up();
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(Arc::clone(&shared), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(loan);
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => Response::builder()
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(Full::new(Bytes::from(shared.metrics.encode())))
            .expect("static response parts are valid"),
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n".into()),
        (&Method::GET, "/ready") => {
            if shared.ready() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
            }
        }
        (&Method::POST, "/reload") => {
            let result = shared.reload().await;
            let answer = match &result {
                Ok(restart) => {
                    let mut body = String::from("reloaded\n");
                    for key in restart {
                        body.push_str(&format!(
                            "warning: {key} changed; it takes effect at the next restart\n"
                        ));
                    }
                    text(StatusCode::OK, body)
                }
                Err(e) => text(StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")),
            };
            crate::signal::log_reload("POST /reload", result);
            answer
        }
        (_, "/metrics" | "/live" | "/ready" | "/reload") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    })
}
