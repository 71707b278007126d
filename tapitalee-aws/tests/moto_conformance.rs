//! Core's conformance suite against the AWS backend over moto, where the emulator allows.
//!
//! `fleet_lifecycle` is not run: it reads fleet sizes back through `status`, and moto neither
//! computes task set counts nor answers DescribeTasks in a form the SDK parses (that path is
//! covered by the scripted tests in `src/tests/`).

mod support;

use tapitalee_core::testkit::conformance::{self, Fixture};
use tapitalee_core::{DockerTag, ProcessName};

fn fixture(f: &support::Fixture) -> Fixture {
    Fixture {
        app: f.app(),
        process: ProcessName::new("default").unwrap(),
        load_balanced: true,
        tag: DockerTag::new("v2").unwrap(),
    }
}

#[tokio::test]
async fn registry_conforms() {
    let f = support::fixture("conf1");
    let backend = support::backend(&f).await;
    conformance::registry_resolves_and_refuses(&backend.registry(), &fixture(&f)).await;
}

#[tokio::test]
async fn processes_and_releases_conform() {
    let f = support::fixture("conf2");
    let backend = support::backend(&f).await;
    conformance::processes_and_releases(&backend.deployer(), &fixture(&f)).await;
}

#[tokio::test]
async fn primary_switch_conforms() {
    let f = support::fixture("conf3");
    let backend = support::backend(&f).await;
    conformance::primary_switch(&backend.deployer(), &backend.registry(), &fixture(&f)).await;
}

#[tokio::test]
async fn routing_conforms() {
    let f = support::fixture("conf4");
    let backend = support::backend(&f).await;
    conformance::routing(&backend.deployer(), &backend.registry(), &fixture(&f)).await;
}
