//! Discovery through the gateway's forwarder, retried while the downstream is not ready.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::TestDownstream;
use ithil_proxy::catalog::{Catalog, Downstream};
use ithil_proxy::forward::{DiscoveryError, ForwardError, Forwarder, RetryPolicy};

fn quick(max_attempts: Option<u32>) -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_attempts,
    }
}

#[tokio::test]
async fn discovery_builds_the_tools_a_downstream_publishes() {
    let ds = TestDownstream::start().await;
    let downstream = Downstream::new("app", &ds.base_url()).unwrap();
    let part = Forwarder::new()
        .discover(&downstream, "/ithil/schema")
        .await
        .unwrap();
    let catalog = Catalog::merge([part]).unwrap();
    let names: Vec<&str> = catalog.tools.keys().map(String::as_str).collect();
    assert_eq!(names, ["getUser"]);
    assert_eq!(ds.seen()[0].target, "/ithil/schema");
}

#[tokio::test]
async fn discovery_retries_while_the_downstream_answers_503() {
    let ds = TestDownstream::start().await;
    ds.control.schema_failures.store(3, Ordering::SeqCst);
    let downstream = Downstream::new("app", &ds.base_url()).unwrap();
    let future =
        Forwarder::new().discover_with_retry(downstream, "/ithil/schema".into(), quick(None));
    let part = tokio::spawn(future).await.unwrap().unwrap();
    assert_eq!(part.tools.len(), 1);
    assert_eq!(ds.seen().len(), 4);
}

#[tokio::test]
async fn discovery_gives_up_after_its_attempts_when_nobody_listens() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let downstream = Downstream::new("app", &format!("http://{dead}")).unwrap();
    let err = Forwarder::new()
        .discover_with_retry(downstream, "/ithil/schema".into(), quick(Some(3)))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Fetch(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_invalid_discovery_document_is_not_retried() {
    let ds = TestDownstream::start().await;
    let downstream = Downstream::new("app", &ds.base_url()).unwrap();
    // The test downstream answers any other path with a JSON object, not an array.
    let err = Forwarder::new()
        .discover_with_retry(downstream, "/not-a-schema".into(), quick(None))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::Invalid(_)), "{err:?}");
    assert_eq!(ds.seen().len(), 1);
}

#[tokio::test]
async fn an_https_downstream_is_spoken_to_with_tls() {
    // The test downstream speaks plain HTTP, so the TLS handshake fails and no HTTP request
    // reaches it: proof that the https scheme goes through rustls, not in clear text.
    let ds = TestDownstream::start().await;
    let downstream = Downstream::new("app", &format!("https://{}", ds.addr)).unwrap();
    let err = Forwarder::new()
        .discover(&downstream, "/ithil/schema")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DiscoveryError::Fetch(ForwardError::Connect { .. })),
        "{err:?}"
    );
    assert!(ds.seen().is_empty());
}
