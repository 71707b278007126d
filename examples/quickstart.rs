//! Tapitalee in two deployments, on the in-memory platform with SQLite history.
//!
//! An app `shop` runs three processes: `default` (the web server, behind a load balancer),
//! `worker` and `scheduler`. The example deploys it twice:
//!
//! 1. `v1.2.3`, a good version: every process rolls to it.
//! 2. `v1.2.4`, a version whose worker crash-loops: the worker rolls back alone while `default`
//!    and `scheduler` stay on the new version — the mixed deployment state of the product
//!    document, spelled out per process.
//!
//! Then it prints the history (`tapit list deploys`) and the latest deployment
//! (`tapit show deploy`), read back from the SQLite file as another `tapit` would.
//!
//! ```text
//! cargo run --example quickstart
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use tapitalee::testkit::{Behavior, InMemoryPlatform};
use tapitalee::*;

const PROCESSES: [&str; 3] = ["default", "worker", "scheduler"];

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::store("creating a temp dir", e))?;
    let history = dir.path().join("history.db");

    // The platform: a web process of 4 instances behind a load balancer, 2 workers, 1
    // scheduler, all running v1.2.2 today. Instances start in 0.4 s.
    let platform = InMemoryPlatform::new();
    let app = platform.add_app(
        "shop",
        &[
            ("default", 4, true),
            ("worker", 2, false),
            ("scheduler", 1, false),
        ],
    );
    let starts = Behavior::healthy().start_delay(Duration::from_millis(400));
    platform.push_image(&app, "v1.2.2", starts.clone());
    platform.seed_release(&app, "v1.2.2");
    platform.push_image(&app, "v1.2.3", starts.clone());
    platform.push_image(&app, "v1.2.4", starts);
    // In v1.2.4 the worker exits 0.5 s after starting, every time.
    platform.set_behavior(
        &app,
        "v1.2.4",
        "worker",
        Behavior::crash_loop(Duration::from_millis(500)).start_delay(Duration::from_millis(400)),
    );

    // Rolling is the default strategy; any process can be given another per request.
    let engine = tapitalee::engine()
        .deployer(Arc::new(platform.clone()))
        .registry(Arc::new(platform.clone()))
        .store(Arc::new(SqliteStore::open(&history)?))
        .health_gate(HealthGate {
            min_healthy_time: Duration::from_secs(1),
            poll_interval: Duration::from_millis(200),
            progress_deadline: Duration::from_secs(30),
            ..HealthGate::default()
        })
        .build()?;

    println!("Tapitalee quickstart: app `{app}` with processes {PROCESSES:?}, on v1.2.2\n");
    deploy(&engine, &app, "v1.2.3").await?;
    let record = deploy(&engine, &app, "v1.2.4").await?;

    println!("\nThe app is now in a mixed deployment state:");
    for p in &record.processes {
        let live = platform
            .live_tag(&app, p.process.as_str())
            .map(|t| t.to_string())
            .unwrap_or_default();
        let note = match &p.status {
            ProcessStatus::Succeeded => "deployed, new version".to_owned(),
            ProcessStatus::RolledBack { reason } => {
                format!("rolled back to the previous version: {reason}")
            }
            other => other.to_string(),
        };
        println!("  {:<10} runs {live:<7} {note}", p.process);
    }
    println!("\nTo line the processes up again, either fix and redeploy the worker:");
    println!("  tapit create deploy process=worker docker_tag=v1.2.5");
    println!("or roll the others back to the worker's version:");
    println!("  tapit create deploy process=default docker_tag=v1.2.3");
    println!("  tapit create deploy process=scheduler docker_tag=v1.2.3");

    // Read the history back from the file, as another `tapit` process would.
    let store = SqliteStore::open(&history)?;
    println!("\n$ tapit list deploys");
    println!(
        "{:<32} {:<10} {:<8} {:<12} {:>8}  processes",
        "id", "status", "tag", "initiator", "took"
    );
    for d in store.list(&app, 10).await? {
        let processes: Vec<String> = d
            .processes
            .iter()
            .map(|p| format!("{}:{}", p.process, short(&p.status)))
            .collect();
        println!(
            "{:<32} {:<10} {:<8} {:<12} {:>8}  {}",
            d.id,
            d.status,
            d.image.tag,
            d.initiator,
            took(d.duration()),
            processes.join(" ")
        );
    }

    println!("\n$ tapit show deploy");
    if let Some(d) = store.latest(&app).await? {
        println!("deployment {} — {}", d.id, d.status);
        println!("  image      {}", d.image);
        println!("  initiator  {}", d.initiator);
        println!(
            "  started    {}",
            humantime::format_rfc3339_seconds(d.created_at)
        );
        println!("  took       {}", took(d.duration()));
        for p in &d.processes {
            println!(
                "  process {} ({}, {}): {}",
                p.process,
                p.strategy,
                took(p.duration()),
                p.status
            );
            for s in &p.steps {
                println!("    {}  {}", clock(s.at), s.message);
            }
        }
    }
    Ok(())
}

/// Deploys `tag` to the whole app, printing events as they happen.
async fn deploy(engine: &Engine, app: &AppName, tag: &str) -> Result<DeploymentRecord> {
    println!("$ tapit create deploy docker_tag={tag} initiator=quickstart --wait");
    let request = DeployRequest::new()
        .docker_tag(tag.parse()?)
        .initiator("quickstart".parse()?);
    let mut handle = engine.deploy(app, request).await?;
    let started = Instant::now();
    let mut events = handle.events();
    let printer = tokio::spawn(async move {
        while let Some(e) = events.next().await {
            let who = e.process.map(|p| p.to_string()).unwrap_or_default();
            println!(
                "  [{:>5.1}s] {who:<10} {}",
                started.elapsed().as_secs_f64(),
                e.kind
            );
        }
    });
    let record = handle.wait().await?;
    // The event stream ends when the deployment's last sender is gone.
    let _ = printer.await;
    println!("=> deployment {} {}\n", record.id, record.status);
    Ok(record)
}

fn short(status: &ProcessStatus) -> &'static str {
    match status {
        ProcessStatus::Succeeded => "ok",
        ProcessStatus::RolledBack { .. } => "rolled-back",
        ProcessStatus::RollbackFailed { .. } => "ROLLBACK-FAILED",
        ProcessStatus::NotStarted { .. } => "not-started",
        ProcessStatus::Interrupted => "interrupted",
        ProcessStatus::Pending | ProcessStatus::Running => "running",
    }
}

fn took(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1}s", d.as_secs_f64()))
        .unwrap_or_else(|| "-".into())
}

fn clock(at: SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(at).to_string();
    s.get(11..23).unwrap_or(&s).to_owned()
}
