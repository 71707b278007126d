//! [`DynamoStore`]: the deployment history and the process locks in one DynamoDB table, shared
//! by a team's laptops and CI runners.
//!
//! The key schema, the writes and the lock leases are described on [`DynamoStore`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use futures::{StreamExt, TryStreamExt};
use tapitalee_core::{
    AppName, DeploymentId, DeploymentRecord, DeploymentStatus, DeploymentStore, Error,
    ProcessRecord, Resource, Result, StepRecord, Target,
};

use crate::config::AwsConfig;
use crate::error::AwsError;
use crate::metrics::{ApiCalls, CallCounter, CountingInterceptor};
use crate::retry::CallLayer;
use crate::throttle::{RateLimiter, RateLimits};

mod control;
mod items;

pub use control::ControlMessage;
mod table;

use items::{HEAD, Item, PK, SK, STEP_PREFIX, key, n, s};

/// The most items DynamoDB accepts in one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;

/// How many deployments `list` reads at once.
const LIST_CONCURRENCY: usize = 16;

/// Keeps the deployment history and the process locks in one DynamoDB table: for teams and CI
/// runners.
///
/// Build with [`DynamoStore::builder`] or [`AwsBackend::dynamo_store`](crate::AwsBackend::dynamo_store);
/// create the table once with [`create_table`](Self::create_table). Clones share one client.
///
/// # Key schema
///
/// One table, on-demand billing, a string partition key `pk` and a string sort key `sk`:
///
/// | item | `pk` | `sk` | attributes |
/// |---|---|---|---|
/// | deployment head | `DEP#<id>` | `D` | `app`, `id`, `initiator`, `image_repo`, `image_tag`, `image_digest`, `only_process`, `policy`, `status`, `created_at_ms`, `finished_at_ms`, `resumes`, `create_token` |
/// | process | `DEP#<id>` | `P#<process>` | `process`, `ordinal`, `status` (for people), `record` (the process without its steps, JSON) |
/// | step | `DEP#<id>` | `S#<ulid>` | `at_ms`, `process`, `message` |
/// | app index | `APP#<app>` | `<start ms, 15 digits>#<id>` | `id` |
/// | lock | `LOCK#<app>` | `<process>` | `holder`, `expires_at_ms`, `takeover_at_ms`, `lease_ms` |
/// | control message | `CTL#<id>` | `<ulid>` | `at_ms`, `message` (see [`send_control`](Self::send_control)) |
///
/// - A deployment is one partition: `get` is one strongly consistent `Query` (paginated), which
///   returns the head, then the processes, then the steps in order (`D` < `P#` < `S#`).
/// - `list` queries the app's index newest first (the sort key is the start time then the id,
///   so same-millisecond starts come by id), then each listed deployment's head and processes
///   (`sk < "S#"`: no steps), concurrently.
/// - Every step is its own item (messages are cut at 32 KiB), and so is every process: no
///   item grows with a deployment, all stay far under DynamoDB's 400 KB limit.
/// - A step's sort key is a ULID made once per call, before the first attempt, from one
///   monotonic generator per OS process: a retried write puts the same item again (never a
///   duplicate), and a process's steps sort in the order it wrote them.
/// - Processes keep their creation order by `ordinal`; a process added later gets the unix
///   ms of its first write, so it sorts after the others.
///
/// # Writes
///
/// Each store method is one API call on the common path. Writes about an existing deployment
/// are `TransactWriteItems` with a `ConditionCheck` on its head (an unknown id is
/// [`Error::NotFound`], and nothing is written): `record_change` writes the process item and
/// the step item in the same transaction, `record_changes` the process item and all its
/// steps (and `append_steps` all its steps) in one transaction, chunked past DynamoDB's 100
/// items with the process record in the first chunk, and `finish` the final status and the
/// release of every lock it still holds. `create` writes the head (`attribute_not_exists`), the index
/// item, the processes and the given steps in one transaction (apps of more than 98 processes
/// spill into further transactions, each conditional on the head this call wrote). Every
/// transaction carries a `ClientRequestToken`, and `create` also recognises its own head by
/// `create_token`, so a retry after a timeout is harmless.
///
/// # Locks and clock skew
///
/// A lock is a lease written with a conditional `PutItem`: it succeeds if there is no lock,
/// the caller already holds it (a renewal), or the lock's `takeover_at_ms` has passed; on
/// failure the holder comes back in the same answer (`ALL_OLD`). Expiry is the holder's clock
/// plus the lease; other deployments may take the lock only from `takeover_at_ms`, which adds
/// a margin of `min(lease, skew_tolerance)` (default 5 s). So a taker whose clock runs up to
/// that margin ahead of the holder's still cannot take a lease before it really ended; a
/// taker whose clock runs behind only waits longer. The engine renews every third of the
/// lease (60 s by default), which adds two thirds of a lease of slack on top. Clocks further
/// apart than the margin can take a lock up to the difference early: keep machines on NTP.
#[derive(Clone)]
pub struct DynamoStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_dynamodb::Client,
    table: String,
    layer: CallLayer,
    counter: CallCounter,
    skew_tolerance: Duration,
    page_size: Option<i32>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.inner.table)
            .field("skew_tolerance", &self.inner.skew_tolerance)
            .finish_non_exhaustive()
    }
}

/// Builds a [`DynamoStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct DynamoStoreBuilder {
    table: Option<String>,
    aws: Option<AwsConfig>,
    skew_tolerance: Duration,
    page_size: Option<i32>,
    rates: RateLimits,
}

impl DynamoStore {
    /// A builder: set at least the table.
    pub fn builder() -> DynamoStoreBuilder {
        DynamoStoreBuilder {
            table: None,
            aws: None,
            skew_tolerance: Duration::from_secs(5),
            page_size: None,
            rates: RateLimits::unlimited(),
        }
    }

    /// Whether `table` is a valid DynamoDB table name (3 to 255 characters of `a-z`, `A-Z`,
    /// `0-9`, `_`, `-` and `.`), or why not.
    pub fn check_table_name(table: &str) -> Result<()> {
        let valid = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if valid {
            Ok(())
        } else {
            Err(Error::invalid(
                "DynamoDB table",
                table,
                "must be 3-255 characters of a-z, A-Z, 0-9, '_', '-' and '.'",
            ))
        }
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Every API call this store made so far (request attempts, retries included), per
    /// operation and per deployment.
    pub fn api_calls(&self) -> ApiCalls {
        self.inner.counter.snapshot()
    }
}

impl DynamoStoreBuilder {
    /// The table's name (required), e.g. `tapit-history`.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// Region, endpoint, credentials and retry policy (default: [`AwsConfig::from_env`]).
    pub fn aws_config(mut self, config: AwsConfig) -> Self {
        self.aws = Some(config);
        self
    }

    /// The largest clock difference between machines that can never let a live lock be taken
    /// (default 5 s): another deployment may take a lock only this long after its lease ended
    /// by the holder's clock (at most one lease longer).
    pub fn skew_tolerance(mut self, tolerance: Duration) -> Self {
        self.skew_tolerance = tolerance;
        self
    }

    /// Items per page of every `Query` (default: DynamoDB's 1 MB pages).
    pub fn page_size(mut self, items: u16) -> Self {
        self.page_size = Some(i32::from(items.max(1)));
        self
    }

    /// Client-side rate limits per operation (default: none; on-demand tables absorb bursts).
    pub fn rate_limits(mut self, rates: RateLimits) -> Self {
        self.rates = rates;
        self
    }

    /// The store. Loads the SDK configuration; makes no API call.
    pub async fn connect(self) -> Result<DynamoStore> {
        let table = self.table.filter(|t| !t.is_empty()).ok_or_else(|| {
            Error::invalid(
                "DynamoDB table",
                "",
                "is not set; name it, e.g. DynamoStore::builder().table(\"tapit-history\")",
            )
        })?;
        DynamoStore::check_table_name(&table)?;
        let config = match self.aws {
            Some(c) => c,
            None => AwsConfig::from_env().build()?,
        };
        let sdk = crate::backend::load_sdk(&config).await?;
        let counter = CallCounter::default();
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(CountingInterceptor {
                    counter: counter.clone(),
                })
                .build(),
        );
        Ok(DynamoStore {
            inner: Arc::new(Inner {
                client,
                table,
                layer: CallLayer {
                    limiter: RateLimiter::new(self.rates),
                    retry: config.retry,
                },
                counter,
                skew_tolerance: self.skew_tolerance,
                page_size: self.page_size,
            }),
        })
    }
}

/// How a transaction ended, when it did not fail outright.
enum Tx {
    Done,
    /// Cancelled because of failed conditions: per item, whether its condition failed.
    Failed(Vec<bool>),
}

/// A conditional write that did not happen: the item as it was, if asked for and given.
struct Refused(Option<Item>);

fn build_error(e: impl Into<tapitalee_core::BoxError>) -> Error {
    Error::store("cannot build a DynamoDB request", e)
}

fn names<const N: usize>(pairs: [(&str, &str); N]) -> HashMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn values<const N: usize>(pairs: [(&str, AttributeValue); N]) -> HashMap<String, AttributeValue> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn missing(id: &DeploymentId) -> Error {
    Error::not_found(Resource::Deployment, id.to_string(), "")
}

impl DynamoStore {
    fn fail(&self) -> impl Fn(AwsError) -> Error + '_ {
        move |e| e.into_store(&self.inner.table)
    }

    /// `attribute_exists` on a deployment's head: first in every write about it.
    fn head_exists(&self, id: &DeploymentId) -> Result<TransactWriteItem> {
        let check = ConditionCheck::builder()
            .table_name(&self.inner.table)
            .set_key(Some(key(items::deployment_pk(id), HEAD)))
            .condition_expression("attribute_exists(#pk)")
            .set_expression_attribute_names(Some(names([("#pk", PK)])))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
        let mut put = Put::builder()
            .table_name(&self.inner.table)
            .set_item(Some(item));
        if let Some(c) = condition {
            put = put
                .condition_expression(c)
                .set_expression_attribute_names(Some(names([("#pk", PK)])));
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(build_error)?)
            .build())
    }

    /// Replaces a process item's record (keeping its ordinal, or giving a new process one
    /// after every other).
    fn update_process_item(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
    ) -> Result<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.inner.table)
            .set_key(Some(key(
                items::deployment_pk(id),
                items::process_sk(&process.process),
            )))
            .update_expression(
                "SET #rec = :rec, #st = :st, #proc = :proc, #ord = if_not_exists(#ord, :late)",
            )
            .set_expression_attribute_names(Some(names([
                ("#rec", "record"),
                ("#st", "status"),
                ("#proc", "process"),
                ("#ord", "ordinal"),
            ])))
            .set_expression_attribute_values(Some(values([
                (":rec", s(items::process_json(process)?)),
                (":st", s(process.status.to_string())),
                (":proc", s(process.process.as_str())),
                (":late", n(items::now_ms())),
            ])))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Sets a head's status, and its end time when final.
    fn status_update(
        &self,
        id: &DeploymentId,
        status: DeploymentStatus,
    ) -> Result<TransactWriteItem> {
        Ok(TransactWriteItem::builder()
            .update(
                self.status_update_parts(id, status)
                    .build()
                    .map_err(build_error)?,
            )
            .build())
    }

    fn status_update_parts(
        &self,
        id: &DeploymentId,
        status: DeploymentStatus,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        let mut values = values([(":st", items::status_value(status))]);
        let expression = if status.is_final() {
            values.insert(":fin".to_owned(), n(items::now_ms()));
            "SET #st = :st, #fin = :fin"
        } else {
            "SET #st = :st REMOVE #fin"
        };
        Update::builder()
            .table_name(&self.inner.table)
            .set_key(Some(key(items::deployment_pk(id), HEAD)))
            .update_expression(expression)
            .condition_expression("attribute_exists(#pk)")
            .set_expression_attribute_names(Some(names([
                ("#pk", PK),
                ("#st", "status"),
                ("#fin", "finished_at_ms"),
            ])))
            .set_expression_attribute_values(Some(values))
    }

    /// Deletes a lock if it is absent or `holder`'s.
    fn release(&self, target: &Target, holder: &DeploymentId) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.inner.table)
            .set_key(Some(key(
                items::lock_pk(&target.app),
                target.process.as_str(),
            )))
            .condition_expression("attribute_not_exists(#pk) OR #holder = :me")
            .set_expression_attribute_names(Some(names([("#pk", PK), ("#holder", "holder")])))
            .set_expression_attribute_values(Some(values([(":me", s(holder.to_string()))])))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Runs one transaction (with `token` as its idempotency token). Failed conditions are an
    /// answer; any other failure an error.
    async fn transact(
        &self,
        deployment: Option<DeploymentId>,
        writes: Vec<TransactWriteItem>,
        token: String,
    ) -> Result<Tx> {
        let client = &self.inner.client;
        let count = writes.len();
        self.inner
            .layer
            .call("TransactWriteItems", deployment, || {
                let request = client
                    .transact_write_items()
                    .set_transact_items(Some(writes.clone()))
                    .client_request_token(token.clone());
                async move {
                    match request.send().await {
                        Ok(_) => Ok(Tx::Done),
                        Err(e) => {
                            if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                                e.as_service_error()
                            {
                                let failed: Vec<bool> = c
                                    .cancellation_reasons()
                                    .iter()
                                    .map(|r| r.code() == Some("ConditionalCheckFailed"))
                                    .collect();
                                if failed.iter().any(|f| *f) {
                                    let mut failed = failed;
                                    failed.resize(count, false);
                                    return Ok(Tx::Failed(failed));
                                }
                            }
                            Err(e)
                        }
                    }
                }
            })
            .await
            .map_err(self.fail())
    }

    /// A transaction whose first item is the head check: a failure there is `NotFound`.
    async fn write_about(
        &self,
        id: &DeploymentId,
        writes: Vec<TransactWriteItem>,
        token: String,
    ) -> Result<()> {
        match self.transact(Some(*id), writes, token).await? {
            Tx::Done => Ok(()),
            Tx::Failed(failed) if failed.first() == Some(&true) => Err(missing(id)),
            Tx::Failed(_) => Err(Error::store(
                format!("DynamoDB refused a write about deployment {id}"),
                "a condition failed",
            )),
        }
    }

    /// Every item of a partition (or those with `sk < below`), in sort key order, read
    /// strongly consistently, page by page.
    async fn query(
        &self,
        deployment: Option<DeploymentId>,
        pk: String,
        below: Option<&str>,
    ) -> Result<Vec<Item>> {
        let client = &self.inner.client;
        let mut all = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut condition = "#pk = :pk".to_owned();
            let mut vals = values([(":pk", s(pk.clone()))]);
            let mut nms = names([("#pk", PK)]);
            if let Some(b) = below {
                condition.push_str(" AND #sk < :below");
                vals.insert(":below".to_owned(), s(b));
                nms.insert("#sk".to_owned(), SK.to_owned());
            }
            let out = self
                .inner
                .layer
                .call("Query", deployment, || {
                    client
                        .query()
                        .table_name(&self.inner.table)
                        .key_condition_expression(&condition)
                        .set_expression_attribute_names(Some(nms.clone()))
                        .set_expression_attribute_values(Some(vals.clone()))
                        .consistent_read(true)
                        .set_limit(self.inner.page_size)
                        .set_exclusive_start_key(start.clone())
                        .send()
                })
                .await
                .map_err(self.fail())?;
            all.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(all),
            }
        }
    }

    /// Up to `limit` ids of an app's index, newest start first.
    async fn index(&self, app: &AppName, limit: usize) -> Result<Vec<DeploymentId>> {
        let client = &self.inner.client;
        let mut ids = Vec::new();
        let mut start: Option<Item> = None;
        while ids.len() < limit {
            let want = i32::try_from(limit - ids.len()).unwrap_or(i32::MAX);
            let page = self.inner.page_size.map_or(want, |p| p.min(want));
            let out = self
                .inner
                .layer
                .call("Query", None, || {
                    client
                        .query()
                        .table_name(&self.inner.table)
                        .key_condition_expression("#pk = :pk")
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_values(":pk", s(items::app_pk(app)))
                        .scan_index_forward(false)
                        .consistent_read(true)
                        .limit(page)
                        .set_exclusive_start_key(start.clone())
                        .send()
                })
                .await
                .map_err(self.fail())?;
            for item in out.items.unwrap_or_default() {
                ids.push(items::decode_index(&item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }

    /// A lock item, read strongly consistently.
    async fn read_lock(&self, target: &Target) -> Result<Option<Item>> {
        let client = &self.inner.client;
        let out = self
            .inner
            .layer
            .call("GetItem", None, || {
                client
                    .get_item()
                    .table_name(&self.inner.table)
                    .set_key(Some(key(
                        items::lock_pk(&target.app),
                        target.process.as_str(),
                    )))
                    .consistent_read(true)
                    .send()
            })
            .await
            .map_err(self.fail())?;
        Ok(out.item)
    }

    /// The head's `create_token`, read strongly consistently.
    async fn create_token_of(&self, id: &DeploymentId) -> Result<Option<String>> {
        let client = &self.inner.client;
        let out = self
            .inner
            .layer
            .call("GetItem", Some(*id), || {
                client
                    .get_item()
                    .table_name(&self.inner.table)
                    .set_key(Some(key(items::deployment_pk(id), HEAD)))
                    .projection_expression("create_token")
                    .consistent_read(true)
                    .send()
            })
            .await
            .map_err(self.fail())?;
        Ok(out
            .item
            .and_then(|i| i.get("create_token").and_then(|v| v.as_s().ok()).cloned()))
    }

    /// Writes one lock item unless another live deployment holds the lock.
    async fn put_lock(
        &self,
        item: Item,
        holder: &DeploymentId,
        now: i64,
    ) -> Result<Option<Refused>> {
        let client = &self.inner.client;
        self.inner
            .layer
            .call("PutItem", Some(*holder), || {
                let request = client
                    .put_item()
                    .table_name(&self.inner.table)
                    .set_item(Some(item.clone()))
                    .condition_expression(
                        "attribute_not_exists(#pk) OR #holder = :me OR #takeover <= :now",
                    )
                    .set_expression_attribute_names(Some(names([
                        ("#pk", PK),
                        ("#holder", "holder"),
                        ("#takeover", "takeover_at_ms"),
                    ])))
                    .set_expression_attribute_values(Some(values([
                        (":me", s(holder.to_string())),
                        (":now", n(now)),
                    ])))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    );
                async move {
                    match request.send().await {
                        Ok(_) => Ok(None),
                        Err(e) => match e.as_service_error() {
                            Some(PutItemError::ConditionalCheckFailedException(c)) => {
                                Ok(Some(Refused(c.item().cloned())))
                            }
                            _ => Err(e),
                        },
                    }
                }
            })
            .await
            .map_err(self.fail())
    }
}

#[async_trait]
impl DeploymentStore for DynamoStore {
    async fn create(&self, record: &DeploymentRecord) -> Result<()> {
        let token = items::new_token();
        let mut writes = vec![
            self.put(
                items::head_item(record, &token),
                Some("attribute_not_exists(#pk)"),
            )?,
            self.put(items::index_item(record), None)?,
        ];
        for (ordinal, p) in (0_i64..).zip(&record.processes) {
            writes.push(self.put(items::process_item(&record.id, p, ordinal)?, None)?);
        }
        for step in &record.steps {
            writes.push(self.put(
                items::step_item(&record.id, items::new_step_sk(), step),
                None,
            )?);
        }
        let rest = writes.split_off(writes.len().min(MAX_TRANSACTION_ITEMS));
        match self
            .transact(Some(record.id), writes, token.clone())
            .await?
        {
            Tx::Done => {}
            Tx::Failed(_) => {
                // Our own earlier attempt (answered too late) wrote the head: done already.
                if self.create_token_of(&record.id).await?.as_deref() != Some(token.as_str()) {
                    return Err(Error::store(
                        format!("deployment {} already exists", record.id),
                        "duplicate id",
                    ));
                }
            }
        }
        // Apps of many processes: the rest, each batch conditional on the head written above.
        for chunk in rest.chunks(MAX_TRANSACTION_ITEMS - 1) {
            let check = ConditionCheck::builder()
                .table_name(&self.inner.table)
                .set_key(Some(key(items::deployment_pk(&record.id), HEAD)))
                .condition_expression("create_token = :tok")
                .expression_attribute_values(":tok", s(token.clone()))
                .build()
                .map_err(build_error)?;
            let mut writes = vec![TransactWriteItem::builder().condition_check(check).build()];
            writes.extend_from_slice(chunk);
            self.write_about(&record.id, writes, items::new_token())
                .await?;
        }
        Ok(())
    }

    async fn update_process(&self, id: &DeploymentId, process: &ProcessRecord) -> Result<()> {
        let writes = vec![
            self.head_exists(id)?,
            self.update_process_item(id, process)?,
        ];
        self.write_about(id, writes, items::new_token()).await
    }

    async fn append_step(&self, id: &DeploymentId, step: &StepRecord) -> Result<()> {
        let sk = items::new_step_sk();
        let token = sk.trim_start_matches(STEP_PREFIX).to_owned();
        let writes = vec![
            self.head_exists(id)?,
            self.put(items::step_item(id, sk, step), None)?,
        ];
        self.write_about(id, writes, token).await
    }

    async fn record_change(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
        step: &StepRecord,
    ) -> Result<()> {
        let sk = items::new_step_sk();
        let token = sk.trim_start_matches(STEP_PREFIX).to_owned();
        let writes = vec![
            self.head_exists(id)?,
            self.update_process_item(id, process)?,
            self.put(items::step_item(id, sk, step), None)?,
        ];
        self.write_about(id, writes, token).await
    }

    async fn record_changes(
        &self,
        id: &DeploymentId,
        process: &ProcessRecord,
        steps: &[StepRecord],
    ) -> Result<()> {
        self.write_steps(id, Some(process), steps).await
    }

    async fn append_steps(&self, id: &DeploymentId, steps: &[StepRecord]) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        self.write_steps(id, None, steps).await
    }

    async fn set_status(&self, id: &DeploymentId, status: DeploymentStatus) -> Result<()> {
        let client = &self.inner.client;
        let update = self
            .status_update_parts(id, status)
            .build()
            .map_err(build_error)?;
        let refused = self
            .inner
            .layer
            .call("UpdateItem", Some(*id), || {
                let request = client
                    .update_item()
                    .table_name(&self.inner.table)
                    .set_key(Some(update.key().clone()))
                    .update_expression(update.update_expression())
                    .set_condition_expression(update.condition_expression().map(str::to_owned))
                    .set_expression_attribute_names(update.expression_attribute_names().cloned())
                    .set_expression_attribute_values(update.expression_attribute_values().cloned());
                async move {
                    match request.send().await {
                        Ok(_) => Ok(false),
                        Err(e) => match e.as_service_error() {
                            Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(true),
                            _ => Err(e),
                        },
                    }
                }
            })
            .await
            .map_err(self.fail())?;
        if refused { Err(missing(id)) } else { Ok(()) }
    }

    async fn finish(
        &self,
        id: &DeploymentId,
        status: DeploymentStatus,
        targets: &[Target],
    ) -> Result<()> {
        let mut seen = HashSet::new();
        let mut targets: Vec<&Target> = targets.iter().filter(|t| seen.insert(*t)).collect();
        // More locks than one transaction holds: release the excess first (the order of the
        // trait's default), then the status with the last ones.
        let last = targets.split_off(targets.len().saturating_sub(MAX_TRANSACTION_ITEMS - 1));
        for chunk in targets.chunks(MAX_TRANSACTION_ITEMS) {
            self.release_all(id, None, chunk).await?;
        }
        self.release_all(id, Some(status), &last).await
    }

    async fn get(&self, id: &DeploymentId) -> Result<Option<DeploymentRecord>> {
        let items = self
            .query(Some(*id), items::deployment_pk(id), None)
            .await?;
        items::assemble(&items)
    }

    async fn list(&self, app: &AppName, limit: usize) -> Result<Vec<DeploymentRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let ids = self.index(app, limit).await?;
        let records: Vec<Option<DeploymentRecord>> = futures::stream::iter(ids)
            .map(|id| async move {
                let items = self
                    .query(Some(id), items::deployment_pk(&id), Some(STEP_PREFIX))
                    .await?;
                items::assemble(&items)
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(records.into_iter().flatten().collect())
    }

    async fn try_lock(
        &self,
        target: &Target,
        holder: &DeploymentId,
        lease: Duration,
    ) -> Result<Option<DeploymentId>> {
        let margin = lease.min(self.inner.skew_tolerance);
        // A refusal whose holder is gone by the time we read it was a race with a release:
        // try again, a few times.
        for _ in 0..5 {
            let now = items::now_ms();
            let item = items::lock_item(target, holder, now, lease, margin);
            let Some(Refused(old)) = self.put_lock(item, holder, now).await? else {
                return Ok(None);
            };
            let old = match old {
                Some(item) => Some(item),
                None => self.read_lock(target).await?,
            };
            if let Some(item) = old {
                let (other, takeover) = items::decode_lock(&item)?;
                if other != *holder && takeover > items::now_ms() {
                    return Ok(Some(other));
                }
            }
        }
        Err(Error::store(
            format!("could not take the lock on {target}: it changed hands on every attempt"),
            "lock contention",
        ))
    }

    async fn unlock(&self, target: &Target, holder: &DeploymentId) -> Result<()> {
        let client = &self.inner.client;
        self.inner
            .layer
            .call("DeleteItem", Some(*holder), || {
                let request = client
                    .delete_item()
                    .table_name(&self.inner.table)
                    .set_key(Some(key(
                        items::lock_pk(&target.app),
                        target.process.as_str(),
                    )))
                    .condition_expression("#holder = :me")
                    .expression_attribute_names("#holder", "holder")
                    .expression_attribute_values(":me", s(holder.to_string()));
                async move {
                    match request.send().await {
                        Ok(_) => Ok(()),
                        Err(e) => match e.as_service_error() {
                            // Not ours (or not there): nothing to release.
                            Some(DeleteItemError::ConditionalCheckFailedException(_)) => Ok(()),
                            _ => Err(e),
                        },
                    }
                }
            })
            .await
            .map_err(self.fail())
    }

    async fn lock_holder(&self, target: &Target) -> Result<Option<DeploymentId>> {
        let Some(item) = self.read_lock(target).await? else {
            return Ok(None);
        };
        let (holder, takeover) = items::decode_lock(&item)?;
        Ok((takeover > items::now_ms()).then_some(holder))
    }
}

impl DynamoStore {
    /// Writes a process's record (when given) and `steps`, in order, as one
    /// `TransactWriteItems`: the head check, the process update, then one put per step.
    ///
    /// Past DynamoDB's 100 items a transaction, the writes go in several transactions, one
    /// after the other, each with its own head check: the first carries the process record
    /// (the state after a platform change is what a recovering deployer needs, so it is
    /// written first), then the steps in order, so a reader never sees a step without those
    /// before it. Every step's key and every transaction's token are made before the first
    /// attempt: a transaction sent again after a lost answer rewrites the same items.
    async fn write_steps(
        &self,
        id: &DeploymentId,
        mut process: Option<&ProcessRecord>,
        steps: &[StepRecord],
    ) -> Result<()> {
        let keyed: Vec<(String, &StepRecord)> =
            steps.iter().map(|s| (items::new_step_sk(), s)).collect();
        let mut rest = keyed.as_slice();
        loop {
            let mut writes = vec![self.head_exists(id)?];
            if let Some(p) = process.take() {
                writes.push(self.update_process_item(id, p)?);
            }
            let room = MAX_TRANSACTION_ITEMS - writes.len();
            let (now, later) = rest.split_at(rest.len().min(room));
            let token = match now.first() {
                Some((sk, _)) => sk.trim_start_matches(STEP_PREFIX).to_owned(),
                None => items::new_token(),
            };
            for (sk, step) in now {
                writes.push(self.put(items::step_item(id, sk.clone(), step), None)?);
            }
            self.write_about(id, writes, token).await?;
            if later.is_empty() {
                return Ok(());
            }
            rest = later;
        }
    }

    /// Releases `id`'s locks on `targets` (at most 99), with the head's new status if given,
    /// in one transaction. A lock another deployment holds is left alone: the transaction runs
    /// again without it.
    async fn release_all(
        &self,
        id: &DeploymentId,
        status: Option<DeploymentStatus>,
        targets: &[&Target],
    ) -> Result<()> {
        let mut targets = targets.to_vec();
        let offset = usize::from(status.is_some());
        for _ in 0..=targets.len() + 1 {
            let mut writes = Vec::with_capacity(targets.len() + offset);
            if let Some(status) = status {
                writes.push(self.status_update(id, status)?);
            }
            for t in &targets {
                writes.push(self.release(t, id)?);
            }
            if writes.is_empty() {
                return Ok(());
            }
            match self.transact(Some(*id), writes, items::new_token()).await? {
                Tx::Done => return Ok(()),
                Tx::Failed(failed) => {
                    if status.is_some() && failed.first() == Some(&true) {
                        return Err(missing(id));
                    }
                    // Those locks are another deployment's now: not ours to release.
                    let mut flags = failed.into_iter().skip(offset);
                    targets.retain(|_| !flags.next().unwrap_or(false));
                }
            }
        }
        Err(Error::store(
            format!("could not finish deployment {id}: its locks kept changing hands"),
            "lock contention",
        ))
    }
}
