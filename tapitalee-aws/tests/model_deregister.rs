//! `AppConfig::deregister_rolled_back`: the task definition revision a rolled-back deployment
//! registered is deregistered (`INACTIVE`) once its fleet is retired, on both deployment
//! controllers; a successful deployment's revision, the revision rolled back to, and every
//! revision of an app without the option stay `ACTIVE`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::model::{self, Ctl, Svc};
use tapitalee_aws::AwsBackend;
use tapitalee_core::{DeployRequest, DockerTag, Engine, Initiator, MemoryStore, ProcessStatus};
use tapitalee_strategies::Rolling;

struct Case {
    app: &'static str,
    controller: Ctl,
    image: &'static str,
    option: bool,
}

const CASES: [Case; 5] = [
    Case {
        app: "extgood",
        controller: Ctl::External,
        image: "good",
        option: true,
    },
    Case {
        app: "extcrash",
        controller: Ctl::External,
        image: "crash",
        option: true,
    },
    Case {
        app: "ecsgood",
        controller: Ctl::Ecs,
        image: "good",
        option: true,
    },
    Case {
        app: "ecscrash",
        controller: Ctl::Ecs,
        image: "crash",
        option: true,
    },
    Case {
        app: "extcrashoff",
        controller: Ctl::External,
        image: "crash",
        option: false,
    },
];

async fn status_of(ecs: &aws_sdk_ecs::Client, task_definition: &str) -> String {
    ecs.describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .unwrap()
        .task_definition()
        .and_then(|t| t.status())
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_revisions_are_deregistered_when_asked() {
    let services: Vec<Svc> = CASES
        .iter()
        .map(|c| Svc {
            app: c.app.to_owned(),
            controller: c.controller,
            desired: 2,
        })
        .collect();
    let env = model::start("dereg", &services).await;
    let apps = CASES
        .iter()
        .map(|c| env.app(c.app, None).deregister_rolled_back(c.option))
        .collect();
    let backend = AwsBackend::connect(env.config(apps)).await.unwrap();
    let engine = Engine::builder()
        .deployer(Arc::new(backend.deployer()))
        .registry(Arc::new(backend.registry()))
        .store(Arc::new(MemoryStore::new()))
        .default_strategy(Arc::new(Rolling::new()))
        .health_gate(env.gate())
        .concurrency(CASES.len())
        .build()
        .unwrap();
    let runs = CASES.iter().map(|c| {
        let (engine, env) = (&engine, &env);
        async move {
            let handle = engine
                .deploy(
                    &env.app_name(c.app),
                    DeployRequest::new()
                        .docker_tag(DockerTag::new(c.image).unwrap())
                        .initiator(Initiator::new("test").unwrap()),
                )
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(120), handle.wait())
                .await
                .unwrap_or_else(|_| panic!("{}: did not end within 120 s", c.app))
                .unwrap()
        }
    });
    let records = futures::future::join_all(runs).await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(env.model.endpoint())
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    for (c, record) in CASES.iter().zip(&records) {
        let p = &record.processes[0];
        let good = c.image == "good";
        if good {
            assert_eq!(p.status, ProcessStatus::Succeeded, "{}", c.app);
        } else {
            assert!(
                matches!(p.status, ProcessStatus::RolledBack { .. }),
                "{}: {}",
                c.app,
                p.status
            );
        }
        let new = &p.to.as_ref().expect("the new revision").id;
        let want = if c.option && !good {
            "INACTIVE"
        } else {
            "ACTIVE"
        };
        assert_eq!(status_of(&ecs, new).await, want, "{}: {new}", c.app);
        let old = env.first_task_definition(c.app);
        assert_eq!(status_of(&ecs, &old).await, "ACTIVE", "{}: {old}", c.app);
    }
}
