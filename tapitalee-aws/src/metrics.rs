//! API call counting: an SDK interceptor on every client counts each request attempt by
//! operation, and by the deployment it was made for.
//!
//! A call made for a deployment runs inside [`scoped`], which sets a task-local that the
//! interceptor reads (the SDK runs interceptors in the caller's task). Calls of the shared
//! poller serve many deployments at once and are counted as shared.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use tapitalee_core::DeploymentId;

tokio::task_local! {
    static DEPLOYMENT: Option<DeploymentId>;
}

/// Runs `fut` with its API calls attributed to `deployment`.
pub(crate) async fn scoped<F: Future>(deployment: Option<DeploymentId>, fut: F) -> F::Output {
    DEPLOYMENT.scope(deployment, fut).await
}

#[derive(Debug, Default)]
struct Counts {
    total: BTreeMap<String, u64>,
    by_deployment: BTreeMap<DeploymentId, BTreeMap<String, u64>>,
}

/// The counter behind the interceptor, shared by every client of a backend.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallCounter {
    counts: Arc<Mutex<Counts>>,
}

impl CallCounter {
    fn record(&self, operation: &str, deployment: Option<DeploymentId>) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.total.entry(operation.to_owned()).or_default() += 1;
        if let Some(d) = deployment {
            *c.by_deployment
                .entry(d)
                .or_default()
                .entry(operation.to_owned())
                .or_default() += 1;
        }
    }

    pub(crate) fn snapshot(&self) -> ApiCalls {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        ApiCalls {
            total: c.total.clone(),
            by_deployment: c.by_deployment.clone(),
        }
    }
}

/// The interceptor installed on every SDK client.
#[derive(Debug, Clone)]
pub(crate) struct CountingInterceptor {
    pub(crate) counter: CallCounter,
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "tapitalee-call-counter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_owned();
        let deployment = DEPLOYMENT.try_with(|d| *d).ok().flatten();
        self.counter.record(&operation, deployment);
        Ok(())
    }
}

/// A snapshot of the API calls (request attempts, retries included) a backend made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiCalls {
    total: BTreeMap<String, u64>,
    by_deployment: BTreeMap<DeploymentId, BTreeMap<String, u64>>,
}

impl ApiCalls {
    /// Calls of one operation (e.g. `"DescribeServices"`), for all deployments and the poller.
    pub fn count(&self, operation: &str) -> u64 {
        self.total.get(operation).copied().unwrap_or(0)
    }

    /// Every call.
    pub fn total(&self) -> u64 {
        self.total.values().sum()
    }

    /// Calls per operation.
    pub fn by_operation(&self) -> &BTreeMap<String, u64> {
        &self.total
    }

    /// Calls made on behalf of one deployment, per operation (the shared poller's calls
    /// serve every deployment and are not attributed to any).
    pub fn for_deployment(&self, deployment: &DeploymentId) -> BTreeMap<String, u64> {
        self.by_deployment
            .get(deployment)
            .cloned()
            .unwrap_or_default()
    }

    /// The deployments that made calls.
    pub fn deployments(&self) -> impl Iterator<Item = &DeploymentId> {
        self.by_deployment.keys()
    }

    /// Calls since an earlier snapshot, per operation.
    pub fn since(&self, earlier: &ApiCalls) -> BTreeMap<String, u64> {
        self.total
            .iter()
            .map(|(op, n)| (op.clone(), n - earlier.count(op)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}
