//! ECR as an ImageRegistry, against moto.

mod support;

use tapitalee_core::{DockerTag, Error, ImageRegistry, Resource};

#[tokio::test]
async fn resolves_lists_describes_and_logs_in() {
    let f = support::fixture("ecr1");
    let backend = support::backend(&f).await;
    let registry = backend.registry();
    let app = f.app();

    let v1 = registry
        .resolve(&app, &DockerTag::new("v1").unwrap())
        .await
        .unwrap();
    assert_eq!(v1.repository, f.s("repository_uri"));
    assert_eq!(v1.tag.as_str(), "v1");
    let digest = v1.digest.clone().expect("resolved to a digest");
    assert!(v1.pinned().ends_with(&format!("@{digest}")));

    let missing = registry
        .resolve(&app, &DockerTag::new("v9").unwrap())
        .await
        .unwrap_err();
    match &missing {
        Error::NotFound {
            resource,
            name,
            hint,
        } => {
            assert_eq!(*resource, Resource::Image);
            assert!(name.ends_with(":v9"), "{name}");
            assert!(hint.contains("push it first"), "{hint}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }

    let images = registry.list(&app).await.unwrap();
    assert_eq!(images.len(), 2, "{images:?}");
    // Newest first: v2 (also tagged latest) was pushed after v1.
    assert!(
        images[0].tags.iter().any(|t| t.as_str() == "v2"),
        "{images:?}"
    );
    assert!(images[0].tags.iter().any(|t| t.as_str() == "latest"));
    assert!(images[0].pushed_at >= images[1].pushed_at);
    assert_ne!(images[0].digest(), images[1].digest());

    let latest = registry
        .describe(&app, &DockerTag::new("latest").unwrap())
        .await
        .unwrap();
    assert_eq!(latest.digest(), images[0].digest());
    assert!(latest.size_bytes.is_some_and(|s| s > 0));
    assert!(latest.pushed_at.is_some());

    let creds = registry.login(&app).await.unwrap();
    assert_eq!(creds.username, "AWS");
    assert!(!creds.password.expose().is_empty());
    assert!(creds.endpoint.starts_with("https://"), "{}", creds.endpoint);
    let shown = format!("{creds:?}");
    assert!(!shown.contains(creds.password.expose()), "{shown}");

    let calls = backend.api_calls();
    assert!(calls.count("DescribeImages") >= 4, "{calls:?}");
    assert_eq!(calls.count("GetAuthorizationToken"), 1);
}

#[tokio::test]
async fn unknown_app_and_repository_are_clear_errors() {
    let f = support::fixture("ecr2");
    let backend = support::backend(&f).await;
    let registry = backend.registry();
    let e = registry
        .resolve(
            &tapitalee_core::AppName::new("nope").unwrap(),
            &DockerTag::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("configured apps: ecr2"), "{e}");
}
