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
    assert!(
        e.contains("DynamoStore::create_table") && !e.contains("`tapit"),
        "{e}"
    );

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
    // Long enough that a slow moto (other tests share it) answers well inside each window.
    let lease = Duration::from_secs(3);
    let asked = tokio::time::Instant::now();
    assert_eq!(store.try_lock(&t, &a, lease).await.unwrap(), None);
    let answered = tokio::time::Instant::now();
    // The lease ended by a's clock (it expires 3 s after a wrote it, between `asked` and
    // `answered`), but the margin (min(lease, 5 s) = 3 s) has not: b is refused.
    tokio::time::sleep_until(answered + Duration::from_millis(3300)).await;
    assert_eq!(store.try_lock(&t, &b, lease).await.unwrap(), Some(a));
    assert_eq!(store.lock_holder(&t).await.unwrap(), Some(a));
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "the refusals above were checked inside the margin"
    );
    // After lease and margin: b takes it over.
    tokio::time::sleep_until(answered + Duration::from_millis(6300)).await;
    assert_eq!(store.try_lock(&t, &b, lease).await.unwrap(), None);
    assert_eq!(store.try_lock(&t, &a, lease).await.unwrap(), Some(b));
}

/// A proxy to moto that forwards every request, but for the first `drops` requests whose
/// `X-Amz-Target` names `operation` closes the connection instead of returning moto's
/// answer: the write happened, the client never heard (a timeout after the fact).
mod lossy {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads one HTTP/1.1 message (headers and a Content-Length body), or `None` at EOF.
    async fn read_message<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let total = end + 4 + len;
                while buf.len() < total {
                    let mut chunk = [0u8; 8192];
                    let n = r.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                return Some(buf.drain(..total).collect());
            }
            let mut chunk = [0u8; 8192];
            let n = r.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn start(
        upstream: String,
        operation: &'static str,
        drops: usize,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = dropped.clone();
        let upstream = upstream.trim_start_matches("http://").to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, counter) = (upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while let Some(request) = read_message(&mut client, &mut buf).await {
                        let mut moto = TcpStream::connect(&upstream).await.unwrap();
                        moto.write_all(&request).await.unwrap();
                        let mut back = Vec::new();
                        let Some(response) = read_message(&mut moto, &mut back).await else {
                            return;
                        };
                        let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
                        let target = format!(
                            "x-amz-target: dynamodb_20120810.{}",
                            operation.to_ascii_lowercase()
                        );
                        if head.contains(&target) && counter.fetch_add(1, Ordering::SeqCst) < drops
                        {
                            return; // moto wrote it; the client never hears.
                        }
                        if client.write_all(&response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (endpoint, dropped)
    }
}

#[tokio::test]
async fn a_write_retried_after_a_lost_answer_is_not_duplicated() {
    use std::sync::atomic::Ordering;

    let table = fresh_table("retry");
    store_on(&support::moto().endpoint, &table)
        .await
        .create_table()
        .await
        .unwrap();
    // The first three transactions (create, record_change, record_changes) reach moto, and
    // their answers are lost: the call layer sends each again.
    let (endpoint, dropped) =
        lossy::start(support::moto().endpoint.clone(), "TransactWriteItems", 3).await;
    let store = store_on(&endpoint, &table).await;

    let rec = conformance::sample_record(&conformance::fresh_app("retry"));
    store.create(&rec).await.expect("a retried create succeeds");
    let mut worker = rec.processes[1].clone();
    worker.state.steps_done = 9;
    let change = conformance::step(Some("worker"), "scaled to 9");
    store
        .record_change(&rec.id, &worker, &change)
        .await
        .expect("a retried record_change succeeds");
    worker.state.steps_done = 10;
    let held = [
        conformance::step(Some("worker"), "paused for 10s"),
        conformance::step(Some("worker"), "resumed"),
        conformance::step(Some("worker"), "scaled to 10"),
    ];
    store
        .record_changes(&rec.id, &worker, &held)
        .await
        .expect("a retried record_changes succeeds");
    assert!(dropped.load(Ordering::SeqCst) >= 3, "answers were lost");
    assert_eq!(
        store.api_calls().count("TransactWriteItems"),
        6,
        "each sent twice"
    );

    let got = store.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(got.steps, rec.steps, "create's steps once");
    let mut once = vec![change];
    once.extend(held);
    assert_eq!(got.processes[1].steps, once, "each step once, in order");
    assert_eq!(got.processes[1].state.steps_done, 10);
    assert!(
        store.create(&rec).await.is_err(),
        "another create of the same id still fails"
    );
}

#[tokio::test]
async fn each_store_method_is_one_call_on_the_common_path() {
    use tapitalee_core::DeploymentStatus;

    let store = fresh_store("calls").await;
    let app = conformance::fresh_app("calls");
    let rec = conformance::sample_record(&app);
    let target = Target::new(app.clone(), rec.processes[0].process.clone());
    let lease = Duration::from_secs(60);
    let mut before = store.api_calls();
    let mut calls = |store: &DynamoStore| {
        let now = store.api_calls();
        let since = now.since(&before);
        before = now;
        since
            .iter()
            .map(|(op, n)| format!("{n} {op}"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    store.create(&rec).await.unwrap();
    assert_eq!(calls(&store), "1 TransactWriteItems", "create");
    let change = conformance::step(Some("default"), "scaled");
    store
        .record_change(&rec.id, &rec.processes[0], &change)
        .await
        .unwrap();
    assert_eq!(calls(&store), "1 TransactWriteItems", "record_change");
    let held = [
        conformance::step(Some("default"), "announced"),
        conformance::step(Some("default"), "paused"),
        conformance::step(Some("default"), "scaled again"),
    ];
    store
        .record_changes(&rec.id, &rec.processes[0], &held)
        .await
        .unwrap();
    assert_eq!(
        calls(&store),
        "1 TransactWriteItems",
        "record_changes (3 steps)"
    );
    store.append_steps(&rec.id, &held[..2]).await.unwrap();
    assert_eq!(calls(&store), "1 TransactWriteItems", "append_steps (2)");
    store.append_steps(&rec.id, &[]).await.unwrap();
    assert_eq!(calls(&store), "", "append_steps of nothing");
    store
        .append_step(&rec.id, &conformance::step(None, "note"))
        .await
        .unwrap();
    assert_eq!(calls(&store), "1 TransactWriteItems", "append_step");
    store
        .update_process(&rec.id, &rec.processes[1])
        .await
        .unwrap();
    assert_eq!(calls(&store), "1 TransactWriteItems", "update_process");
    store
        .set_status(&rec.id, DeploymentStatus::Running)
        .await
        .unwrap();
    assert_eq!(calls(&store), "1 UpdateItem", "set_status");
    assert_eq!(store.try_lock(&target, &rec.id, lease).await.unwrap(), None);
    assert_eq!(calls(&store), "1 PutItem", "try_lock takes");
    assert_eq!(store.try_lock(&target, &rec.id, lease).await.unwrap(), None);
    assert_eq!(calls(&store), "1 PutItem", "try_lock renews");
    let other = DeploymentId::new();
    assert_eq!(
        store.try_lock(&target, &other, lease).await.unwrap(),
        Some(rec.id)
    );
    assert_eq!(
        calls(&store),
        "1 PutItem",
        "a refusal names the holder in the same answer"
    );
    assert_eq!(store.lock_holder(&target).await.unwrap(), Some(rec.id));
    assert_eq!(calls(&store), "1 GetItem", "lock_holder");
    store
        .finish(
            &rec.id,
            DeploymentStatus::Succeeded,
            std::slice::from_ref(&target),
        )
        .await
        .unwrap();
    assert_eq!(calls(&store), "1 TransactWriteItems", "finish");
    store.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(calls(&store), "1 Query", "get");
    assert_eq!(store.list(&app, 10).await.unwrap().len(), 1);
    assert_eq!(
        calls(&store),
        "2 Query",
        "list: the index, then each deployment"
    );
    store.unlock(&target, &rec.id).await.unwrap();
    assert_eq!(calls(&store), "1 DeleteItem", "unlock");
}

#[tokio::test]
async fn a_deployment_of_more_processes_than_one_transaction_holds() {
    use tapitalee_core::{DeploymentStatus, ProcessRecord};

    let store = fresh_store("wide").await;
    let app = conformance::fresh_app("wide");
    let mut rec = conformance::sample_record(&app);
    rec.processes = (0..230)
        .map(|i| ProcessRecord::pending(ProcessName::new(format!("p{i}")).unwrap(), "rolling"))
        .collect();
    store.create(&rec).await.unwrap();
    assert_eq!(
        store.api_calls().count("TransactWriteItems"),
        3,
        "233 items: 100 + 99 + 34 (each later batch checks the head)"
    );
    let got = store.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(
        got.processes, rec.processes,
        "every process, in creation order"
    );
    assert_eq!(got.steps, rec.steps);
    assert!(store.create(&rec).await.is_err(), "a duplicate still fails");

    let targets: Vec<Target> = rec
        .processes
        .iter()
        .map(|p| Target::new(app.clone(), p.process.clone()))
        .collect();
    for t in &targets {
        assert_eq!(
            store
                .try_lock(t, &rec.id, Duration::from_secs(60))
                .await
                .unwrap(),
            None
        );
    }
    store
        .finish(&rec.id, DeploymentStatus::Failed, &targets)
        .await
        .unwrap();
    assert_eq!(
        store.get(&rec.id).await.unwrap().unwrap().status,
        DeploymentStatus::Failed
    );
    for t in &targets {
        assert_eq!(store.lock_holder(t).await.unwrap(), None, "{t} released");
    }
}

#[tokio::test]
async fn record_changes_past_one_transaction_keeps_every_step_in_order() {
    let store = fresh_store("chunks").await;
    let rec = conformance::sample_record(&conformance::fresh_app("chunks"));
    store.create(&rec).await.unwrap();
    let before = store.api_calls().count("TransactWriteItems");
    let mut worker = rec.processes[1].clone();
    worker.state.steps_done = 250;
    let steps: Vec<_> = (0..250)
        .map(|i| conformance::step(Some("worker"), &format!("step {i}")))
        .collect();
    store
        .record_changes(&rec.id, &worker, &steps)
        .await
        .unwrap();
    assert_eq!(
        store.api_calls().count("TransactWriteItems") - before,
        3,
        "252 items: head check + process + 98 steps, then 2 × (head check + up to 99 steps)"
    );
    let more: Vec<_> = (250..400)
        .map(|i| conformance::step(Some("worker"), &format!("step {i}")))
        .collect();
    store.append_steps(&rec.id, &more).await.unwrap();
    assert_eq!(
        store.api_calls().count("TransactWriteItems") - before,
        5,
        "150 steps: 99 + 51"
    );
    let got = store.get(&rec.id).await.unwrap().unwrap();
    let mut all = steps;
    all.extend(more);
    assert_eq!(got.processes[1].steps, all, "every step once, in order");
    assert_eq!(got.processes[1].state.steps_done, 250);
    // An unknown deployment: refused, nothing written.
    let missing = DeploymentId::new();
    let e = store
        .record_changes(&missing, &worker, &all[..120])
        .await
        .unwrap_err();
    assert!(matches!(e, tapitalee_core::Error::NotFound { .. }), "{e}");
    assert!(store.get(&missing).await.unwrap().is_none());
}

#[tokio::test]
async fn control_messages_reach_the_mailbox_once_in_order() {
    let store = fresh_store("mailbox").await;
    let rec = conformance::sample_record(&conformance::fresh_app("mailbox"));
    store.create(&rec).await.unwrap();
    assert!(store.control_messages(&rec.id).await.unwrap().is_empty());
    store.send_control(&rec.id, "promote").await.unwrap();
    store
        .send_control(&rec.id, "abort from another machine")
        .await
        .unwrap();
    let got = store.control_messages(&rec.id).await.unwrap();
    let messages: Vec<&str> = got.iter().map(|m| m.message.as_str()).collect();
    assert_eq!(messages, ["promote", "abort from another machine"]);
    assert!(got[0].key < got[1].key);
    // The deployment's own record is untouched by its mailbox.
    let record = store.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(record.steps, rec.steps);
    // Unknown deployments take no messages.
    let e = store
        .send_control(&DeploymentId::new(), "promote")
        .await
        .unwrap_err();
    assert!(matches!(e, tapitalee_core::Error::NotFound { .. }), "{e}");
}

#[tokio::test]
async fn control_messages_expire_through_the_tables_time_to_live() {
    let store = fresh_store("ttl").await;
    let sdk = support::sdk().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let ttl = client
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let d = ttl.time_to_live_description().unwrap();
    assert_eq!(d.attribute_name(), Some("expires_at"), "{d:?}");
    assert_eq!(
        d.time_to_live_status(),
        Some(&aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled),
        "{d:?}"
    );
    // Creating it again leaves the TTL as it is.
    assert!(!store.create_table().await.unwrap());

    let rec = conformance::sample_record(&conformance::fresh_app("ttl"));
    store.create(&rec).await.unwrap();
    store.send_control(&rec.id, "promote").await.unwrap();
    let key = store.control_messages(&rec.id).await.unwrap()[0]
        .key
        .clone();
    let item = client
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("CTL#{}", rec.id)),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(key))
        .send()
        .await
        .unwrap();
    let expires: i64 = item.item().unwrap()["expires_at"]
        .as_n()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed();
    let week = 7 * 24 * 3600;
    assert!(
        (now + week - 60..=now + week + 60).contains(&expires),
        "{expires} vs {now}"
    );
    // The deployment itself is history: no expiry.
    let head = client
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("DEP#{}", rec.id)),
        )
        .send()
        .await
        .unwrap();
    assert!(
        head.items().iter().all(|i| !i.contains_key("expires_at")),
        "{head:?}"
    );
}
