//! An endpoint that accepts the connection and never answers (a lost answer): a call gives up
//! after the call timeout and is retried like any transient failure, then fails with an error
//! saying so, instead of waiting for ever (and every deployment sharing its poll round with
//! it).

use std::time::{Duration, Instant};

use tapitalee_aws::{AwsBackend, AwsConfig, RetryPolicy, StaticCredentials};
use tapitalee_core::{Error, Secret};

#[tokio::test]
async fn a_call_that_gets_no_answer_times_out_and_is_retried() {
    // Accepts and reads, never writes.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let config = AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(format!("http://{addr}"))
        .credentials(StaticCredentials::new("testing", Secret::new("testing")))
        .retry(RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        })
        .call_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let backend = AwsBackend::connect(config).await.unwrap();
    let start = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), backend.caller_identity())
        .await
        .expect("the call waited for an answer that never comes");
    let took = start.elapsed();
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Transient { .. }),
        "a timeout is transient: {err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    // Two attempts of 300 ms, each on a connection of its own or the same one.
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the endpoint was reached"
    );
    server.abort();
}

#[test]
fn a_zero_call_timeout_is_refused_with_the_fix() {
    let err = AwsConfig::builder()
        .call_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { .. }), "{err:?}");
    assert!(err.to_string().contains("call_timeout"), "{err}");
}
