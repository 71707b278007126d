//! Creating the table (`tapit init history`).

use std::time::Duration;

use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use tapitalee_core::{Error, Result};

use super::items::{EXPIRES_AT, PK, SK};
use super::{DynamoStore, build_error};

/// How long `create_table` waits for a new table to become active.
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

impl DynamoStore {
    /// Creates the table (on-demand billing, `pk` and `sk` string keys), waits until it is
    /// active and turns on its time to live on `expires_at` (which only control messages
    /// carry); returns `false` if it existed already with that key schema. Fails if a table
    /// of that name exists with another key schema.
    ///
    /// Needs `dynamodb:CreateTable`, `dynamodb:DescribeTable`,
    /// `dynamodb:DescribeTimeToLive` and `dynamodb:UpdateTimeToLive`, once.
    pub async fn create_table(&self) -> Result<bool> {
        let client = &self.inner.client;
        let table = &self.inner.table;
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(build_error)
        };
        let attributes = vec![attribute(PK)?, attribute(SK)?];
        let schema = vec![key(PK, KeyType::Hash)?, key(SK, KeyType::Range)?];
        let created = self
            .inner
            .layer
            .call("CreateTable", None, || {
                let request = client
                    .create_table()
                    .table_name(table)
                    .set_attribute_definitions(Some(attributes.clone()))
                    .set_key_schema(Some(schema.clone()))
                    .billing_mode(BillingMode::PayPerRequest);
                async move {
                    match request.send().await {
                        Ok(_) => Ok(true),
                        Err(e) => match e.as_service_error() {
                            Some(CreateTableError::ResourceInUseException(_)) => Ok(false),
                            _ => Err(e),
                        },
                    }
                }
            })
            .await
            .map_err(self.fail())?;

        let deadline = tokio::time::Instant::now() + ACTIVE_WITHIN;
        loop {
            let out = self
                .inner
                .layer
                .call("DescribeTable", None, || {
                    client.describe_table().table_name(table).send()
                })
                .await
                .map_err(self.fail())?;
            let Some(description) = out.table else {
                return Err(Error::store(
                    format!("DescribeTable on {table:?} answered without a table"),
                    "empty answer",
                ));
            };
            let mut keys: Vec<(String, String)> = description
                .key_schema()
                .iter()
                .map(|k| {
                    (
                        k.attribute_name().to_owned(),
                        k.key_type().as_str().to_owned(),
                    )
                })
                .collect();
            keys.sort();
            let want = vec![
                (PK.to_owned(), "HASH".to_owned()),
                (SK.to_owned(), "RANGE".to_owned()),
            ];
            if keys != want {
                return Err(Error::invalid(
                    "DynamoDB table",
                    table,
                    format!(
                        "exists with the key schema {keys:?}, not Tapitalee's (pk HASH, sk \
                         RANGE, both strings); name another table"
                    ),
                ));
            }
            if description.table_status() == Some(&TableStatus::Active) {
                self.enable_ttl().await?;
                return Ok(created);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::store(
                    format!("DynamoDB table {table:?} is not active after {ACTIVE_WITHIN:?}"),
                    "table not active",
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Turns on the table's time to live on `expires_at`, unless it is on already.
    async fn enable_ttl(&self) -> Result<()> {
        let client = &self.inner.client;
        let table = &self.inner.table;
        let ttl = self
            .inner
            .layer
            .call("DescribeTimeToLive", None, || {
                client.describe_time_to_live().table_name(table).send()
            })
            .await
            .map_err(self.fail())?;
        let on = ttl.time_to_live_description().is_some_and(|d| {
            d.attribute_name() == Some(EXPIRES_AT)
                && matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
        });
        if on {
            return Ok(());
        }
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(EXPIRES_AT)
            .enabled(true)
            .build()
            .map_err(build_error)?;
        self.inner
            .layer
            .call("UpdateTimeToLive", None, || {
                client
                    .update_time_to_live()
                    .table_name(table)
                    .time_to_live_specification(spec.clone())
                    .send()
            })
            .await
            .map_err(self.fail())?;
        Ok(())
    }
}
