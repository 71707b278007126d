//! Other accounts, against moto: a central ECR registry named by its account id, an IAM role
//! assumed for every call, and a role per app (apps in two accounts in one backend).

mod support;

use tapitalee_aws::{AppConfig, AssumeRole, AwsBackend, AwsConfig};
use tapitalee_core::{Deployer, DockerTag, Error, ImageRegistry};

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

/// In the account of `role_arn` (moto keeps an assumed role's calls in the role's account):
/// an ECR repository `repo` with one image tagged `tag`, and a cluster `cluster` with an
/// idle ECS service `service`.
async fn in_account_of(
    role_arn: &str,
    repo: &str,
    tag: &str,
    cluster: &str,
    service: &str,
    desired: i32,
) {
    let base = support::sdk().await;
    let c = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("fixture")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let sdk = base
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    c.access_key_id,
                    c.secret_access_key,
                    Some(c.session_token),
                    None,
                    "fixture",
                ),
            ),
        )
        .build();
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    ecr.create_repository()
        .repository_name(repo)
        .send()
        .await
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 100,
                        "digest": "sha256:{}"}},
            "layers": []}}"#,
        tag.len().to_string().repeat(64)
    );
    ecr.put_image()
        .repository_name(repo)
        .image_manifest(manifest)
        .image_tag(tag)
        .send()
        .await
        .unwrap();
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    ecs.create_cluster()
        .cluster_name(cluster)
        .send()
        .await
        .unwrap();
    let td = ecs
        .register_task_definition()
        .family(service)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image(format!("{repo}:{tag}"))
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster(cluster)
        .service_name(service)
        .task_definition(
            td.task_definition
                .and_then(|t| t.task_definition_arn)
                .unwrap(),
        )
        .desired_count(desired)
        .send()
        .await
        .unwrap();
}

/// moto's record of the roles assumed so far: (role ARN, session name, secret access key,
/// session token), from its `/moto-api/data.json`.
fn assumed_roles() -> Vec<(String, String, String, String)> {
    let url = format!("{}/moto-api/data.json", support::moto().endpoint);
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    data["sts"]["AssumedRole"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (
                s("role_arn"),
                s("session_name"),
                s("secret_access_key"),
                s("session_token"),
            )
        })
        .collect()
}

/// Two apps on two roles (in two accounts) in one backend, and a third on the backend's own
/// credentials: each app's ECS and ECR calls are made as its role, each role is assumed once
/// however many calls use it, and no credential reaches an error or the Debug output.
#[tokio::test]
async fn each_app_calls_as_its_own_role() {
    const ALPHA_ROLE: &str = "arn:aws:iam::111111111111:role/deploy-alpha";
    const BETA_ROLE: &str = "arn:aws:iam::222222222222:role/deploy-beta";
    // The same repository and cluster names in both accounts, different contents.
    in_account_of(ALPHA_ROLE, "roles-repo", "a1", "roles-c", "alpha-web", 1).await;
    in_account_of(BETA_ROLE, "roles-repo", "b1", "roles-c", "beta-api", 3).await;

    let app = |name: &str, service: &str| {
        AppConfig::new(tapitalee_core::AppName::new(name).unwrap(), "roles-repo").process(
            tapitalee_aws::ProcessConfig::new(
                tapitalee_core::ProcessName::new("web").unwrap(),
                "roles-c",
                service,
            ),
        )
    };
    let alpha = app("alpha", "alpha-web")
        .assume_role(AssumeRole::new(ALPHA_ROLE).session_name("roles-alpha"));
    let beta =
        app("beta", "beta-api").assume_role(AssumeRole::new(BETA_ROLE).session_name("roles-beta"));
    // On the backend's own credentials (moto's default account), where neither exists.
    let gamma = app("gamma", "alpha-web");
    let base_secret = "base-secret-never-printed";
    let config = AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(&support::moto().endpoint)
        .credentials(tapitalee_aws::StaticCredentials::new(
            "testing",
            tapitalee_core::Secret::new(base_secret),
        ))
        .app(alpha)
        .app(beta)
        .app(gamma)
        .build()
        .unwrap();
    let backend = AwsBackend::connect(config).await.unwrap();
    let name = |n: &str| tapitalee_core::AppName::new(n).unwrap();

    // Who each app is.
    let who = backend.caller_identity_of(&name("alpha")).await.unwrap();
    assert_eq!(
        who,
        "arn:aws:sts::111111111111:assumed-role/deploy-alpha/roles-alpha"
    );
    let who = backend.caller_identity_of(&name("beta")).await.unwrap();
    assert_eq!(
        who,
        "arn:aws:sts::222222222222:assumed-role/deploy-beta/roles-beta"
    );
    let who = backend.caller_identity_of(&name("gamma")).await.unwrap();
    assert!(!who.contains("assumed-role"), "{who}");
    assert_eq!(backend.caller_identity().await.unwrap(), who);

    // ECR: each app sees its own account's repository.
    let registry = backend.registry();
    let a1 = registry
        .resolve(&name("alpha"), &DockerTag::new("a1").unwrap())
        .await
        .unwrap();
    assert!(a1.repository.starts_with("111111111111.dkr.ecr."), "{a1}");
    let b1 = registry
        .resolve(&name("beta"), &DockerTag::new("b1").unwrap())
        .await
        .unwrap();
    assert!(b1.repository.starts_with("222222222222.dkr.ecr."), "{b1}");
    let missing = registry
        .resolve(&name("alpha"), &DockerTag::new("b1").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");

    // ECS: each app's services are described in its own account (one poller per role).
    let deployer = backend.deployer();
    let specs = deployer.processes(&name("alpha")).await.unwrap();
    assert_eq!(specs[0].desired, 1);
    let specs = deployer.processes(&name("beta")).await.unwrap();
    assert_eq!(specs[0].desired, 3);
    // Not in the backend's own account: no such cluster there.
    let gone = deployer.processes(&name("gamma")).await.unwrap_err();
    assert!(gone.to_string().contains("Cluster not found"), "{gone:?}");

    // Each role was assumed once for all those calls (the clients of a role share its cached
    // credentials).
    let assumed = assumed_roles();
    let sessions = |role: &str, session: &str| {
        assumed
            .iter()
            .filter(|(r, s, _, _)| r == role && s == session)
            .count()
    };
    assert_eq!(sessions(ALPHA_ROLE, "roles-alpha"), 1, "{assumed:?}");
    assert_eq!(sessions(BETA_ROLE, "roles-beta"), 1);

    // No credential in the Debug output or an error.
    let shown = format!(
        "{backend:?}\n{:?}\n{missing}\n{missing:?}\n{gone}\n{gone:?}",
        backend.config()
    );
    assert!(!shown.contains(base_secret), "the base secret key is shown");
    for (role, _, secret, token) in assumed
        .iter()
        .filter(|(_, s, _, _)| s.starts_with("roles-"))
    {
        assert!(!secret.is_empty() && !token.is_empty());
        assert!(
            !shown.contains(secret.as_str()),
            "{role}'s secret key is shown"
        );
        assert!(
            !shown.contains(token.as_str()),
            "{role}'s session token is shown"
        );
    }
}

#[test]
fn a_bad_app_role_is_refused_with_the_fix() {
    let app = AppConfig::new(tapitalee_core::AppName::new("shop").unwrap(), "shop")
        .process(tapitalee_aws::ProcessConfig::new(
            tapitalee_core::ProcessName::new("worker").unwrap(),
            "c",
            "s",
        ))
        .assume_role(AssumeRole::new("arn:aws:iam::123456789012:user/deployer"));
    let err = AwsConfig::builder().app(app).build().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, Error::InvalidInput { value, .. } if value == "arn:aws:iam::123456789012:user/deployer"),
        "{err:?}"
    );
    assert!(text.contains("e.g. arn:aws:iam::"), "{text}");
}
