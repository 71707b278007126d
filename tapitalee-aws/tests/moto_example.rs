//! `examples/aws_deploy.rs`, run against moto: the example's own `deploy` (backend, engine,
//! registry, probe, strategy) deploys a new tag to an ECS-controller service.
//!
//! moto starts no tasks, so the service is scaled to zero first: the deployment makes every
//! API call of a real one (resolve the tag in ECR, copy the task definition with the image
//! pinned by digest, UpdateService with the strategy, poll the rollout) while the health gate
//! has no instance to wait for.

mod support;

#[allow(dead_code)]
#[path = "../../examples/aws_deploy.rs"]
mod aws_deploy;

use aws_sdk_ecs::types::DeploymentStrategy;
use tapitalee_core::{DeploymentStatus, DockerTag, ImageRegistry, ProcessStatus};

#[tokio::test]
async fn the_aws_deploy_example_deploys_a_tag_on_moto() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tapitalee=debug,tapitalee_aws=debug,tapitalee_core=debug")
        .with_test_writer()
        .try_init();
    let f = support::fixture("example1");
    let ecs = aws_sdk_ecs::Client::new(&support::sdk().await);
    ecs.update_service()
        .cluster(f.s("cluster"))
        .service(f.s("worker_service"))
        .desired_count(0)
        .send()
        .await
        .unwrap();

    let argv: Vec<String> = [
        "aws_deploy",
        "--endpoint",
        &support::moto().endpoint,
        "--app",
        &f.prefix,
        "--repository",
        &f.s("repository"),
        "--cluster",
        &f.s("cluster"),
        "--service",
        &f.s("worker_service"),
        "--tag",
        "v2",
        "--ecs-strategy",
        "rolling",
        "--progress-deadline",
        "30s",
    ]
    .map(str::to_owned)
    .to_vec();
    let args = aws_deploy::Args::parse(&argv).unwrap();
    let (record, backend) = aws_deploy::deploy(&args).await.unwrap();

    assert_eq!(record.status, DeploymentStatus::Succeeded, "{record:#?}");
    let p = &record.processes[0];
    assert_eq!(p.status, ProcessStatus::Succeeded, "{p:#?}");
    let from = p.from.as_ref().expect("the revision it ran before");
    let to = p.to.as_ref().expect("the new revision");
    assert_eq!(from.id, f.s("worker_task_definition"));
    assert_ne!(to.id, from.id);

    // The service runs the new revision, its image pinned to v2's digest, rolled out ROLLING.
    let v2 = backend
        .registry()
        .resolve(&f.app(), &DockerTag::new("v2").unwrap())
        .await
        .unwrap();
    let svc = ecs
        .describe_services()
        .cluster(f.s("cluster"))
        .services(f.s("worker_service"))
        .send()
        .await
        .unwrap();
    let s = &svc.services()[0];
    assert_eq!(s.task_definition(), Some(to.id.as_str()));
    assert_eq!(
        s.deployment_configuration().and_then(|c| c.strategy()),
        Some(&DeploymentStrategy::Rolling)
    );
    let td = ecs
        .describe_task_definition()
        .task_definition(&to.id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        td.task_definition().unwrap().container_definitions()[0].image(),
        Some(v2.pinned().as_str())
    );

    let calls = backend.api_calls();
    assert_eq!(calls.count("RegisterTaskDefinition"), 1, "{calls:?}");
    assert_eq!(calls.count("UpdateService"), 1, "{calls:?}");
    assert!(calls.count("DescribeImages") >= 1, "{calls:?}");
}
