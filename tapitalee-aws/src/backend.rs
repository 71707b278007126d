//! [`AwsBackend`]: the SDK clients, the call layer, the shared poller and the counters; every
//! trait implementation of the crate is a cheap handle on one of these.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use tapitalee_core::{AppName, Error, Result};

use crate::cloudwatch::{AlarmAnalysis, MetricAnalysis, MetricQuery};
use crate::config::{AssumeRole, AwsConfig};
use crate::ecr::EcrRegistry;
use crate::ecs::EcsDeployer;
use crate::elb::TargetHealth;
use crate::logs::CloudWatchLogs;
use crate::metrics::{ApiCalls, CallCounter, CountingInterceptor};
use crate::poller::Poller;
use crate::retry::CallLayer;
use crate::taskdef::TaskDefCache;
use crate::throttle::RateLimiter;

/// The SDK configuration (region, credentials, endpoint) of `config` and the environment, with
/// the SDK's own retries off (the call layer retries), as the backend's role if it has one.
/// Makes no API call.
pub(crate) async fn load_sdk(config: &AwsConfig) -> Result<aws_config::SdkConfig> {
    let base = load_base_sdk(config).await?;
    Ok(match &config.role {
        Some(role) => as_role(&base, role).await,
        None => base,
    })
}

/// [`load_sdk`] before any role: the base credentials roles are assumed with.
async fn load_base_sdk(config: &AwsConfig) -> Result<aws_config::SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(config.call_timeout)
                .build(),
        )
        .app_name(
            aws_config::AppName::new("tapitalee")
                .map_err(|e| Error::platform("configure the AWS SDK", e.to_string()))?,
        );
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(c) = &config.credentials {
        loader = loader.credentials_provider(Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.expose(),
            c.session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            "tapitalee-static",
        ));
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(Error::invalid(
            "AWS region",
            "",
            "is not set; set AWS_REGION or call AwsConfigBuilder::region(\"us-east-1\")",
        ));
    }
    Ok(sdk)
}

/// `sdk` with `role`'s credentials: assumed on the first call (not here) with `sdk`'s
/// credentials, through the same endpoint settings. The clients built from the result share
/// one identity cache, so the role is assumed once for all of them and renewed before its
/// credentials expire.
async fn as_role(sdk: &aws_config::SdkConfig, role: &AssumeRole) -> aws_config::SdkConfig {
    let mut provider = AssumeRoleProvider::builder(&role.arn)
        .session_name(&role.session_name)
        .configure(sdk);
    if let Some(id) = &role.external_id {
        provider = provider.external_id(id);
    }
    let provider = provider.build().await;
    sdk.clone()
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

/// The SDK clients of one backend.
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    pub(crate) ecs: aws_sdk_ecs::Client,
    pub(crate) ecr: aws_sdk_ecr::Client,
    pub(crate) elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(crate) logs: aws_sdk_cloudwatchlogs::Client,
    pub(crate) cloudwatch: aws_sdk_cloudwatch::Client,
    pub(crate) sts: aws_sdk_sts::Client,
}

impl Clients {
    /// Every client of `sdk`, counting calls into `counting`.
    fn new(sdk: &aws_config::SdkConfig, counting: &CountingInterceptor) -> Self {
        Clients {
            ecs: aws_sdk_ecs::Client::from_conf(
                aws_sdk_ecs::config::Builder::from(sdk)
                    .interceptor(counting.clone())
                    .build(),
            ),
            ecr: aws_sdk_ecr::Client::from_conf(
                aws_sdk_ecr::config::Builder::from(sdk)
                    .interceptor(counting.clone())
                    .build(),
            ),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(
                aws_sdk_elasticloadbalancingv2::config::Builder::from(sdk)
                    .interceptor(counting.clone())
                    .build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
                    .interceptor(counting.clone())
                    .build(),
            ),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(
                aws_sdk_cloudwatch::config::Builder::from(sdk)
                    .interceptor(counting.clone())
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(sdk)
                    .interceptor(counting.clone())
                    .build(),
            ),
        }
    }
}

/// The clients of one identity (the backend's, or a role's), and the poller that batches
/// their polls: services seen through different roles are described by different calls.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) clients: Clients,
    pub(crate) poller: Poller,
}

impl Scope {
    fn new(clients: Clients, layer: &CallLayer, window: std::time::Duration) -> Self {
        let poller = Poller::new(
            clients.ecs.clone(),
            clients.elb.clone(),
            layer.clone(),
            window,
        );
        Scope { clients, poller }
    }
}

/// What every handle of a backend shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: AwsConfig,
    /// The backend's own identity.
    base: Scope,
    /// One per distinct app role ([`crate::AppConfig::assume_role`]).
    roles: HashMap<AssumeRole, Scope>,
    pub(crate) layer: CallLayer,
    pub(crate) counter: CallCounter,
    pub(crate) task_defs: TaskDefCache,
}

impl Shared {
    /// The identity `app`'s calls are made as: its role's, or the backend's.
    pub(crate) fn scope(&self, app: &AppName) -> &Scope {
        self.config
            .apps
            .get(app)
            .and_then(|a| a.role.as_ref())
            .and_then(|r| self.roles.get(r))
            .unwrap_or(&self.base)
    }

    /// The SDK clients for `app`'s calls.
    pub(crate) fn clients(&self, app: &AppName) -> &Clients {
        &self.scope(app).clients
    }

    /// The shared poller for `app`'s services.
    pub(crate) fn poller(&self, app: &AppName) -> &Poller {
        &self.scope(app).poller
    }
}

/// The AWS backend: ECS (Fargate), ECR, ELBv2 and CloudWatch behind Tapitalee's traits.
///
/// One backend holds one set of SDK clients, one rate limiter, one batched poller and one
/// call counter; the handles it gives out ([`deployer`](Self::deployer),
/// [`registry`](Self::registry), …) share them, so every deployment in flight polls through
/// the same batches and stays under the same rate limits.
#[derive(Debug, Clone)]
pub struct AwsBackend {
    shared: Arc<Shared>,
}

impl AwsBackend {
    /// Connects: loads the SDK configuration (region, credentials, endpoint) from `config` and
    /// the environment, and prepares a set of clients per app role. Makes no API call (roles
    /// are assumed on their first use).
    pub async fn connect(config: AwsConfig) -> Result<Self> {
        let base = load_base_sdk(&config).await?;
        let sdk = match &config.role {
            Some(role) => as_role(&base, role).await,
            None => base.clone(),
        };
        let counter = CallCounter::default();
        let counting = CountingInterceptor {
            counter: counter.clone(),
        };
        let mut roles = HashMap::new();
        for role in config.apps.values().filter_map(|a| a.role.as_ref()) {
            if !roles.contains_key(role) {
                let clients = Clients::new(&as_role(&base, role).await, &counting);
                roles.insert(role.clone(), clients);
            }
        }
        let clients = Clients::new(&sdk, &counting);
        Ok(Self::with_scopes(config, clients, roles, counter))
    }

    /// A backend over prepared clients (whose interceptors feed `counter`).
    #[cfg(test)]
    pub(crate) fn with_clients(config: AwsConfig, clients: Clients, counter: CallCounter) -> Self {
        Self::with_scopes(config, clients, HashMap::new(), counter)
    }

    fn with_scopes(
        config: AwsConfig,
        clients: Clients,
        roles: HashMap<AssumeRole, Clients>,
        counter: CallCounter,
    ) -> Self {
        let layer = CallLayer {
            limiter: RateLimiter::new(config.rates.clone()),
            retry: config.retry,
        };
        let window = config.poll_window;
        AwsBackend {
            shared: Arc::new(Shared {
                base: Scope::new(clients, &layer, window),
                roles: roles
                    .into_iter()
                    .map(|(r, c)| (r, Scope::new(c, &layer, window)))
                    .collect(),
                config,
                layer,
                counter,
                task_defs: TaskDefCache::default(),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &AwsConfig {
        &self.shared.config
    }

    /// The ECS [`Deployer`](tapitalee_core::Deployer).
    pub fn deployer(&self) -> EcsDeployer {
        EcsDeployer::new(self.shared.clone())
    }

    /// The ECR [`ImageRegistry`](tapitalee_core::ImageRegistry).
    pub fn registry(&self) -> EcrRegistry {
        EcrRegistry::new(self.shared.clone())
    }

    /// The load balancer target health [`HealthProbe`](tapitalee_core::HealthProbe).
    pub fn target_health(&self) -> TargetHealth {
        TargetHealth::new(self.shared.clone())
    }

    /// CloudWatch Logs of processes (`tapit show logs`).
    pub fn logs(&self) -> CloudWatchLogs {
        CloudWatchLogs::new(self.shared.clone())
    }

    /// An [`Analysis`](tapitalee_core::Analysis) gate on CloudWatch alarms: fails while any is
    /// in ALARM, passes when all are OK.
    pub fn alarm_analysis(
        &self,
        name: impl Into<String>,
        alarm_names: impl IntoIterator<Item = impl Into<String>>,
    ) -> AlarmAnalysis {
        AlarmAnalysis::new(self.shared.clone(), name.into(), alarm_names)
    }

    /// An [`Analysis`](tapitalee_core::Analysis) gate on a CloudWatch metric query.
    pub fn metric_analysis(&self, query: MetricQuery) -> MetricAnalysis {
        MetricAnalysis::new(self.shared.clone(), query)
    }

    /// A [`DynamoStore`](crate::DynamoStore) builder on `table`, with this backend's region,
    /// endpoint, credentials and retry policy.
    pub fn dynamo_store(&self, table: impl Into<String>) -> crate::DynamoStoreBuilder {
        crate::DynamoStore::builder()
            .table(table)
            .aws_config(self.shared.config.clone())
    }

    /// Every API call this backend made so far, per operation and per deployment.
    pub fn api_calls(&self) -> ApiCalls {
        self.shared.counter.snapshot()
    }

    /// Who this backend's calls are made as: the ARN STS `GetCallerIdentity` reports (an
    /// assumed role shows as `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`). To check which
    /// account and role a configuration reaches before deploying with it.
    pub async fn caller_identity(&self) -> Result<String> {
        Self::identity_of(&self.shared, &self.shared.base.clients).await
    }

    /// Who `app`'s calls are made as: its own role ([`crate::AppConfig::assume_role`]), or
    /// the backend's identity. [`Error::NotFound`] for an app not configured.
    pub async fn caller_identity_of(&self, app: &AppName) -> Result<String> {
        self.shared.config.app(app)?;
        Self::identity_of(&self.shared, self.shared.clients(app)).await
    }

    async fn identity_of(shared: &Shared, clients: &Clients) -> Result<String> {
        let sts = &clients.sts;
        let out = shared
            .layer
            .call("GetCallerIdentity", None, || {
                sts.get_caller_identity().send()
            })
            .await?;
        out.arn()
            .map(str::to_owned)
            .ok_or_else(|| crate::error::unexpected("GetCallerIdentity", "STS returned no ARN"))
    }
}
