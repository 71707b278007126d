//! A central ECR registry in another account (`AppConfig::registry_id`), scripted: every ECR
//! call names the registry, and login goes to its host, not to the caller's own registry.

use aws_sdk_ecr::Client as Ecr;
use aws_sdk_ecr::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesOutput;
use aws_sdk_ecr::operation::get_authorization_token::GetAuthorizationTokenOutput;
use aws_sdk_ecr::types::{AuthorizationData, ImageDetail, Repository};
use aws_smithy_mocks::{Rule, mock};
use base64::Engine as _;
use tapitalee_core::{AppName, DockerTag, ImageRegistry, ProcessName};

use super::scripted_with_ecr;
use crate::config::{AppConfig, ProcessConfig};

const CENTRAL: &str = "210987654321";
const DIGEST: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn app() -> AppConfig {
    AppConfig::new(AppName::new("shop").unwrap(), "shop")
        .registry_id(CENTRAL)
        .process(ProcessConfig::new(
            ProcessName::new("worker").unwrap(),
            "c",
            "worker",
        ))
}

/// Answers only calls that name the central registry: a call without it matches no rule.
fn central_only() -> Vec<Rule> {
    vec![
        mock!(Ecr::describe_images)
            .match_requests(|r| r.registry_id() == Some(CENTRAL))
            .then_output(|| {
                DescribeImagesOutput::builder()
                    .image_details(
                        ImageDetail::builder()
                            .image_digest(DIGEST)
                            .image_tags("v2")
                            .build(),
                    )
                    .build()
            }),
        mock!(Ecr::describe_repositories)
            .match_requests(|r| r.registry_id() == Some(CENTRAL))
            .then_output(|| {
                DescribeRepositoriesOutput::builder()
                    .repositories(
                        Repository::builder()
                            .repository_name("shop")
                            .repository_uri(format!(
                                "{CENTRAL}.dkr.ecr.us-east-1.amazonaws.com/shop"
                            ))
                            .build(),
                    )
                    .build()
            }),
        mock!(Ecr::get_authorization_token).then_output(|| {
            GetAuthorizationTokenOutput::builder()
                .authorization_data(
                    AuthorizationData::builder()
                        .authorization_token(
                            base64::engine::general_purpose::STANDARD.encode("AWS:token"),
                        )
                        // The caller's own registry, not the central one.
                        .proxy_endpoint("https://111111111111.dkr.ecr.us-east-1.amazonaws.com")
                        .build(),
                )
                .build()
        }),
    ]
}

#[tokio::test]
async fn every_ecr_call_names_the_central_registry_and_login_goes_to_it() {
    let rules = central_only();
    let refs: Vec<&Rule> = rules.iter().collect();
    let backend = scripted_with_ecr(vec![app()], &[], &refs, &[], &[]);
    let registry = backend.registry();
    let shop = AppName::new("shop").unwrap();
    let image = registry
        .resolve(&shop, &DockerTag::new("v2").unwrap())
        .await
        .unwrap();
    assert_eq!(
        image.repository,
        format!("{CENTRAL}.dkr.ecr.us-east-1.amazonaws.com/shop")
    );
    assert_eq!(image.digest.unwrap().to_string(), DIGEST);
    assert_eq!(registry.list(&shop).await.unwrap().len(), 1);
    let login = registry.login(&shop).await.unwrap();
    assert_eq!(
        login.endpoint,
        format!("https://{CENTRAL}.dkr.ecr.us-east-1.amazonaws.com")
    );
    assert_eq!(login.username, "AWS");
}
