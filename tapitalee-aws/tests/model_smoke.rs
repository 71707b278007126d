//! First contact with the ECS model: a good release on each controller.

mod support;

use std::sync::Arc;

use support::model::{self, Ctl, Svc};
use tapitalee_aws::AwsBackend;
use tapitalee_core::{DeployRequest, DockerTag, Engine, Initiator, MemoryStore, ProcessStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_release_on_both_controllers() {
    let env = model::start(
        "smk",
        &[
            Svc {
                app: "web".into(),
                controller: Ctl::External,
                desired: 2,
            },
            Svc {
                app: "wrk".into(),
                controller: Ctl::Ecs,
                desired: 2,
            },
        ],
    )
    .await;
    let backend = AwsBackend::connect(env.config(vec![env.app("web", None), env.app("wrk", None)]))
        .await
        .unwrap();
    let engine = Engine::builder()
        .deployer(Arc::new(backend.deployer()))
        .registry(Arc::new(backend.registry()))
        .store(Arc::new(MemoryStore::new()))
        .default_strategy(Arc::new(tapitalee_strategies::Rolling::new()))
        .health_gate(env.gate())
        .build()
        .unwrap();
    for app in ["web", "wrk"] {
        let handle = engine
            .deploy(
                &env.app_name(app),
                DeployRequest::new()
                    .docker_tag(DockerTag::new("good").unwrap())
                    .initiator(Initiator::new("test").unwrap()),
            )
            .await
            .unwrap();
        let record = handle.wait().await.unwrap();
        assert_eq!(
            record.processes[0].status,
            ProcessStatus::Succeeded,
            "{app}: {record:?}"
        );
        let running = env.running(app);
        assert_eq!(running.len(), 2, "{app}: {running:?}");
        assert!(
            running
                .iter()
                .all(|td| *td != env.first_task_definition(app)),
            "{app}: {running:?}"
        );
    }
    // One task set for the web process (beside the fixture's), one UpdateService for the
    // worker, no rollback, and target health read from the model.
    let calls = env.model.calls().calls;
    assert_eq!(calls.get("CreateTaskSet"), Some(&2), "{calls:?}");
    assert_eq!(calls.get("UpdateService"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("StopServiceDeployment"), None, "{calls:?}");
    assert!(
        calls.get("DescribeTargetHealth").is_some_and(|n| *n > 0),
        "{calls:?}"
    );
}
