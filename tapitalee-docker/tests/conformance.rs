//! The core conformance suite and crash-recovery case, against a real Docker engine.

mod common;

use std::sync::Arc;

use common::*;
use tapitalee_core::testkit::conformance::{self, Fixture};
use tapitalee_core::{DockerTag, ProcessName};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_conformance_suite() {
    if !engine_or_skip("platform_conformance_suite") {
        return;
    }
    let app = TestApp::new("conf");
    demo_image(&app.repository, "v1", &[]);
    let backend = backend(&app, demo_config(&app, 1, 1));
    seed(&backend, &app.name, "v1").await;
    for (process, lb) in [
        (ProcessName::default_process(), true),
        (ProcessName::new("worker").unwrap(), false),
    ] {
        let fx = Fixture {
            app: app.name.clone(),
            process,
            load_balanced: lb,
            tag: DockerTag::new("v1").unwrap(),
        };
        conformance::run_all(&backend, &backend, &fx).await;
    }
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_on_docker() {
    if !engine_or_skip("crash_recovery_on_docker") {
        return;
    }
    let app = TestApp::new("crash");
    demo_image(&app.repository, "v1", &[]);
    demo_image(&app.repository, "v2", &[]);
    // Two instances behind the proxy: every fleet the crash cases launch, find and retire
    // has more than one container.
    let config = demo_config(&app, 2, 0);
    let backend = backend(&app, config.clone());
    seed(&backend, &app.name, "v1").await;
    let fx = Fixture {
        app: app.name.clone(),
        process: ProcessName::default_process(),
        load_balanced: true,
        tag: DockerTag::new("v2").unwrap(),
    };
    let store: tapitalee_core::DynDeploymentStore = Arc::new(tapitalee_core::MemoryStore::new());
    conformance::crash_recovery(&fresh(config, &app), store, &fx).await;
}
