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

/// An image pushed without a tag (ECR keeps it; `docker images` would show `<none>`) is listed
/// with no tags and is never labelled `latest`; the tagged images keep theirs.
#[tokio::test]
async fn an_untagged_image_is_listed_without_a_tag() {
    let f = support::fixture("ecr3");
    let backend = support::backend(&f).await;
    let registry = backend.registry();
    let app = f.app();
    let ecr = aws_sdk_ecr::Client::new(&support::sdk().await);
    let repo = f.s("repository_uri");
    let name = repo.rsplit('/').next().unwrap().to_owned();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": 1234, "digest": format!("sha256:{}", "c".repeat(64))},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 4321, "digest": format!("sha256:{}", "d".repeat(64))}],
    })
    .to_string();
    let pushed = ecr
        .put_image()
        .repository_name(&name)
        .image_manifest(&manifest)
        .send()
        .await
        .expect("PutImage without an imageTag");
    let digest = pushed
        .image()
        .and_then(|i| i.image_id())
        .and_then(|i| i.image_digest())
        .expect("the pushed image's digest")
        .to_owned();

    let images = registry.list(&app).await.unwrap();
    assert_eq!(images.len(), 3, "{images:?}");
    let untagged = images
        .iter()
        .find(|i| i.digest().map(|d| d.as_str()) == Some(digest.as_str()))
        .unwrap_or_else(|| panic!("the untagged image {digest} is listed: {images:?}"));
    assert!(untagged.is_untagged(), "{untagged:?}");
    assert!(untagged.tags.is_empty());
    assert_eq!(untagged.repository, repo);
    let e = untagged
        .reference(&DockerTag::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no tag") && e.contains("tag it first"),
        "{e}"
    );
    // The tagged ones are as pushed: `latest` is v2's, not the untagged image's.
    let latest = registry.resolve(&app, &DockerTag::default()).await.unwrap();
    assert_ne!(
        latest.digest.as_ref().map(|d| d.as_str()),
        Some(digest.as_str())
    );
    let tagged: Vec<_> = images.iter().filter(|i| !i.is_untagged()).collect();
    assert_eq!(tagged.len(), 2, "{images:?}");
}
