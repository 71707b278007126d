//! Every strategy end to end on the ECS model, on both deployment controllers, with 1, 2, 4
//! and 10 tasks, and a good image and each kind of bad image: crash loop, never healthy, and
//! one that fails a while after it became healthy and took traffic.
//!
//! Each test runs one strategy's 16 cases at once (one app per case, one engine), then
//! checks every outcome and which task definition the service's running tasks use once it
//! settled. Time runs 100 times faster than real time on the model; the engine's timing
//! (health gate, bakes, pauses) is scaled to match.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::model::{self, Ctl, Env, Svc};
use tapitalee_aws::{AwsBackend, EcsStrategy};
use tapitalee_core::{
    DeployRequest, DockerTag, DynStrategy, Engine, Initiator, MemoryStore, ProcessStatus,
};
use tapitalee_strategies::{BlueGreen, Canary, Rolling};

const SIZES: [u32; 4] = [1, 2, 4, 10];
const IMAGES: [&str; 4] = ["good", "crash", "sick", "late"];

/// What a case must end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Succeeded, every running task on the new revision.
    New,
    /// Rolled back, every running task on the old revision.
    Old,
    /// Either of them. Only for a rolling update of a release that fails a while after it
    /// became healthy: a rolling update has no watch after its last batch, so whether the
    /// failure is caught depends on whether it comes before the rollout ends (with 1 task it
    /// never does). Then the process is reported succeeded and the service stays on the new
    /// revision, crash-looping: a known gap (see the README).
    Either,
}

struct Case {
    app: String,
    desired: u32,
    image: &'static str,
}

fn cases(tag: &str) -> Vec<Case> {
    let mut out = Vec::new();
    for desired in SIZES {
        for image in IMAGES {
            out.push(Case {
                app: format!("{tag}{desired}{image}"),
                desired,
                image,
            });
        }
    }
    out
}

/// Runs the cases of one strategy and checks them all; `expect` says what each must end as.
async fn run(
    tag: &str,
    controller: Ctl,
    strategy: impl Fn(&Env) -> DynStrategy,
    ecs_strategy: Option<EcsStrategy>,
    expect: impl Fn(&Case) -> Expect,
) {
    let cases = cases(tag);
    let services: Vec<Svc> = cases
        .iter()
        .map(|c| Svc {
            app: c.app.clone(),
            controller,
            desired: c.desired,
        })
        .collect();
    let env = model::start(tag, &services).await;
    let apps = cases
        .iter()
        .map(|c| env.app(&c.app, ecs_strategy))
        .collect();
    let backend = AwsBackend::connect(env.config(apps)).await.unwrap();
    let engine = Engine::builder()
        .deployer(Arc::new(backend.deployer()))
        .registry(Arc::new(backend.registry()))
        .store(Arc::new(MemoryStore::new()))
        .default_strategy(strategy(&env))
        .health_gate(env.gate())
        .concurrency(cases.len())
        .build()
        .unwrap();
    let runs = cases.iter().map(|c| {
        let engine = &engine;
        let env = &env;
        async move {
            let handle = engine
                .deploy(
                    &env.app_name(&c.app),
                    DeployRequest::new()
                        .docker_tag(DockerTag::new(c.image).unwrap())
                        .initiator(Initiator::new("matrix").unwrap()),
                )
                .await
                .unwrap_or_else(|e| panic!("{}: deploy refused: {e}", c.app));
            let id = handle.id();
            match tokio::time::timeout(Duration::from_secs(120), handle.wait()).await {
                Ok(record) => Ok(record.unwrap()),
                Err(_) => Err(format!(
                    "{}: the deployment did not end within 120 s: {:?}\n{}",
                    c.app,
                    engine.get(&id).await.map(|r| r.processes[0]
                        .steps
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()),
                    env.model.describe(&env.cluster(), &env.service(&c.app))
                )),
            }
        }
    });
    let records = futures::future::join_all(runs).await;
    let mut wrong = Vec::new();
    for (c, record) in cases.iter().zip(&records) {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                wrong.push(e.clone());
                continue;
            }
        };
        let p = &record.processes[0];
        let want = match (expect(c), &p.status) {
            (Expect::Either, ProcessStatus::Succeeded) => Expect::New,
            (Expect::Either, _) => Expect::Old,
            (want, _) => want,
        };
        let status_ok = match want {
            Expect::New => p.status == ProcessStatus::Succeeded,
            Expect::Old | Expect::Either => matches!(p.status, ProcessStatus::RolledBack { .. }),
        };
        let revision = match want {
            Expect::New => p.to.as_ref().map(|r| r.id.clone()).unwrap_or_default(),
            Expect::Old | Expect::Either => env.first_task_definition(&c.app),
        };
        // The live service: once settled, `desired` tasks, all on the expected revision.
        // A release that went live and then fails never settles: its tasks crash and are
        // replaced, on the new revision.
        let crash_looping = want == Expect::New && c.image == "late";
        if !crash_looping && !env.settle(&c.app, Duration::from_secs(600)).await {
            wrong.push(format!(
                "{}: the service never settled ({})\n{}",
                c.app,
                p.status,
                env.model.describe(&env.cluster(), &env.service(&c.app))
            ));
            continue;
        }
        let running = env.running(&c.app);
        let count_ok = if crash_looping {
            running.len() <= c.desired as usize
        } else {
            running.len() == c.desired as usize
        };
        let on_revision = count_ok && running.iter().all(|td| *td == revision);
        if !status_ok || !on_revision {
            wrong.push(format!(
                "{}: expected {want:?}, got {} with {} running tasks on {:?}",
                c.app,
                p.status,
                running.len(),
                running
                    .iter()
                    .map(|t| t.rsplit('/').next().unwrap_or(t))
                    .collect::<std::collections::BTreeSet<_>>()
            ));
            if std::env::var_os("MODEL_DEBUG").is_some() {
                wrong.push(format!(
                    "{:#?}\n{}",
                    p.steps,
                    env.model.describe(&env.cluster(), &env.service(&c.app))
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases went wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Bad images roll back; good ones go live.
fn by_image(c: &Case) -> Expect {
    if c.image == "good" {
        Expect::New
    } else {
        Expect::Old
    }
}

/// [`by_image`], except that a rolling update may miss a release failing after it ended.
fn rolling(c: &Case) -> Expect {
    if c.image == "late" {
        Expect::Either
    } else {
        by_image(c)
    }
}

// ECS's own strategies judge a release during their bake with the deployment circuit
// breaker, which needs max(3, half the tasks) failed tasks: their bakes are long enough (5
// minutes in all) for a release failing 30 s after it became healthy to fail 3 times, so
// that a 1-task service is caught as surely as a 10-task one.

fn bake(env: &Env) -> Duration {
    env.real(Duration::from_secs(120))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_rolling() {
    run(
        "xr",
        Ctl::External,
        |_| Arc::new(Rolling::new()),
        None,
        rolling,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_blue_green() {
    run(
        "xb",
        Ctl::External,
        |env| {
            Arc::new(
                BlueGreen::builder()
                    .bake_time(bake(env))
                    .scale_down_delay(env.real(Duration::from_secs(30)))
                    .build()
                    .unwrap(),
            )
        },
        None,
        by_image,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_canary() {
    run(
        "xc",
        Ctl::External,
        |env| {
            Arc::new(
                Canary::builder()
                    .set_weight(25)
                    .pause(bake(env))
                    .build()
                    .unwrap(),
            )
        },
        None,
        by_image,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_rolling() {
    run(
        "er",
        Ctl::Ecs,
        |_| Arc::new(Rolling::new()),
        Some(EcsStrategy::Rolling),
        rolling,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_blue_green() {
    run(
        "eb",
        Ctl::Ecs,
        |_| Arc::new(Rolling::new()),
        Some(EcsStrategy::BlueGreen {
            bake_time: Duration::from_secs(300),
        }),
        by_image,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_linear() {
    run(
        "el",
        Ctl::Ecs,
        |_| Arc::new(Rolling::new()),
        Some(EcsStrategy::Linear {
            step_percent: 50.0,
            step_bake_time: Duration::from_secs(60),
            bake_time: Duration::from_secs(240),
        }),
        by_image,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_canary() {
    run(
        "ec",
        Ctl::Ecs,
        |_| Arc::new(Rolling::new()),
        Some(EcsStrategy::Canary {
            canary_percent: 10.0,
            canary_bake_time: Duration::from_secs(60),
            bake_time: Duration::from_secs(240),
        }),
        by_image,
    )
    .await;
}
