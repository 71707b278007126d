//! The app's history store, as `history` in `tapit.toml` selects it: a SQLite file (one
//! machine; the default is in the user's data directory) or a DynamoDB table (a team's
//! laptops and CI runners), and the [`Channel`] that carries promote and abort requests to
//! the `tapit` running a deployment. Every command reads and writes the history through
//! [`open`].

use std::sync::Arc;

use tapitalee::aws::DynamoStore;
use tapitalee::{DynDeploymentStore, SqliteStore};

use crate::cli::Global;
use crate::config::{AppConfig, History};
use crate::control::Channel;
use crate::exit::CliError;
use crate::platform::aws_config;

/// An opened history.
#[derive(Debug, Clone)]
pub struct HistoryStore {
    /// The store, as the engine holds it.
    pub store: DynDeploymentStore,
    /// How promote and abort requests reach a deployment's runner.
    pub control: Channel,
    /// The DynamoDB store, when the history is in DynamoDB.
    pub table: Option<DynamoStore>,
}

/// Opens the app's history. A DynamoDB history uses the app's AWS settings (`--region`,
/// `--endpoint-url`, `--profile`, the app's `region` and `endpoint_url`, the standard AWS
/// chain) and makes no call yet.
pub async fn open(app: &AppConfig, global: &Global) -> Result<HistoryStore, CliError> {
    match &app.history {
        History::DynamoDb(table) => {
            let store = DynamoStore::builder()
                .table(table)
                .aws_config(aws_config(app, global).build()?)
                .connect()
                .await?;
            Ok(HistoryStore {
                store: Arc::new(store.clone()),
                control: Channel::Table(store.clone()),
                table: Some(store),
            })
        }
        History::DefaultSqlite | History::Sqlite(_) => {
            let store = open_sqlite(app)?;
            Ok(HistoryStore {
                store,
                control: Channel::files(&app.local_dir()?),
                table: None,
            })
        }
    }
}

fn open_sqlite(app: &AppConfig) -> Result<DynDeploymentStore, CliError> {
    let Some(path) = app.history_path()? else {
        return Err(CliError::other("the history is not a SQLite file"));
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError::other(format!(
                "cannot create the history directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    // Several tapit processes may open a new history file at once (a detached deployer and a
    // `show deploy` from another terminal); opening initialises the schema under a write
    // lock, so a brief conflict is retried.
    let mut attempt = 0;
    loop {
        match SqliteStore::open(&path) {
            Ok(store) => return Ok(Arc::new(store)),
            Err(e @ tapitalee::Error::Store { .. }) if attempt < 10 => {
                tracing::debug!(error = %e, attempt, "retrying to open the history");
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
