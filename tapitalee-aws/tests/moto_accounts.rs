//! Other accounts, against moto: a central ECR registry named by its account id, and an IAM
//! role assumed for every call.

mod support;

use tapitalee_aws::{AppConfig, AssumeRole, AwsBackend, AwsConfig};
use tapitalee_core::{DockerTag, Error, ImageRegistry};

/// The fixture's configuration, rebuilt with `role` and the app's registry named.
fn configured(f: &support::Fixture, role: Option<AssumeRole>, registry: Option<&str>) -> AwsConfig {
    let mut app = support::app(f);
    if let Some(id) = registry {
        app = app.registry_id(id);
    }
    let base = support::config_of(app.clone());
    let mut b = AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(base.endpoint_url().unwrap())
        .credentials(tapitalee_aws::StaticCredentials::new(
            "testing",
            tapitalee_core::Secret::new("testing"),
        ))
        .app(app);
    if let Some(role) = role {
        b = b.assume_role(role);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn every_call_is_made_as_the_assumed_role() {
    let f = support::fixture("acct1");
    let plain = AwsBackend::connect(configured(&f, None, None))
        .await
        .unwrap();
    let me = plain.caller_identity().await.unwrap();
    assert!(!me.contains("assumed-role"), "{me}");

    let role = AssumeRole::new("arn:aws:iam::123456789012:role/deployer").session_name("ci-run-42");
    let backend = AwsBackend::connect(configured(&f, Some(role), None))
        .await
        .unwrap();
    let who = backend.caller_identity().await.unwrap();
    assert!(
        who.ends_with(":assumed-role/deployer/ci-run-42"),
        "calls are made as the role: {who}"
    );
    // The backend's own calls work with the role's credentials.
    let image = backend
        .registry()
        .resolve(&f.app(), &DockerTag::new("v1").unwrap())
        .await
        .unwrap();
    assert!(image.digest.is_some());
}

#[tokio::test]
async fn a_registry_named_by_its_account_serves_the_images() {
    let f = support::fixture("acct2");
    // moto's account is 123456789012: the "central" registry here is that one, named.
    let backend = AwsBackend::connect(configured(&f, None, Some("123456789012")))
        .await
        .unwrap();
    let registry = backend.registry();
    let app = f.app();
    let v1 = registry
        .resolve(&app, &DockerTag::new("v1").unwrap())
        .await
        .unwrap();
    assert_eq!(v1.repository, f.s("repository_uri"));
    assert_eq!(registry.list(&app).await.unwrap().len(), 2);
    let creds = registry.login(&app).await.unwrap();
    // Logged in at the repository's registry host.
    let host = f.s("repository_uri");
    let host = host.split('/').next().unwrap();
    assert_eq!(creds.endpoint, format!("https://{host}"));
}

#[test]
fn bad_accounts_and_roles_are_refused_with_the_fix() {
    let app = AppConfig::new(tapitalee_core::AppName::new("shop").unwrap(), "shop").process(
        tapitalee_aws::ProcessConfig::new(
            tapitalee_core::ProcessName::new("worker").unwrap(),
            "c",
            "s",
        ),
    );
    let err = AwsConfig::builder()
        .app(app.clone().registry_id("12345"))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { value, .. } if value == "12345"),
        "{err:?}"
    );
    assert!(err.to_string().contains("12 digits"), "{err}");

    for (arn, session) in [
        ("arn:aws:iam::123456789012:user/deployer", "tapitalee"),
        ("deployer", "tapitalee"),
        ("arn:aws:iam::1234:role/deployer", "tapitalee"),
        ("arn:aws:iam::123456789012:role/deployer", "has space"),
        ("arn:aws:iam::123456789012:role/deployer", "x"),
    ] {
        let err = AwsConfig::builder()
            .app(app.clone())
            .assume_role(AssumeRole::new(arn).session_name(session))
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(arn) || text.contains(session),
            "the bad value is named: {text}"
        );
        assert!(
            text.contains("e.g. arn:aws:iam::") || text.contains("2 to 64"),
            "the fix is named: {text}"
        );
    }
}
