//! The DynamoDB store against moto server on 127.0.0.1: core's store conformance suite (with
//! DynamoDB-sized and tiny query pages), table creation, lease margins, and retries.

mod support;

use std::time::Duration;

use tapitalee_aws::{AwsConfig, DynamoStore, RateLimits, RetryPolicy, StaticCredentials};
use tapitalee_core::testkit::store_conformance as conformance;
use tapitalee_core::{DeploymentId, DeploymentStore, ProcessName, Secret, Target};

/// A table name no other test uses.
pub fn fresh_table(label: &str) -> String {
    let id = DeploymentId::new().to_string();
    format!("tapit-{label}-{}", id.trim_start_matches("dep-"))
}

fn moto_config(endpoint: &str) -> AwsConfig {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(StaticCredentials::new("testing", Secret::new("testing")))
        .rate_limits(RateLimits::unlimited())
        // moto answers concurrent TransactWriteItems with HTTP 500 now and then (it deep-copies
        // the table while other threads write it): retried as any transient failure.
        .retry(RetryPolicy {
            max_attempts: 25,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
        })
        .build()
        .unwrap()
}

async fn store_on(endpoint: &str, table: &str) -> DynamoStore {
    DynamoStore::builder()
        .table(table)
        .aws_config(moto_config(endpoint))
        .connect()
        .await
        .unwrap()
}

async fn fresh_store(label: &str) -> DynamoStore {
    let store = store_on(&support::moto().endpoint, &fresh_table(label)).await;
    assert!(store.create_table().await.unwrap(), "a new table");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_conforms() {
    let store = fresh_store("conf").await;
    conformance::run_all(&store).await;

    // Again with pages of 2 items: every `get` and `list` follows LastEvaluatedKey many times.
    let paged = DynamoStore::builder()
        .table(store.table())
        .aws_config(moto_config(&support::moto().endpoint))
        .page_size(2)
        .connect()
        .await
        .unwrap();
    conformance::run_all(&paged).await;
    let queries = paged.api_calls().count("Query");
    assert!(queries > 100, "paginated queries: {queries}");
}

#[tokio::test]
async fn create_table_is_idempotent_and_checks_the_schema() {
    let store = fresh_store("init").await;
    assert!(!store.create_table().await.unwrap(), "already there");

    let missing = store_on(&support::moto().endpoint, &fresh_table("missing")).await;
    let e = missing
        .lock_holder(&Target::new(
            conformance::fresh_app("x"),
            ProcessName::new("default").unwrap(),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("tapit init history"), "{e}");

    let e = DynamoStore::builder()
        .table("a b")
        .aws_config(moto_config(&support::moto().endpoint))
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"a b\"") && e.contains("3-255"), "{e}");
}

#[tokio::test]
async fn a_lease_is_taken_only_after_its_margin() {
    let store = fresh_store("margin").await;
    let t = Target::new(
        conformance::fresh_app("margin"),
        ProcessName::new("default").unwrap(),
    );
    let (a, b) = (DeploymentId::new(), DeploymentId::new());
    let lease = Duration::from_millis(400);
    assert_eq!(store.try_lock(&t, &a, lease).await.unwrap(), None);
    // The lease ended by a's clock, but the margin (min(lease, 5 s) = 400 ms) has not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.try_lock(&t, &b, lease).await.unwrap(), Some(a));
    assert_eq!(store.lock_holder(&t).await.unwrap(), Some(a));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.try_lock(&t, &b, lease).await.unwrap(), None);
    assert_eq!(store.try_lock(&t, &a, lease).await.unwrap(), Some(b));
}
