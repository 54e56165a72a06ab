//! The downstream stub: a plain hyper HTTP/1.1 server that answers every request with the same
//! 1 KB JSON document, so that the measured cost is the hop in front of it, not the API.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::BenchError;

/// The size of the stub's answer in bytes.
pub const BODY_LEN: usize = 1024;

/// A word the answer carries and the privacy filter leaves alone, so that the load tool can
/// check that an answer came from the stub through every hop.
pub const MARKER: &str = "ithil-bench-stub";

/// The stub's answer: a JSON object of exactly [`BODY_LEN`] bytes, shaped like a small API
/// record (one user with an e-mail address, which the gateway's privacy filter redacts, and a
/// list of items), padded at the end.
pub fn body() -> Bytes {
    let mut text = String::with_capacity(BODY_LEN);
    text.push_str(
        r#"{"id":7,"name":"Leanne Graham","username":"Bret","email":"Sincere@april.biz","#,
    );
    let _ = write!(text, r#""source":"{MARKER}","items":["#);
    for n in 0..8 {
        if n > 0 {
            text.push(',');
        }
        let _ = write!(
            text,
            r#"{{"n":{n},"title":"sunt aut facere repellat provident {n}","done":{}}}"#,
            n % 2 == 0
        );
    }
    text.push_str(r#"],"pad":""#);
    // The closing `"}` takes the last two bytes.
    while text.len() < BODY_LEN - 2 {
        text.push('x');
    }
    text.push_str("\"}");
    debug_assert_eq!(text.len(), BODY_LEN);
    Bytes::from(text)
}

/// Binds `listen` and serves the stub until the process ends, printing
/// `listening on http://ADDR` on stdout once it accepts connections.
///
/// # Errors
///
/// Returns an error when the address cannot be bound.
pub async fn serve(listen: SocketAddr) -> Result<(), BenchError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| BenchError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(BenchError::Io)?;
    println!("listening on http://{addr}");
    serve_on(listener).await;
    Ok(())
}

/// Serves the stub on `listener` until the task is dropped.
pub async fn serve_on(listener: TcpListener) {
    let body = body();
    loop {
        // A failed accept (such as running out of descriptors) costs one connection, not the
        // stub; the pause keeps a lasting failure from spinning.
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(answer(body)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_one_kilobyte_of_valid_json_carrying_the_marker() {
        let body = body();
        assert_eq!(body.len(), BODY_LEN);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["source"], MARKER);
        assert_eq!(value["items"].as_array().unwrap().len(), 8);
    }
}
