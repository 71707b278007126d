//! The ECS deployer (task sets, listener weights, ECS-controller updates) and logs, against
//! moto.

mod support;

use std::time::Duration;

use aws_sdk_ecs::types::DeploymentStrategy;
use tapitalee_aws::{AwsBackend, EcsStrategy, LogQuery};
use tapitalee_core::{
    DeployContext, Deployer, DeploymentId, DockerTag, Error, ImageRegistry, Initiator, ProcessName,
    Resource, RolloutControl, Target, TrafficWeight,
};

async fn listener_weights(f: &support::Fixture) -> Vec<(String, i32)> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&support::sdk().await);
    let out = elb
        .describe_listeners()
        .listener_arns(f.s("listener"))
        .send()
        .await
        .unwrap();
    out.listeners()[0].default_actions()[0]
        .forward_config()
        .expect("a forward config")
        .target_groups()
        .iter()
        .map(|t| {
            (
                t.target_group_arn().unwrap().to_owned(),
                t.weight().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn task_sets_traffic_and_primary() {
    let f = support::fixture("ecs1");
    let backend = support::backend(&f).await;
    let deployer = backend.deployer();
    let app = f.app();
    let deployment = DeploymentId::new();
    let web = DeployContext::new(
        deployment,
        Initiator::new("ci [bot]").unwrap(),
        Target::new(app.clone(), ProcessName::new("default").unwrap()),
    );

    // Processes come from the configuration plus DescribeServices.
    let specs = deployer.processes(&app).await.unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].name.as_str(), "default");
    assert!(specs[0].load_balanced);
    assert_eq!(specs[0].desired, 4);
    assert!(
        !specs[1].load_balanced,
        "ECS-controller worker cannot split traffic"
    );
    assert_eq!(specs[1].desired, 2);

    // The live release is the primary task set.
    let current = deployer.current(&web).await.unwrap();
    let stable = current.fleet.clone().expect("a live task set");
    assert_eq!(stable.id.0, f.s("live_task_set"));
    assert_eq!(stable.revision.id, f.s("web_task_definition"));
    assert_eq!(current.desired, 4);

    // Prepare: a copy of the live task definition with only the image changed, by digest.
    let image = backend
        .registry()
        .resolve(&app, &DockerTag::new("v2").unwrap())
        .await
        .unwrap();
    let revision = deployer.prepare(&web, &image).await.unwrap();
    assert_ne!(revision.id, stable.revision.id);
    let ecs = aws_sdk_ecs::Client::new(&support::sdk().await);
    let td = ecs
        .describe_task_definition()
        .task_definition(&revision.id)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let def = td.task_definition().unwrap();
    assert_eq!(
        def.container_definitions()[0].image(),
        Some(image.pinned().as_str())
    );
    assert_eq!(def.cpu(), Some("256"));
    let tags: Vec<(String, String)> = td
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert!(
        tags.contains(&("tapitalee:deployment".into(), deployment.to_string())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("tapitalee:initiator".into(), "ci _bot_".into())),
        "{tags:?}"
    );
    assert!(tags.contains(&("team".into(), "web".into())), "{tags:?}");

    // An unresolved image is refused before anything is registered.
    let mut unresolved = image.clone();
    unresolved.digest = None;
    let e = deployer.prepare(&web, &unresolved).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");

    // Launch a task set of 1 (25% of 4) on the green target group.
    let candidate = deployer.launch(&web, &revision, 1).await.unwrap();
    assert_ne!(candidate.id, stable.id);
    let svc = ecs
        .describe_services()
        .cluster(f.s("cluster"))
        .services(f.s("web_service"))
        .send()
        .await
        .unwrap();
    let sets = svc.services()[0].task_sets();
    assert_eq!(sets.len(), 2);
    let new = sets
        .iter()
        .find(|t| t.task_set_arn() == Some(candidate.id.0.as_str()))
        .unwrap();
    assert_eq!(new.scale().unwrap().value(), 25.0);
    assert_eq!(
        new.load_balancers()[0].target_group_arn(),
        Some(f.list("target_groups")[1].as_str())
    );
    assert_eq!(new.external_id(), Some(deployment.to_string().as_str()));

    // More than the service's desired count cannot be a percent of it.
    let e = deployer.scale(&web, &candidate, 5).await.unwrap_err();
    assert!(e.to_string().contains("at most 4"), "{e}");
    deployer.scale(&web, &candidate, 2).await.unwrap();

    // Traffic: 90/10, then all to the new fleet.
    deployer
        .route(
            &web,
            &[
                TrafficWeight {
                    fleet: candidate.id.clone(),
                    percent: 10,
                },
                TrafficWeight {
                    fleet: stable.id.clone(),
                    percent: 90,
                },
            ],
        )
        .await
        .unwrap();
    let tgs = f.list("target_groups");
    assert_eq!(
        listener_weights(&f).await,
        vec![(tgs[0].clone(), 90), (tgs[1].clone(), 10)]
    );
    deployer
        .route(
            &web,
            &[TrafficWeight {
                fleet: candidate.id.clone(),
                percent: 100,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        listener_weights(&f).await,
        vec![(tgs[0].clone(), 0), (tgs[1].clone(), 100)]
    );

    // Primary, then the old fleet retired (twice: already gone is fine).
    deployer.make_primary(&web, &candidate).await.unwrap();
    let now = deployer.current(&web).await.unwrap();
    assert_eq!(now.fleet.unwrap().id, candidate.id);
    // (Fleet status is tested with scripted responses: moto's DescribeTasks answer does not
    // parse — it sends container cpu as a number.)
    deployer.retire(&web, &stable).await.unwrap();
    deployer.retire(&web, &stable).await.unwrap();
    let e = deployer.status(&web, &stable).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotFound {
                resource: Resource::Fleet,
                ..
            }
        ),
        "{e}"
    );

    // Calls made for the deployment are attributed to it.
    let calls = backend.api_calls();
    let mine = calls.for_deployment(&deployment);
    assert_eq!(mine.get("RegisterTaskDefinition"), Some(&1), "{mine:?}");
    assert_eq!(mine.get("CreateTaskSet"), Some(&1), "{mine:?}");
    // One to put the idle group in the forward action before the launch, one per route.
    assert_eq!(mine.get("ModifyListener"), Some(&3), "{mine:?}");
    assert_eq!(mine.get("DescribeListeners"), Some(&3), "{mine:?}");
    assert_eq!(mine.get("DeleteTaskSet"), Some(&2), "{mine:?}");
    assert!(calls.count("DescribeServices") >= 1);
}

#[tokio::test]
async fn ecs_controller_service_updates_in_place() {
    let f = support::fixture("ecs2");
    let backend = support::backend(&f).await;
    let deployer = backend.deployer();
    let app = f.app();
    let worker = DeployContext::new(
        DeploymentId::new(),
        Initiator::unknown(),
        Target::new(app.clone(), ProcessName::new("worker").unwrap()),
    );

    let current = deployer.current(&worker).await.unwrap();
    let stable = current.fleet.expect("the service's task definition");
    assert_eq!(stable.revision.id, f.s("worker_task_definition"));

    let image = backend
        .registry()
        .resolve(&app, &DockerTag::new("v2").unwrap())
        .await
        .unwrap();
    let revision = deployer.prepare(&worker, &image).await.unwrap();
    let fleet = deployer.launch(&worker, &revision, 2).await.unwrap();
    assert_eq!(fleet.id.0, revision.id);

    let ecs = aws_sdk_ecs::Client::new(&support::sdk().await);
    let svc = ecs
        .describe_services()
        .cluster(f.s("cluster"))
        .services(f.s("worker_service"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        svc.services()[0].task_definition(),
        Some(revision.id.as_str())
    );

    // ECS shifts its own traffic: a weight is refused with the reason.
    let e = deployer
        .route(
            &worker,
            &[TrafficWeight {
                fleet: fleet.id.clone(),
                percent: 100,
            }],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("EXTERNAL controller"), "{e}");

    // Scaling the old revision down is ECS's business: no call.
    let before = backend.api_calls();
    deployer.scale(&worker, &stable, 0).await.unwrap();
    let delta = backend.api_calls().since(&before);
    assert!(!delta.contains_key("UpdateService"), "{delta:?}");
}

#[tokio::test]
async fn ecs_controller_launch_sets_the_native_strategy() {
    let f = support::fixture("ecs5");
    let mut app = support::app(&f);
    app.processes[1].ecs_strategy = Some(EcsStrategy::Canary {
        canary_percent: 12.5,
        canary_bake_time: Duration::from_secs(10 * 60),
        bake_time: Duration::from_secs(2 * 60),
    });
    let backend = AwsBackend::connect(support::config_of(app)).await.unwrap();
    let deployer = backend.deployer();
    let worker = DeployContext::new(
        DeploymentId::new(),
        Initiator::unknown(),
        Target::new(f.app(), ProcessName::new("worker").unwrap()),
    );
    let specs = deployer.processes(&f.app()).await.unwrap();
    let spec = specs.iter().find(|s| s.name.as_str() == "worker").unwrap();
    assert!(
        matches!(spec.rollout, RolloutControl::Platform { .. }),
        "an ECS-controller service runs its own rollout: {:?}",
        spec.rollout
    );
    let image = backend
        .registry()
        .resolve(&f.app(), &DockerTag::new("v2").unwrap())
        .await
        .unwrap();
    let revision = deployer.prepare(&worker, &image).await.unwrap();
    deployer.launch(&worker, &revision, 2).await.unwrap();

    let ecs = aws_sdk_ecs::Client::new(&support::sdk().await);
    let svc = ecs
        .describe_services()
        .cluster(f.s("cluster"))
        .services(f.s("worker_service"))
        .send()
        .await
        .unwrap();
    let s = &svc.services()[0];
    assert_eq!(s.task_definition(), Some(revision.id.as_str()));
    let c = s
        .deployment_configuration()
        .expect("UpdateService set a deployment configuration");
    assert_eq!(c.strategy(), Some(&DeploymentStrategy::Canary));
    let canary = c.canary_configuration().expect("a canary configuration");
    assert_eq!(canary.canary_percent(), Some(12.5));
    assert_eq!(canary.canary_bake_time_in_minutes(), Some(10));
    assert_eq!(c.bake_time_in_minutes(), Some(2));

    // The web process is on the EXTERNAL controller: the engine runs its rollout.
    let web = specs.iter().find(|s| s.name.as_str() == "default").unwrap();
    assert_eq!(web.rollout, RolloutControl::Engine);
}

#[tokio::test]
async fn unknown_names_fail_with_the_fix() {
    let f = support::fixture("ecs3");
    let backend = support::backend(&f).await;
    let deployer = backend.deployer();
    let e = deployer
        .current(&DeployContext::new(
            DeploymentId::new(),
            Initiator::unknown(),
            Target::new(f.app(), ProcessName::new("wrker").unwrap()),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "process \"wrker\" not found (app ecs3 has: default, worker)"
    );
}

#[tokio::test]
async fn logs_of_a_process() {
    let f = support::fixture("logs1");
    let backend = support::backend(&f).await;
    let web = Target::new(f.app(), ProcessName::new("default").unwrap());
    let all = backend
        .logs()
        .fetch(&web, &LogQuery::default())
        .await
        .unwrap();
    let messages: Vec<&str> = all.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "INFO booting",
            "ERROR database unreachable",
            "INFO listening on 8080"
        ]
    );
    assert!(all[0].stream.starts_with("logs1-web/app/"));
    let errors = backend
        .logs()
        .fetch(
            &web,
            &LogQuery {
                filter: Some("ERROR".into()),
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let limited = backend
        .logs()
        .fetch(
            &web,
            &LogQuery {
                limit: 2,
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
}
