//! A user-written strategy plugged into the engine: "one at a time with a smoke test".
//!
//! The new fleet grows one instance at a time; each instance must pass the health gate, and
//! after the first one a smoke test (any [`Analysis`]) must pass before the rest follow. The
//! old fleet shrinks as the new one grows, so capacity never drops. Rollback is the rollout's
//! default (old capacity first, then traffic, then retire the new fleet), so the strategy
//! does not implement it.
//!
//! It runs on core's in-memory platform on a paused clock: a healthy release succeeds, a
//! release that fails its smoke test rolls back after one instance.
//!
//! ```text
//! cargo run --example custom_strategy
//! ```
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tapitalee::strategies::{AnalysisSpec, Verdict};
use tapitalee::testkit::{Behavior, InMemoryPlatform};
use tapitalee::*;

/// One instance at a time; a smoke test on the first.
#[derive(Debug)]
struct OneAtATime {
    smoke_test: AnalysisSpec,
}

#[async_trait]
impl Strategy for OneAtATime {
    fn name(&self) -> &str {
        "one-at-a-time"
    }

    async fn run(&self, rollout: &mut Rollout) -> Result<()> {
        let desired = rollout.desired();
        let old = rollout.state().stable_count;
        for n in 1..=desired {
            // A step: recorded, and where pause()/abort() from the handle take effect.
            rollout.step(format!("new instance {n}/{desired}")).await?;
            rollout.launch(n).await?; // launches the new fleet, or grows it
            rollout.wait_candidate_healthy(n).await?; // fails fast on crash loops
            if n == 1 {
                match self.smoke_test.run(rollout).await? {
                    Verdict::Passed | Verdict::Skipped => {}
                    other => {
                        // Any error makes the engine roll back from exactly here.
                        return Err(Error::HealthFailed {
                            process: rollout.target().process.to_string(),
                            reason: format!("smoke test {other}"),
                        });
                    }
                }
            }
            if rollout.load_balanced() && rollout.stable().is_some() {
                let share = n * 100 / (n + old.saturating_sub(n)).max(1);
                rollout
                    .route(u8::try_from(share.min(100)).unwrap_or(100))
                    .await?;
            }
            rollout.scale_stable(old.saturating_sub(n)).await?;
        }
        if rollout.load_balanced() {
            rollout.route(100).await?;
        }
        // Done: new fleet at the desired size, all traffic, primary. The engine retires the
        // old fleet in `finalize`.
        rollout.make_primary().await
    }
}

/// The smoke test: here, a stand-in that passes unless the image is tagged "broken".
#[derive(Debug)]
struct SmokeTest;

#[async_trait]
impl Analysis for SmokeTest {
    fn name(&self) -> &str {
        "smoke-test"
    }

    async fn measure(&self, target: &AnalysisTarget) -> Result<Measurement> {
        let tag = target.candidate.revision.image.tag.as_str();
        Ok(if tag.contains("broken") {
            Measurement::Fail {
                detail: "GET /health returned 500".into(),
            }
        } else {
            Measurement::Pass {
                detail: "GET /health returned 200".into(),
            }
        })
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<()> {
    let platform = InMemoryPlatform::new();
    let app = platform.add_app("shop", &[("default", 3, true), ("worker", 2, false)]);
    platform.push_image(&app, "v1", Behavior::healthy());
    platform.seed_release(&app, "v1");
    platform.push_image(&app, "v2", Behavior::healthy());
    platform.push_image(&app, "v3-broken", Behavior::healthy());

    let strategy: DynStrategy = Arc::new(OneAtATime {
        smoke_test: AnalysisSpec::new(Arc::new(SmokeTest))
            .count(2)
            .interval(Duration::from_secs(5)),
    });
    let engine = Engine::builder()
        .deployer(Arc::new(platform.clone()))
        .registry(Arc::new(platform.clone()))
        .default_strategy(strategy)
        .build()?;

    for tag in ["v2", "v3-broken"] {
        let handle = engine
            .deploy(&app, DeployRequest::new().docker_tag(tag.parse()?))
            .await?;
        let record = handle.wait().await?;
        println!("deploy {tag}: {}", record.status);
        for p in &record.processes {
            let live = platform.live_tag(&app, p.process.as_str());
            let live = live.as_ref().map_or("-", |t| t.as_str());
            println!("  {:<9} {} (live: {live})", p.process, p.status);
        }
    }
    let history = engine.latest(&app).await?.expect("a deployment");
    println!("steps of the last deployment:");
    for p in &history.processes {
        for s in &p.steps {
            println!("  {:<9} {}", p.process, s.message);
        }
    }
    Ok(())
}
