//! Core's conformance suite and its crash-recovery case against the AWS backend on the ECS
//! model, where tasks really start, pass health checks and stop.

mod support;

use std::sync::{Arc, Mutex};

use support::model::{self, Ctl, Env, Svc};
use tapitalee_aws::{AwsBackend, EcsStrategy};
use tapitalee_core::testkit::conformance::{self, Backend, Fixture};
use tapitalee_core::{DockerTag, DynDeploymentStore, MemoryStore};

fn fixture(env: &Env, app: &str) -> Fixture {
    Fixture {
        app: env.app_name(app),
        process: env.process(app),
        load_balanced: env.process(app).as_str() == "default",
        tag: DockerTag::new("good").unwrap(),
    }
}

/// `count` backends connected ahead of time, handed out one per call: every call of the
/// suite's `Backend` gets a fresh one, sharing nothing (no poller, no caches) with the
/// others, as a new `tapit` process would.
async fn fresh_backends(
    env: &Env,
    app: &str,
    strategy: Option<EcsStrategy>,
    count: usize,
) -> Backend {
    let mut pool = Vec::new();
    for _ in 0..count {
        pool.push(
            AwsBackend::connect(env.config(vec![env.app(app, strategy)]))
                .await
                .unwrap(),
        );
    }
    let pool = Arc::new(Mutex::new(pool));
    Arc::new(move || {
        let b = pool
            .lock()
            .unwrap()
            .pop()
            .expect("the test connected too few backends for the suite");
        (Arc::new(b.deployer()) as _, Arc::new(b.registry()) as _)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_on_an_external_service() {
    let env = model::start(
        "cfx",
        &[Svc {
            app: "web".into(),
            controller: Ctl::External,
            desired: 4,
        }],
    )
    .await;
    let backend = AwsBackend::connect(env.config(vec![env.app("web", None)]))
        .await
        .unwrap();
    conformance::run_all(
        &backend.deployer(),
        &backend.registry(),
        &fixture(&env, "web"),
    )
    .await;
}

/// On the ECS controller a fleet is a revision ECS sizes itself: the lifecycle check (which
/// scales fleets) does not apply; the rest does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_on_an_ecs_controller_service() {
    let env = model::start(
        "cfe",
        &[Svc {
            app: "wrk".into(),
            controller: Ctl::Ecs,
            desired: 2,
        }],
    )
    .await;
    let backend = AwsBackend::connect(env.config(vec![env.app("wrk", None)]))
        .await
        .unwrap();
    let fx = fixture(&env, "wrk");
    conformance::registry_resolves_and_refuses(&backend.registry(), &fx).await;
    conformance::processes_and_releases(&backend.deployer(), &fx).await;
    conformance::primary_switch(&backend.deployer(), &backend.registry(), &fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_on_an_external_service() {
    let env = model::start(
        "crx",
        &[Svc {
            app: "web".into(),
            controller: Ctl::External,
            desired: 2,
        }],
    )
    .await;
    let backends = fresh_backends(&env, "web", None, 60).await;
    let store: DynDeploymentStore = Arc::new(MemoryStore::new());
    conformance::crash_recovery(&backends, store, &fixture(&env, "web")).await;
    assert!(
        env.settle("web", std::time::Duration::from_secs(300)).await,
        "{}",
        env.model.describe(&env.cluster(), &env.service("web"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_on_an_ecs_controller_service() {
    let env = model::start(
        "cre",
        &[Svc {
            app: "wrk".into(),
            controller: Ctl::Ecs,
            desired: 2,
        }],
    )
    .await;
    let backends = fresh_backends(&env, "wrk", None, 60).await;
    let store: DynDeploymentStore = Arc::new(MemoryStore::new());
    conformance::crash_recovery(&backends, store, &fixture(&env, "wrk")).await;
    assert!(
        env.settle("wrk", std::time::Duration::from_secs(300)).await,
        "{}",
        env.model.describe(&env.cluster(), &env.service("wrk"))
    );
}
