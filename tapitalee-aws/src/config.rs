//! Configuration: where AWS is, which credentials, and how each app's processes map to ECS
//! services, load balancers and networks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tapitalee_core::{AppName, Error, ProcessName, Resource, Result, Secret};

use crate::ecs_strategy::EcsStrategy;
use crate::retry::RetryPolicy;
use crate::throttle::RateLimits;

/// Static credentials (for emulators and tests; production uses the default chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key; never printed.
    pub secret_access_key: Secret,
    /// A session token, if any; never printed.
    pub session_token: Option<Secret>,
}

/// An IAM role calls are made as: the backend assumes it (STS `AssumeRole`) with the
/// credentials the configuration otherwise gives, and renews it before it expires. For the
/// whole backend ([`AwsConfigBuilder::assume_role`]) or for one app
/// ([`AppConfig::assume_role`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssumeRole {
    /// The role's ARN, e.g. `arn:aws:iam::123456789012:role/deployer`.
    pub arn: String,
    /// The session name AWS records in CloudTrail (default `tapitalee`).
    pub session_name: String,
    /// The external id the role's trust policy asks for, if any.
    pub external_id: Option<String>,
}

impl AssumeRole {
    /// The role `arn`, session name `tapitalee`, no external id.
    pub fn new(arn: impl Into<String>) -> Self {
        AssumeRole {
            arn: arn.into(),
            session_name: "tapitalee".into(),
            external_id: None,
        }
    }

    /// The session name (2 to 64 of `A-Z a-z 0-9 _ + = , . @ -`).
    #[must_use]
    pub fn session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = name.into();
        self
    }

    /// The external id the role's trust policy asks for.
    #[must_use]
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(id.into());
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let parts: Vec<&str> = self.arn.split(':').collect();
        let valid = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && is_account_id(parts[4])
            && parts[5]
                .strip_prefix("role/")
                .is_some_and(|n| !n.is_empty());
        if !valid {
            return Err(Error::invalid(
                "IAM role ARN",
                &self.arn,
                "must be a role's ARN, e.g. arn:aws:iam::123456789012:role/deployer",
            ));
        }
        let name_ok = (2..=64).contains(&self.session_name.len())
            && self
                .session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !name_ok {
            return Err(Error::invalid(
                "role session name",
                &self.session_name,
                "must be 2 to 64 of A-Z a-z 0-9 _ + = , . @ -",
            ));
        }
        Ok(())
    }
}

impl StaticCredentials {
    /// Credentials from a key pair.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: Secret) -> Self {
        StaticCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
        }
    }
}

/// Where a process's tasks run (awsvpc): needed to create task sets when no live one exists
/// to copy it from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Subnet ids.
    pub subnets: Vec<String>,
    /// Security group ids.
    pub security_groups: Vec<String>,
    /// Whether tasks get a public IP.
    pub assign_public_ip: bool,
}

/// The load balancer in front of a web process: an ALB listener (or one of its rules)
/// forwarding to a pair of target groups. Each task set is attached to one of the pair; a
/// deployment launches the new task set on the group the live one does not use, so the pair
/// alternates blue/green.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerConfig {
    /// The listener ARN.
    pub listener_arn: String,
    /// A listener rule ARN: when set, its forward action is weighted instead of the
    /// listener's default action.
    pub rule_arn: Option<String>,
    /// The two target groups (ARNs).
    pub target_groups: [String; 2],
    /// The container receiving traffic (default: the process's main container).
    pub container_name: Option<String>,
    /// Its port.
    pub container_port: i32,
    /// Other routes of the same production traffic (an HTTPS listener beside the HTTP one, a
    /// second rule), weighted in step with the first.
    pub extra_routes: Vec<Route>,
}

/// Where a process's production traffic enters: a listener's default actions, or one of its
/// rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The listener ARN.
    pub listener_arn: String,
    /// A rule of it, whose forward action is weighted instead of the listener's default one.
    pub rule_arn: Option<String>,
}

impl LoadBalancerConfig {
    /// A listener forwarding to two target groups, to `container_port` of the main container.
    pub fn new(
        listener_arn: impl Into<String>,
        blue_target_group: impl Into<String>,
        green_target_group: impl Into<String>,
        container_port: i32,
    ) -> Self {
        LoadBalancerConfig {
            listener_arn: listener_arn.into(),
            rule_arn: None,
            target_groups: [blue_target_group.into(), green_target_group.into()],
            container_name: None,
            container_port,
            extra_routes: Vec::new(),
        }
    }

    /// Another route of the same production traffic (a listener, or one of its rules), whose
    /// forward action is weighted in step with the first.
    #[must_use]
    pub fn also_route(mut self, listener_arn: impl Into<String>, rule_arn: Option<String>) -> Self {
        self.extra_routes.push(Route {
            listener_arn: listener_arn.into(),
            rule_arn,
        });
        self
    }

    /// Every route of the process's traffic: the first, then the extra ones.
    pub fn routes(&self) -> Vec<Route> {
        let first = Route {
            listener_arn: self.listener_arn.clone(),
            rule_arn: self.rule_arn.clone(),
        };
        std::iter::once(first)
            .chain(self.extra_routes.iter().cloned())
            .collect()
    }

    /// Weights this listener rule's forward action instead of the default action.
    #[must_use]
    pub fn rule(mut self, rule_arn: impl Into<String>) -> Self {
        self.rule_arn = Some(rule_arn.into());
        self
    }

    /// The container receiving traffic.
    #[must_use]
    pub fn container_name(mut self, name: impl Into<String>) -> Self {
        self.container_name = Some(name.into());
        self
    }
}

/// One process of an app: its ECS cluster and service, and what ECS needs to launch it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessConfig {
    /// The process name (`default`, `worker`, …).
    pub name: ProcessName,
    /// The ECS cluster name or ARN.
    pub cluster: String,
    /// The ECS service name.
    pub service: String,
    /// The container whose image a deployment changes (default: the task definition's first
    /// essential container).
    pub container: Option<String>,
    /// The task definition family to start from when the service runs nothing yet (default:
    /// the service's own task definition).
    pub task_family: Option<String>,
    /// The load balancer, for web processes.
    pub load_balancer: Option<LoadBalancerConfig>,
    /// The network for new task sets when there is no live one to copy.
    pub network: Option<NetworkConfig>,
    /// For a service on the ECS deployment controller: the strategy ECS runs for each new
    /// revision. `None` leaves the service's deployment configuration as it is.
    pub ecs_strategy: Option<EcsStrategy>,
}

impl ProcessConfig {
    /// A process running as `service` in `cluster`.
    pub fn new(name: ProcessName, cluster: impl Into<String>, service: impl Into<String>) -> Self {
        ProcessConfig {
            name,
            cluster: cluster.into(),
            service: service.into(),
            container: None,
            task_family: None,
            load_balancer: None,
            network: None,
            ecs_strategy: None,
        }
    }

    /// The container whose image deployments change.
    #[must_use]
    pub fn container(mut self, name: impl Into<String>) -> Self {
        self.container = Some(name.into());
        self
    }

    /// The task definition family to start from when nothing runs yet.
    #[must_use]
    pub fn task_family(mut self, family: impl Into<String>) -> Self {
        self.task_family = Some(family.into());
        self
    }

    /// Fronts the process with a load balancer.
    #[must_use]
    pub fn load_balancer(mut self, lb: LoadBalancerConfig) -> Self {
        self.load_balancer = Some(lb);
        self
    }

    /// The network for new task sets.
    #[must_use]
    pub fn network(mut self, network: NetworkConfig) -> Self {
        self.network = Some(network);
        self
    }

    /// The deployment strategy ECS runs for this process (its service must be on the ECS
    /// deployment controller): rolling, blue-green, linear or canary. Set on `UpdateService`
    /// with each new revision; see [`EcsStrategy`].
    #[must_use]
    pub fn ecs_strategy(mut self, strategy: EcsStrategy) -> Self {
        self.ecs_strategy = Some(strategy);
        self
    }
}

/// An app: its ECR repository and its processes.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    /// The app name.
    pub name: AppName,
    /// The ECR repository name (not URI) holding its images.
    pub repository: String,
    /// The AWS account whose ECR registry holds the repository, when it is not the caller's
    /// own (a central registry shared by several accounts). `None`: the caller's registry.
    pub registry_id: Option<String>,
    /// Deregister the task definition revision of a deployment that was rolled back (it is
    /// then `INACTIVE`: kept by ECS for the record, offered to no new service or task set).
    /// Off by default.
    pub deregister_rolled_back: bool,
    /// The IAM role this app's calls (ECS, ELBv2, ECR, CloudWatch) are made as, assumed with
    /// the backend's base credentials (not through the backend's own role). `None`: the
    /// backend's credentials (and its role, if it has one).
    pub role: Option<AssumeRole>,
    /// Its processes.
    pub processes: Vec<ProcessConfig>,
}

impl AppConfig {
    /// An app whose images live in the ECR repository `repository`.
    pub fn new(name: AppName, repository: impl Into<String>) -> Self {
        AppConfig {
            name,
            repository: repository.into(),
            registry_id: None,
            deregister_rolled_back: false,
            role: None,
            processes: Vec::new(),
        }
    }

    /// Deregister the task definition revision a rolled-back deployment registered, once its
    /// fleet is retired (only a revision that deployment registered, and that nothing of the
    /// service runs any more). Off by default: the revisions stay `ACTIVE`.
    #[must_use]
    pub fn deregister_rolled_back(mut self, on: bool) -> Self {
        self.deregister_rolled_back = on;
        self
    }

    /// The repository lives in the ECR registry of account `account_id` (12 digits), e.g. a
    /// central registry that the app's account may pull from.
    #[must_use]
    pub fn registry_id(mut self, account_id: impl Into<String>) -> Self {
        self.registry_id = Some(account_id.into());
        self
    }

    /// Makes this app's calls as the IAM role `role` (an app in another account, or with its
    /// own deploy role), assumed with the backend's base credentials. Apps on the same role
    /// share its credentials, assumed once and renewed before they expire.
    #[must_use]
    pub fn assume_role(mut self, role: AssumeRole) -> Self {
        self.role = Some(role);
        self
    }

    /// Adds a process.
    #[must_use]
    pub fn process(mut self, process: ProcessConfig) -> Self {
        self.processes.push(process);
        self
    }

    /// A process by name, or [`Error::NotFound`] listing the app's processes.
    pub fn get(&self, process: &ProcessName) -> Result<&ProcessConfig> {
        self.processes
            .iter()
            .find(|p| &p.name == process)
            .ok_or_else(|| {
                Error::not_found(
                    Resource::Process,
                    process.as_str(),
                    format!("app {} has: {}", self.name, self.process_names()),
                )
            })
    }

    fn process_names(&self) -> String {
        self.processes
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The AWS backend's configuration. Build with [`AwsConfig::builder`] or
/// [`AwsConfig::from_env`].
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) credentials: Option<StaticCredentials>,
    pub(crate) role: Option<AssumeRole>,
    pub(crate) apps: BTreeMap<AppName, AppConfig>,
    pub(crate) retry: RetryPolicy,
    pub(crate) rates: RateLimits,
    pub(crate) poll_window: Duration,
    pub(crate) call_timeout: Duration,
}

impl AwsConfig {
    /// A builder with nothing set: credentials come from the default chain unless given.
    pub fn builder() -> AwsConfigBuilder {
        AwsConfigBuilder::default()
    }

    /// A builder primed from the environment: `AWS_REGION` (or `AWS_DEFAULT_REGION`) and
    /// `AWS_ENDPOINT_URL` (an emulator). Credentials come from the default chain (environment,
    /// profile, SSO, container or instance role).
    pub fn from_env() -> AwsConfigBuilder {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        AwsConfigBuilder {
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint_url: var("AWS_ENDPOINT_URL"),
            ..AwsConfigBuilder::default()
        }
    }

    /// An app's configuration, or [`Error::NotFound`] listing the configured apps.
    pub fn app(&self, app: &AppName) -> Result<&AppConfig> {
        self.apps.get(app).ok_or_else(|| {
            let known = self
                .apps
                .keys()
                .map(AppName::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            Error::not_found(
                Resource::App,
                app.as_str(),
                if known.is_empty() {
                    "no app is configured; add one with AwsConfigBuilder::app".to_owned()
                } else {
                    format!("configured apps: {known}")
                },
            )
        })
    }

    /// The region in force, if set explicitly.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The endpoint override, if any.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }
}

/// Builds an [`AwsConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct AwsConfigBuilder {
    region: Option<String>,
    endpoint_url: Option<String>,
    credentials: Option<StaticCredentials>,
    role: Option<AssumeRole>,
    apps: Vec<AppConfig>,
    retry: RetryPolicy,
    rates: RateLimits,
    poll_window: Duration,
    call_timeout: Duration,
}

/// How long one attempt of an API call may take by default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for AwsConfigBuilder {
    fn default() -> Self {
        AwsConfigBuilder {
            region: None,
            endpoint_url: None,
            credentials: None,
            role: None,
            apps: Vec::new(),
            retry: RetryPolicy::default(),
            rates: RateLimits::ecs_defaults(),
            poll_window: Duration::from_millis(50),
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

impl AwsConfigBuilder {
    /// The AWS region, e.g. `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sends every request to this endpoint (an emulator such as moto), e.g.
    /// `http://127.0.0.1:5000`.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Uses these credentials instead of the default chain.
    pub fn credentials(mut self, credentials: StaticCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Makes every call as the IAM role `role`, assumed with the credentials otherwise in
    /// force (a deploy role per environment or account). An app with a role of its own
    /// ([`AppConfig::assume_role`]) uses that one instead.
    pub fn assume_role(mut self, role: AssumeRole) -> Self {
        self.role = Some(role);
        self
    }

    /// Adds an app.
    pub fn app(mut self, app: AppConfig) -> Self {
        self.apps.push(app);
        self
    }

    /// How throttled and transient failures are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Client-side rate limits per API operation (default: under ECS's documented sustained
    /// rates).
    pub fn rate_limits(mut self, rates: RateLimits) -> Self {
        self.rates = rates;
        self
    }

    /// How long the shared poller waits to gather requests into one round (default 50 ms).
    pub fn poll_batch_window(mut self, window: Duration) -> Self {
        self.poll_window = window;
        self
    }

    /// How long one attempt of an API call may take before it is abandoned and, like any
    /// transient failure, retried (default 30 s). Without it, an answer lost on the way
    /// would keep the call, and every deployment waiting on the same poll round, waiting for
    /// ever.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The configuration, or [`Error::InvalidInput`] naming the bad value.
    pub fn build(self) -> Result<AwsConfig> {
        if self.call_timeout.is_zero() {
            return Err(Error::invalid(
                "call timeout",
                format!("{:?}", self.call_timeout),
                "must be more than zero, e.g. AwsConfigBuilder::call_timeout(Duration::from_secs(30))",
            ));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Error::invalid(
                "endpoint URL",
                url,
                "must start with http:// or https:// (e.g. http://127.0.0.1:5000)",
            ));
        }
        if let Some(region) = &self.region
            && (region.is_empty() || region.contains(char::is_whitespace))
        {
            return Err(Error::invalid(
                "AWS region",
                region,
                "must be a region code such as us-east-1",
            ));
        }
        if let Some(role) = &self.role {
            role.validate()?;
        }
        let mut apps = BTreeMap::new();
        for app in self.apps {
            validate_app(&app)?;
            let name = app.name.clone();
            if apps.insert(name.clone(), app).is_some() {
                return Err(Error::invalid(
                    "app",
                    name.as_str(),
                    "is configured twice; merge its processes into one AppConfig",
                ));
            }
        }
        Ok(AwsConfig {
            region: self.region,
            endpoint_url: self.endpoint_url,
            credentials: self.credentials,
            role: self.role,
            apps,
            retry: self.retry,
            rates: self.rates,
            poll_window: self.poll_window,
            call_timeout: self.call_timeout,
        })
    }
}

/// Whether `s` is an AWS account id (12 digits).
pub(crate) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn validate_app(app: &AppConfig) -> Result<()> {
    if let Some(role) = &app.role {
        role.validate()?;
    }
    if app.repository.is_empty() || app.repository.contains(char::is_whitespace) {
        return Err(Error::invalid(
            "ECR repository",
            &app.repository,
            format!(
                "app {} needs its ECR repository name, e.g. \"{}\"",
                app.name, app.name
            ),
        ));
    }
    if let Some(id) = &app.registry_id
        && !is_account_id(id)
    {
        return Err(Error::invalid(
            "ECR registry id",
            id,
            format!(
                "app {} names the registry by its AWS account id: 12 digits, e.g. \"123456789012\"",
                app.name
            ),
        ));
    }
    if app.processes.is_empty() {
        return Err(Error::invalid(
            "app",
            app.name.as_str(),
            "has no process; add one with AppConfig::process",
        ));
    }
    let mut seen = BTreeSet::new();
    for p in &app.processes {
        if !seen.insert(&p.name) {
            return Err(Error::invalid(
                "process",
                p.name.as_str(),
                format!("is configured twice in app {}", app.name),
            ));
        }
        for (what, v) in [("ECS cluster", &p.cluster), ("ECS service", &p.service)] {
            if v.is_empty() {
                return Err(Error::invalid(
                    what,
                    v,
                    format!("process {}/{} needs one", app.name, p.name),
                ));
            }
        }
        if let Some(strategy) = &p.ecs_strategy {
            let name = format!("{}/{}", app.name, p.name);
            strategy.validate(&name)?;
            if p.load_balancer.is_some() {
                return Err(Error::invalid(
                    "ECS deployment strategy",
                    strategy.name(),
                    format!(
                        "process {name} also has a LoadBalancerConfig, which is for services on \
                         the EXTERNAL controller (task sets and weighted routing), while an ECS \
                         strategy is for the ECS controller; a service has one controller, so \
                         drop one of them"
                    ),
                ));
            }
        }
        if let Some(lb) = &p.load_balancer {
            if lb.target_groups[0] == lb.target_groups[1] {
                return Err(Error::invalid(
                    "target group pair",
                    &lb.target_groups[0],
                    "a load-balanced process needs two different target groups (blue and green)",
                ));
            }
            if !(1..=65535).contains(&lb.container_port) {
                return Err(Error::invalid(
                    "container port",
                    lb.container_port.to_string(),
                    "must be 1-65535",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ProcessName {
        ProcessName::new(s).unwrap()
    }

    #[test]
    fn unknown_process_lists_the_known_ones() {
        let app = AppConfig::new(AppName::new("myapp").unwrap(), "myapp")
            .process(ProcessConfig::new(name("default"), "c", "web"))
            .process(ProcessConfig::new(name("worker"), "c", "worker"));
        let e = app.get(&name("wrker")).unwrap_err().to_string();
        assert_eq!(
            e,
            "process \"wrker\" not found (app myapp has: default, worker)"
        );
    }

    #[test]
    fn builder_refuses_bad_values() {
        let app = || AppConfig::new(AppName::new("myapp").unwrap(), "myapp");
        let e = AwsConfig::builder()
            .endpoint_url("127.0.0.1:5000")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        let e = AwsConfig::builder().app(app()).build().unwrap_err();
        assert!(e.to_string().contains("has no process"), "{e}");
        let lb = LoadBalancerConfig::new("l", "tg", "tg", 80);
        let e = AwsConfig::builder()
            .app(app().process(ProcessConfig::new(name("default"), "c", "s").load_balancer(lb)))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("two different target groups"), "{e}");
        let cfg = AwsConfig::builder()
            .region("us-east-1")
            .app(app().process(ProcessConfig::new(name("default"), "c", "s")))
            .build()
            .unwrap();
        let e = cfg.app(&AppName::new("other").unwrap()).unwrap_err();
        assert!(e.to_string().contains("configured apps: myapp"), "{e}");
    }

    #[test]
    fn builder_checks_ecs_strategies() {
        let app = |p: ProcessConfig| {
            AwsConfig::builder()
                .app(AppConfig::new(AppName::new("myapp").unwrap(), "myapp").process(p))
                .build()
        };
        let worker = || ProcessConfig::new(name("worker"), "c", "s");
        let e = app(worker().ecs_strategy(EcsStrategy::BlueGreen {
            bake_time: Duration::from_secs(30),
        }))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bake time \"30s\"") && e.contains("myapp/worker") && e.contains("60s"),
            "{e}"
        );
        let e = app(worker()
            .ecs_strategy(EcsStrategy::Rolling)
            .load_balancer(LoadBalancerConfig::new("l", "a", "b", 80)))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"ROLLING\"") && e.contains("EXTERNAL") && e.contains("drop one"),
            "{e}"
        );
        let cfg = app(worker().ecs_strategy(EcsStrategy::Linear {
            step_percent: 10.0,
            step_bake_time: Duration::from_secs(60),
            bake_time: Duration::ZERO,
        }))
        .unwrap();
        let p = cfg
            .app(&AppName::new("myapp").unwrap())
            .unwrap()
            .get(&name("worker"))
            .unwrap();
        assert_eq!(p.ecs_strategy.map(|s| s.name()), Some("LINEAR"));
    }

    #[test]
    fn debug_redacts_credentials() {
        let cfg = AwsConfig::builder()
            .credentials(StaticCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new("wJalrXUtnFEMI-very-secret"),
                session_token: Some(Secret::new("session-token-secret")),
            })
            .build()
            .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("session-token-secret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
