//! The ELB target-health probe, scripted: target states mapped to instances through their task
//! IPs. (On moto the probe cannot be run end to end: moto registers no task IPs in target
//! groups and its DescribeTasks answers do not parse.)

use aws_sdk_ecs::types::{
    Attachment, DeploymentControllerType, KeyValuePair, LoadBalancer, StabilityStatus, Task,
    TaskSet,
};
use aws_sdk_elasticloadbalancingv2::Client as Elb;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetHealth as ElbHealth, TargetHealthDescription, TargetHealthReasonEnum,
    TargetHealthStateEnum,
};
use aws_smithy_mocks::{Rule, mock};
use tapitalee_core::{
    AppName, Fleet, FleetId, FleetStatus, HealthProbe, Instance, InstanceStatus, ProcessName,
};

use super::scripted;
use super::scripted::{NEW_TD, ecs_service, fleet, refs, services_rule, tasks_rules};
use crate::config::{AppConfig, LoadBalancerConfig, ProcessConfig};
use tapitalee_core::Deployer;

const TS_ARN: &str = "arn:aws:ecs:us-east-1:1:task-set/c/s0/ecs-svc/9";
const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/blue/1";
const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/green/2";

fn web_app() -> AppConfig {
    AppConfig::new(AppName::new("myapp").unwrap(), "myapp")
        .process(
            ProcessConfig::new(ProcessName::new("p0").unwrap(), "c", "s0")
                .load_balancer(LoadBalancerConfig::new("arn:listener", BLUE, GREEN, 8080)),
        )
        .process(ProcessConfig::new(
            ProcessName::new("worker").unwrap(),
            "c",
            "s1",
        ))
}

fn task_with_ip(arn: &str, ip: &str) -> Task {
    Task::builder()
        .task_arn(arn)
        .started_by("ecs-svc/9")
        .task_definition_arn(NEW_TD)
        .last_status("RUNNING")
        .desired_status("RUNNING")
        .attachments(
            Attachment::builder()
                .r#type("ElasticNetworkInterface")
                .details(
                    KeyValuePair::builder()
                        .name("privateIPv4Address")
                        .value(ip)
                        .build(),
                )
                .build(),
        )
        .build()
}

fn target_health(
    ip: &str,
    state: TargetHealthStateEnum,
    reason: Option<(TargetHealthReasonEnum, &str)>,
) -> TargetHealthDescription {
    let mut h = ElbHealth::builder().state(state);
    if let Some((r, d)) = reason {
        h = h.reason(r).description(d);
    }
    TargetHealthDescription::builder()
        .target(TargetDescription::builder().id(ip).port(8080).build())
        .target_health(h.build())
        .build()
}

fn web_service(with_target_group: bool) -> Rule {
    web_service_with(with_target_group, |ts| ts)
}

/// The web service, its task set as `edit` makes it.
fn web_service_with(
    with_target_group: bool,
    edit: impl FnOnce(
        aws_sdk_ecs::types::builders::TaskSetBuilder,
    ) -> aws_sdk_ecs::types::builders::TaskSetBuilder,
) -> Rule {
    let mut ts = TaskSet::builder()
        .id("ecs-svc/9")
        .task_set_arn(TS_ARN)
        .status("ACTIVE")
        .task_definition(NEW_TD)
        .computed_desired_count(6);
    if with_target_group {
        ts = ts.load_balancers(
            LoadBalancer::builder()
                .target_group_arn(GREEN)
                .container_name("app")
                .container_port(8080)
                .build(),
        );
    }
    let mut svc = ecs_service("s0", DeploymentControllerType::External, vec![]);
    svc.task_sets = Some(vec![edit(ts).build()]);
    services_rule(vec![svc])
}

fn instance(id: &str, status: InstanceStatus) -> Instance {
    Instance {
        id: id.into(),
        status,
        started_at: None,
    }
}

fn candidate() -> Fleet {
    fleet("p0", TS_ARN, NEW_TD)
}

#[tokio::test]
async fn target_states_are_mapped_to_instances_by_task_ip() {
    let svc = web_service(true);
    let tasks = tasks_rules(vec![
        task_with_ip("t-healthy", "10.0.1.1"),
        task_with_ip("t-unhealthy", "10.0.1.2"),
        task_with_ip("t-initial", "10.0.1.3"),
        task_with_ip("t-draining", "10.0.1.4"),
        task_with_ip("t-unregistered", "10.0.1.5"),
    ]);
    let health = mock!(Elb::describe_target_health)
        .match_requests(|r| r.target_group_arn() == Some(GREEN))
        .then_output(|| {
            DescribeTargetHealthOutput::builder()
                .target_health_descriptions(target_health(
                    "10.0.1.1",
                    TargetHealthStateEnum::Healthy,
                    None,
                ))
                .target_health_descriptions(target_health(
                    "10.0.1.2",
                    TargetHealthStateEnum::Unhealthy,
                    Some((
                        TargetHealthReasonEnum::FailedHealthChecks,
                        "Health checks failed with these codes: [502]",
                    )),
                ))
                .target_health_descriptions(target_health(
                    "10.0.1.3",
                    TargetHealthStateEnum::Initial,
                    Some((
                        TargetHealthReasonEnum::RegistrationInProgress,
                        "Target registration is in progress",
                    )),
                ))
                .target_health_descriptions(target_health(
                    "10.0.1.4",
                    TargetHealthStateEnum::Draining,
                    Some((
                        TargetHealthReasonEnum::DeregistrationInProgress,
                        "Target deregistration is in progress",
                    )),
                ))
                // A target of another task, not ours.
                .target_health_descriptions(target_health(
                    "10.0.9.9",
                    TargetHealthStateEnum::Healthy,
                    None,
                ))
                .build()
        });
    let mut ecs = vec![&svc];
    ecs.extend(refs(&tasks));
    let backend = scripted(vec![web_app()], &ecs, &[&health], &[]);
    let running = InstanceStatus::Running {
        healthy: Some(true),
    };
    let status = FleetStatus {
        fleet: FleetId(TS_ARN.into()),
        desired: 6,
        instances: vec![
            instance("t-healthy", running.clone()),
            instance("t-unhealthy", running.clone()),
            instance("t-initial", InstanceStatus::Running { healthy: None }),
            instance("t-draining", running.clone()),
            instance("t-unregistered", running),
            // Not running yet: neither counted nor blamed on the load balancer.
            instance("t-pending", InstanceStatus::Pending),
        ],
    };
    let report = backend
        .target_health()
        .check(&candidate(), &status)
        .await
        .unwrap();
    assert_eq!(report.healthy, 1, "{report:?}");
    assert_eq!(report.problems.len(), 4, "{report:?}");
    let says = |needle: &str| {
        assert!(
            report.problems.iter().any(|p| p.contains(needle)),
            "no problem mentions {needle:?}: {report:?}"
        )
    };
    says("t-unhealthy is unhealthy in target group");
    says("[502]");
    says("t-initial is initial");
    says("t-draining is draining");
    says("t-unregistered is not registered in target group");
    assert!(report.problems.iter().all(|p| !p.contains("t-pending")));
    assert_eq!(health.num_calls(), 1);
}

#[tokio::test]
async fn processes_without_a_load_balancer_pass_through_without_elb_calls() {
    let health = mock!(Elb::describe_target_health)
        .then_output(|| DescribeTargetHealthOutput::builder().build());
    let backend = scripted(vec![web_app()], &[], &[&health], &[]);
    let worker = fleet("worker", "arn:td/worker:2", NEW_TD);
    let status = FleetStatus {
        fleet: worker.id.clone(),
        desired: 3,
        instances: vec![
            instance("a", InstanceStatus::Running { healthy: None }),
            instance(
                "b",
                InstanceStatus::Running {
                    healthy: Some(true),
                },
            ),
            instance("c", InstanceStatus::Pending),
        ],
    };
    let report = backend
        .target_health()
        .check(&worker, &status)
        .await
        .unwrap();
    assert_eq!(report.healthy, status.running());
    assert_eq!(report.healthy, 2);
    assert!(report.problems.is_empty());
    assert_eq!(backend.api_calls().count("DescribeTargetHealth"), 0);
    assert_eq!(backend.api_calls().count("DescribeServices"), 0);
}

#[tokio::test]
async fn a_task_set_on_no_target_group_passes_no_instance() {
    let svc = web_service(false);
    let health = mock!(Elb::describe_target_health)
        .then_output(|| DescribeTargetHealthOutput::builder().build());
    let backend = scripted(vec![web_app()], &[&svc], &[&health], &[]);
    let status = FleetStatus {
        fleet: FleetId(TS_ARN.into()),
        desired: 1,
        instances: vec![instance(
            "t1",
            InstanceStatus::Running {
                healthy: Some(true),
            },
        )],
    };
    let report = backend
        .target_health()
        .check(&candidate(), &status)
        .await
        .unwrap();
    assert_eq!(report.healthy, 0);
    assert!(
        report.problems[0].contains("attached to no target group"),
        "{report:?}"
    );
    assert_eq!(health.num_calls(), 0);
}

fn healthy_targets() -> DescribeTargetHealthOutput {
    DescribeTargetHealthOutput::builder()
        .target_health_descriptions(target_health(
            "10.0.1.1",
            TargetHealthStateEnum::Healthy,
            None,
        ))
        .target_health_descriptions(target_health(
            "10.0.1.2",
            TargetHealthStateEnum::Healthy,
            None,
        ))
        .build()
}

fn two_running() -> FleetStatus {
    let running = InstanceStatus::Running {
        healthy: Some(true),
    };
    FleetStatus {
        fleet: FleetId(TS_ARN.into()),
        desired: 2,
        instances: vec![instance("t1", running.clone()), instance("t2", running)],
    }
}

/// Everyone asking for a target group's health in one poll round shares one
/// `DescribeTargetHealth` (it was one call per check).
#[tokio::test]
async fn target_health_is_read_once_per_group_per_round() {
    let svc = web_service(true);
    let tasks = tasks_rules(vec![
        task_with_ip("t1", "10.0.1.1"),
        task_with_ip("t2", "10.0.1.2"),
    ]);
    let health = mock!(Elb::describe_target_health)
        .match_requests(|r| r.target_group_arn() == Some(GREEN))
        .then_output(healthy_targets);
    let td = super::scripted::task_def_rule();
    let mut ecs = vec![&svc, &td];
    ecs.extend(refs(&tasks));
    let backend = scripted(vec![web_app()], &ecs, &[&health], &[]);
    let probe = backend.target_health();
    let (fleet, status) = (candidate(), two_running());
    // The task listing the probe maps IPs from is the engine's, made before it checks.
    backend
        .deployer()
        .status(&super::scripted::ctx("p0"), &fleet)
        .await
        .unwrap();
    let reports = futures::future::join_all((0..4).map(|_| probe.check(&fleet, &status))).await;
    for r in reports {
        assert_eq!(r.unwrap().healthy, 2);
    }
    assert_eq!(health.num_calls(), 1, "4 checks in one round, one read");
}

/// A task set of 2 (running 2, nothing pending) in `stability`.
fn two_task_set(stability: StabilityStatus) -> Rule {
    web_service_with(true, |ts| {
        ts.computed_desired_count(2)
            .running_count(2)
            .pending_count(0)
            .stability_status(stability)
    })
}

/// Until ECS calls a task set STEADY_STATE it is not done, even when one read of its target
/// group shows every target healthy.
#[tokio::test]
async fn a_stabilizing_task_set_is_not_done_whatever_its_targets_say() {
    for (stability, healthy) in [
        (StabilityStatus::Stabilizing, 1),
        (StabilityStatus::SteadyState, 2),
    ] {
        let svc = two_task_set(stability.clone());
        let tasks = tasks_rules(vec![
            task_with_ip("t1", "10.0.1.1"),
            task_with_ip("t2", "10.0.1.2"),
        ]);
        let health = mock!(Elb::describe_target_health)
            .match_requests(|r| r.target_group_arn() == Some(GREEN))
            .then_output(healthy_targets);
        let td = super::scripted::task_def_rule();
        let mut ecs = vec![&svc, &td];
        ecs.extend(refs(&tasks));
        let backend = scripted(vec![web_app()], &ecs, &[&health], &[]);
        let fleet = candidate();
        let status = backend
            .deployer()
            .status(&super::scripted::ctx("p0"), &fleet)
            .await
            .unwrap();
        assert_eq!(status.desired, 2);
        let report = backend
            .target_health()
            .check(&fleet, &two_running())
            .await
            .unwrap();
        assert_eq!(report.healthy, healthy, "{stability:?}: {report:?}");
        if stability == StabilityStatus::Stabilizing {
            assert!(
                report.problems.iter().any(|p| p.contains("STABILIZING")),
                "{report:?}"
            );
        }
        // Target health is judged either way.
        assert_eq!(health.num_calls(), 1, "{stability:?}");
    }
}

/// A task set ECS calls STEADY_STATE, which the last listing shows whole and healthy, is
/// not listed and described again at every poll; a STABILIZING one is, and a steady one
/// is listed again after a few rounds all the same.
#[tokio::test]
async fn a_steady_task_set_shown_whole_is_not_listed_again_each_poll() {
    for (stability, polls, listings) in [
        (StabilityStatus::SteadyState, 4, 1),
        (StabilityStatus::Stabilizing, 4, 4),
        (
            StabilityStatus::SteadyState,
            crate::poller::LISTING_REUSES + 2,
            2,
        ),
    ] {
        let svc = two_task_set(stability.clone());
        let tasks = tasks_rules(vec![
            task_with_ip("t1", "10.0.1.1"),
            task_with_ip("t2", "10.0.1.2"),
        ]);
        let td = super::scripted::task_def_rule();
        let mut ecs = vec![&svc, &td];
        ecs.extend(refs(&tasks));
        let backend = scripted(vec![web_app()], &ecs, &[], &[]);
        let fleet = candidate();
        for _ in 0..polls {
            let status = backend
                .deployer()
                .status(&super::scripted::ctx("p0"), &fleet)
                .await
                .unwrap();
            assert_eq!(status.running(), 2, "{stability:?}: {status:?}");
        }
        let calls = backend.api_calls();
        assert_eq!(
            tasks[0].num_calls(),
            listings,
            "{stability:?}, {polls} polls: running listings"
        );
        assert_eq!(
            calls.count("DescribeTasks"),
            listings as u64,
            "{stability:?}, {polls} polls"
        );
        assert_eq!(calls.count("DescribeServices"), u64::from(polls));
    }
}
