//! The platform conformance suite against the in-memory platform, directly and behind
//! `Arc<dyn …>`, for a load-balanced process and a worker.

use std::sync::Arc;

use tapitalee::testkit::conformance::{self, Fixture};
use tapitalee::testkit::{Behavior, InMemoryPlatform};
use tapitalee::{Deployer, ImageRegistry};

fn platform() -> (InMemoryPlatform, tapitalee::AppName) {
    let platform = InMemoryPlatform::new();
    let app = platform.add_app("shop", &[("default", 2, true), ("worker", 1, false)]);
    platform.push_image(&app, "v1", Behavior::healthy());
    platform.seed_release(&app, "v1");
    platform.push_image(&app, "v2", Behavior::healthy());
    (platform, app)
}

#[tokio::test(start_paused = true)]
async fn in_memory_platform_conforms() {
    let (platform, app) = platform();
    for (process, load_balanced) in [("default", true), ("worker", false)] {
        let fixture = Fixture {
            app: app.clone(),
            process: process.parse().unwrap(),
            load_balanced,
            tag: "v2".parse().unwrap(),
        };
        conformance::run_all(&platform, &platform, &fixture).await;
    }
}

#[tokio::test(start_paused = true)]
async fn in_memory_platform_conforms_behind_dyn() {
    let (platform, app) = platform();
    let deployer: Arc<dyn Deployer> = Arc::new(platform.clone());
    let registry: Arc<dyn ImageRegistry> = Arc::new(platform);
    let fixture = Fixture {
        app,
        process: "default".parse().unwrap(),
        load_balanced: true,
        tag: "v1".parse().unwrap(),
    };
    conformance::run_all(deployer.as_ref(), registry.as_ref(), &fixture).await;
}

/// The suite must be able to fail: a registry that resolves missing tags is caught.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "resolving a missing tag must be NotFound(Image)")]
async fn the_suite_catches_a_registry_that_invents_images() {
    #[derive(Debug)]
    struct Lenient(InMemoryPlatform);

    #[async_trait::async_trait]
    impl ImageRegistry for Lenient {
        async fn resolve(
            &self,
            app: &tapitalee::AppName,
            _tag: &tapitalee::DockerTag,
        ) -> tapitalee::Result<tapitalee::ImageRef> {
            self.0.resolve(app, &"v1".parse()?).await
        }
        async fn list(
            &self,
            app: &tapitalee::AppName,
        ) -> tapitalee::Result<Vec<tapitalee::ImageInfo>> {
            self.0.list(app).await
        }
        async fn describe(
            &self,
            app: &tapitalee::AppName,
            tag: &tapitalee::DockerTag,
        ) -> tapitalee::Result<tapitalee::ImageInfo> {
            self.0.describe(app, tag).await
        }
        async fn login(
            &self,
            app: &tapitalee::AppName,
        ) -> tapitalee::Result<tapitalee::RegistryCredentials> {
            self.0.login(app).await
        }
    }

    let (platform, app) = platform();
    let fixture = Fixture {
        app,
        process: "worker".parse().unwrap(),
        load_balanced: false,
        tag: "v1".parse().unwrap(),
    };
    conformance::registry_resolves_and_refuses(&Lenient(platform), &fixture).await;
}

/// The crash-recovery case: a deployer killed mid-rollout (its runtime dropped), then a fresh
/// engine and a fresh backend handle on the same store roll back, resume, and report a
/// deployment killed after completing as succeeded. For an engine-run load-balanced process, a
/// worker, and a process whose platform runs the rollout. Real clock: leases must lapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_platform_recovers_from_a_crash() {
    for (process, platform_run) in [("default", false), ("worker", false), ("worker", true)] {
        let (platform, app) = platform();
        if platform_run {
            platform.set_platform_rollout(&app, process, tapitalee::RolloutKind::Rolling);
        }
        let backend: conformance::Backend = Arc::new(move || {
            let p = platform.clone();
            (Arc::new(p.clone()) as _, Arc::new(p) as _)
        });
        let fixture = Fixture {
            app: app.clone(),
            process: process.parse().unwrap(),
            load_balanced: process == "default",
            tag: "v2".parse().unwrap(),
        };
        let store: tapitalee::DynDeploymentStore = Arc::new(tapitalee::MemoryStore::new());
        conformance::crash_recovery(&backend, store, &fixture).await;
    }
}

/// The same on the SQLite store, as `tapit` runs it: the killed deployer's history is in a
/// file a new process opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_platform_recovers_from_a_crash_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (platform, app) = platform();
    let backend: conformance::Backend = Arc::new(move || {
        let p = platform.clone();
        (Arc::new(p.clone()) as _, Arc::new(p) as _)
    });
    let fixture = Fixture {
        app,
        process: "default".parse().unwrap(),
        load_balanced: true,
        tag: "v2".parse().unwrap(),
    };
    let store: tapitalee::DynDeploymentStore =
        Arc::new(tapitalee::SqliteStore::open(dir.path().join("tapit.db")).unwrap());
    conformance::crash_recovery(&backend, store, &fixture).await;
}
