//! Scripted SDK responses (aws-smithy-mocks) for what moto does not simulate: rollout
//! progress, circuit-breaker rollbacks, crash loops, throttling, 5xx, and batching.

mod cloudwatch;
mod native;
mod registry;
mod scripted;
mod target_health;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client};

use crate::backend::{AwsBackend, Clients};
use crate::config::{AppConfig, AwsConfig};
use crate::metrics::{CallCounter, CountingInterceptor};
use crate::retry::RetryPolicy;
use crate::throttle::RateLimits;

macro_rules! client {
    ($krate:ident, $rules:expr, $counter:expr) => {{
        let mut mock = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for r in $rules {
            mock = mock.with_rule(r);
        }
        $krate::Client::from_conf(
            $krate::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region($krate::config::Region::new("us-east-1"))
                .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
                .http_client(create_mock_http_client())
                .retry_config(RetryConfig::disabled())
                .interceptor(CountingInterceptor {
                    counter: $counter.clone(),
                })
                .interceptor(mock)
                .build(),
        )
    }};
}

/// A backend whose ECS, ELB and CloudWatch clients answer from scripted rules.
pub(crate) fn scripted(
    apps: Vec<AppConfig>,
    ecs: &[&Rule],
    elb: &[&Rule],
    cloudwatch: &[&Rule],
) -> AwsBackend {
    scripted_with_ecr(apps, ecs, &[], elb, cloudwatch)
}

/// [`scripted`], with ECR rules too.
pub(crate) fn scripted_with_ecr(
    apps: Vec<AppConfig>,
    ecs: &[&Rule],
    ecr: &[&Rule],
    elb: &[&Rule],
    cloudwatch: &[&Rule],
) -> AwsBackend {
    let counter = CallCounter::default();
    let none: &[&Rule] = &[];
    let clients = Clients {
        ecs: client!(aws_sdk_ecs, ecs.iter().copied(), counter),
        ecr: client!(aws_sdk_ecr, ecr.iter().copied(), counter),
        elb: client!(aws_sdk_elasticloadbalancingv2, elb.iter().copied(), counter),
        logs: client!(aws_sdk_cloudwatchlogs, none.iter().copied(), counter),
        cloudwatch: client!(aws_sdk_cloudwatch, cloudwatch.iter().copied(), counter),
        sts: client!(aws_sdk_sts, none.iter().copied(), counter),
    };
    let mut b = AwsConfig::builder()
        .region("us-east-1")
        .rate_limits(RateLimits::unlimited())
        .retry(RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        })
        .poll_batch_window(Duration::from_millis(5));
    for a in apps {
        b = b.app(a);
    }
    AwsBackend::with_clients(b.build().unwrap(), clients, counter)
}
