//! The platform conformance suite: public async functions that check any [`Deployer`] and
//! [`ImageRegistry`] behave as the engine and the strategies assume. Run them against every
//! implementation (the in-memory platform here, AWS over an emulator in `tapitalee-aws`).
//!
//! Each function panics with a message on the first violation, like a test assertion.
//! Checks only use what any platform can show: desired counts, ids, routing and primacy —
//! not running instances, which an emulator may never start.

use crate::domain::{AppName, DeploymentId, DockerTag, Initiator};
use crate::error::{Error, Resource};
use crate::fleet::{Target, TrafficWeight};
use crate::traits::deployer::{DeployContext, Deployer};
use crate::traits::registry::ImageRegistry;

mod crash;

pub use crash::{Backend, crash_recovery};

/// What the suite deploys: an app with at least one process, and an existing tag.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The app.
    pub app: AppName,
    /// A process of it that already runs a release (has a primary fleet).
    pub process: crate::ProcessName,
    /// Whether that process is load-balanced (routing is checked only then).
    pub load_balanced: bool,
    /// A tag that exists in the app's registry.
    pub tag: DockerTag,
}

impl Fixture {
    fn target(&self) -> Target {
        Target::new(self.app.clone(), self.process.clone())
    }
}

/// A context for a fresh deployment of the fixture's process (stable fleet not yet known).
fn ctx(target: Target) -> DeployContext {
    DeployContext::new(
        DeploymentId::new(),
        Initiator::new("conformance").expect("initiator"),
        target,
    )
}

/// Runs every check.
pub async fn run_all(deployer: &dyn Deployer, registry: &dyn ImageRegistry, fx: &Fixture) {
    registry_resolves_and_refuses(registry, fx).await;
    processes_and_releases(deployer, fx).await;
    fleet_lifecycle(deployer, registry, fx).await;
    primary_switch(deployer, registry, fx).await;
    if fx.load_balanced {
        routing(deployer, registry, fx).await;
    }
}

/// A tag resolves to a digest; a missing tag is `NotFound(Image)`; list and describe agree.
pub async fn registry_resolves_and_refuses(registry: &dyn ImageRegistry, fx: &Fixture) {
    let image = registry
        .resolve(&fx.app, &fx.tag)
        .await
        .expect("resolve an existing tag");
    let digest = image.digest.clone().expect("a resolved image has a digest");
    assert_eq!(image.tag, fx.tag, "resolve keeps the tag");
    let missing = DockerTag::new("no-such-tag-conformance").expect("tag");
    match registry.resolve(&fx.app, &missing).await {
        Err(Error::NotFound {
            resource: Resource::Image,
            ..
        }) => {}
        other => panic!("resolving a missing tag must be NotFound(Image), got {other:?}"),
    }
    let listed = registry.list(&fx.app).await.expect("list images");
    assert!(
        listed.iter().any(|i| i.digest() == Some(&digest)),
        "list must include the resolved image {digest}"
    );
    let described = registry.describe(&fx.app, &fx.tag).await.expect("describe");
    assert_eq!(
        described.digest(),
        Some(&digest),
        "describe and resolve agree on the digest"
    );
    assert!(described.tags.contains(&fx.tag), "describe lists the tag");
    let creds = registry.login(&fx.app).await.expect("login");
    assert!(
        !creds.password.expose().is_empty(),
        "login returns a password"
    );
    assert!(
        !format!("{creds:?}").contains(creds.password.expose()),
        "credentials' Debug must not show the password"
    );
}

/// The app lists the fixture's process; it has a live release; unknown names are NotFound.
pub async fn processes_and_releases(deployer: &dyn Deployer, fx: &Fixture) {
    let specs = deployer
        .processes(&fx.app)
        .await
        .expect("processes of the app");
    let spec = specs
        .iter()
        .find(|s| s.name == fx.process)
        .unwrap_or_else(|| panic!("app {} must list process {}", fx.app, fx.process));
    assert_eq!(spec.load_balanced, fx.load_balanced, "load-balanced flag");
    let release = deployer
        .current(&ctx(fx.target()))
        .await
        .expect("current release");
    assert!(
        release.fleet.is_some(),
        "the fixture process must have a live fleet"
    );
    let unknown = AppName::new("no-such-app-conformance").expect("app");
    match deployer.processes(&unknown).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("an unknown app must be NotFound, got {other:?}"),
    }
    let ghost = Target::new(
        fx.app.clone(),
        crate::ProcessName::new("ghost").expect("name"),
    );
    match deployer.current(&ctx(ghost)).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("an unknown process must be NotFound, got {other:?}"),
    }
}

/// prepare → launch → scale → status → retire (twice: retiring is idempotent).
pub async fn fleet_lifecycle(deployer: &dyn Deployer, registry: &dyn ImageRegistry, fx: &Fixture) {
    let image = registry.resolve(&fx.app, &fx.tag).await.expect("resolve");
    let target = fx.target();
    let c = ctx(target.clone());
    let revision = deployer.prepare(&c, &image).await.expect("prepare");
    assert_eq!(
        revision.image.digest, image.digest,
        "the revision runs the pinned digest"
    );
    let stable = deployer.current(&c).await.expect("current").fleet;
    let c = c.with_stable(stable);
    let fleet = deployer.launch(&c, &revision, 1).await.expect("launch");
    assert_eq!(fleet.target, target);
    assert_eq!(fleet.revision, revision);
    let status = deployer.status(&c, &fleet).await.expect("status");
    assert_eq!(status.fleet, fleet.id);
    assert_eq!(
        status.desired, 1,
        "a fleet launched with 1 instance wants 1"
    );
    deployer.scale(&c, &fleet, 2).await.expect("scale up");
    assert_eq!(
        deployer.status(&c, &fleet).await.expect("status").desired,
        2
    );
    deployer.scale(&c, &fleet, 0).await.expect("scale to zero");
    assert_eq!(
        deployer.status(&c, &fleet).await.expect("status").desired,
        0
    );
    deployer.retire(&c, &fleet).await.expect("retire");
    deployer
        .retire(&c, &fleet)
        .await
        .expect("retiring a retired fleet succeeds");
    match deployer.status(&c, &fleet).await {
        Err(Error::NotFound { .. }) => {}
        Ok(s) if s.desired == 0 && s.instances.is_empty() => {}
        other => panic!("a retired fleet is gone (NotFound or empty), got {other:?}"),
    }
    let release = deployer.current(&c).await.expect("current");
    assert_ne!(
        release.fleet.as_ref().map(|f| &f.id),
        Some(&fleet.id),
        "the live fleet is untouched"
    );
}

/// A new fleet made primary becomes the current release; switching back restores it.
pub async fn primary_switch(deployer: &dyn Deployer, registry: &dyn ImageRegistry, fx: &Fixture) {
    let c = ctx(fx.target());
    let before = deployer.current(&c).await.expect("current");
    let old = before.fleet.clone().expect("live fleet");
    let c = c.with_stable(Some(old.clone()));
    let image = registry.resolve(&fx.app, &fx.tag).await.expect("resolve");
    let revision = deployer.prepare(&c, &image).await.expect("prepare");
    let fleet = deployer
        .launch(&c, &revision, before.desired)
        .await
        .expect("launch");
    deployer
        .make_primary(&c, &fleet)
        .await
        .expect("make primary");
    let now = deployer.current(&c).await.expect("current");
    assert_eq!(
        now.fleet.as_ref().map(|f| &f.id),
        Some(&fleet.id),
        "the new fleet is live"
    );
    deployer
        .make_primary(&c, &old)
        .await
        .expect("make the old fleet primary again");
    let back = deployer.current(&c).await.expect("current");
    assert_eq!(
        back.fleet.as_ref().map(|f| &f.id),
        Some(&old.id),
        "the old fleet is live again"
    );
    deployer.retire(&c, &fleet).await.expect("retire");
}

/// Traffic moves between two fleets by weight and back.
pub async fn routing(deployer: &dyn Deployer, registry: &dyn ImageRegistry, fx: &Fixture) {
    let c = ctx(fx.target());
    let old = deployer
        .current(&c)
        .await
        .expect("current")
        .fleet
        .expect("live fleet");
    let c = c.with_stable(Some(old.clone()));
    let image = registry.resolve(&fx.app, &fx.tag).await.expect("resolve");
    let revision = deployer.prepare(&c, &image).await.expect("prepare");
    let fleet = deployer.launch(&c, &revision, 1).await.expect("launch");
    let split = |new: u8| {
        vec![
            TrafficWeight {
                fleet: fleet.id.clone(),
                percent: new,
            },
            TrafficWeight {
                fleet: old.id.clone(),
                percent: 100 - new,
            },
        ]
    };
    for w in [10, 50, 100, 0] {
        deployer
            .route(&c, &split(w))
            .await
            .unwrap_or_else(|e| panic!("route {w}%: {e}"));
    }
    deployer
        .retire(&c, &fleet)
        .await
        .expect("retire after routing back");
}
