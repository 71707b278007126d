//! Listener routes against moto: both target groups join every forward action before the
//! first task set registers targets, and weighting patches only the forward action's weights
//! (authentication actions, their order and stickiness are kept) on every route of the
//! process's traffic.

mod support;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, AuthenticateOidcActionConfig, ForwardActionConfig,
    TargetGroupStickinessConfig, TargetGroupTuple,
};
use tapitalee_aws::AwsBackend;
use tapitalee_core::{
    DeployContext, Deployer, DeploymentId, DockerTag, ImageRegistry, Initiator, ProcessName,
    Target, TrafficWeight,
};

async fn actions(listener: &str) -> Vec<Action> {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&support::sdk().await);
    let out = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .unwrap();
    out.listeners()[0].default_actions().to_vec()
}

fn weights(actions: &[Action]) -> Vec<(String, i32)> {
    let forward = actions
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .expect("a forward action");
    let mut w: Vec<(String, i32)> = forward
        .forward_config()
        .expect("a forward config")
        .target_groups()
        .iter()
        .map(|t| {
            (
                t.target_group_arn().unwrap().to_owned(),
                t.weight().unwrap_or(0),
            )
        })
        .collect();
    w.sort();
    w
}

#[tokio::test]
async fn every_route_keeps_its_other_actions_and_stickiness() {
    let f = support::fixture("routes1");
    let tgs = f.list("target_groups");
    let sdk = support::sdk().await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    // A second listener of the same traffic: sign-in first, then a sticky forward.
    let lb = elb
        .describe_listeners()
        .listener_arns(f.s("listener"))
        .send()
        .await
        .unwrap()
        .listeners()[0]
        .load_balancer_arn()
        .unwrap()
        .to_owned();
    let auth = Action::builder()
        .r#type(ActionTypeEnum::AuthenticateOidc)
        .order(1)
        .authenticate_oidc_config(
            AuthenticateOidcActionConfig::builder()
                .issuer("https://idp.example")
                .authorization_endpoint("https://idp.example/auth")
                .token_endpoint("https://idp.example/token")
                .user_info_endpoint("https://idp.example/me")
                .client_id("tapit")
                .client_secret("not-a-real-secret")
                .build(),
        )
        .build();
    let sticky = TargetGroupStickinessConfig::builder()
        .enabled(true)
        .duration_seconds(600)
        .build();
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .order(2)
        .forward_config(
            ForwardActionConfig::builder()
                .target_groups(
                    TargetGroupTuple::builder()
                        .target_group_arn(&tgs[0])
                        .weight(100)
                        .build(),
                )
                .target_group_stickiness_config(sticky.clone())
                .build(),
        )
        .build();
    let second = elb
        .create_listener()
        .load_balancer_arn(lb)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8443)
        .default_actions(auth.clone())
        .default_actions(forward)
        .send()
        .await
        .unwrap()
        .listeners()[0]
        .listener_arn()
        .unwrap()
        .to_owned();

    let mut app = support::app(&f);
    let lbc = app.processes[0].load_balancer.take().unwrap();
    app.processes[0].load_balancer = Some(lbc.also_route(&second, None));
    let backend = AwsBackend::connect(support::config_of(app)).await.unwrap();
    let deployer = backend.deployer();
    let ctx = DeployContext::new(
        DeploymentId::new(),
        Initiator::new("ci").unwrap(),
        Target::new(f.app(), ProcessName::new("default").unwrap()),
    );
    let stable = deployer.current(&ctx).await.unwrap().fleet.unwrap();
    let ctx = ctx.with_stable(Some(stable.clone()));
    let image = backend
        .registry()
        .resolve(&f.app(), &DockerTag::new("v2").unwrap())
        .await
        .unwrap();
    let revision = deployer.prepare(&ctx, &image).await.unwrap();

    // Before the first listener forwarded to the blue group alone ("TargetGroupArn").
    let candidate = deployer.launch(&ctx, &revision, 1).await.unwrap();
    let both_idle_green = vec![(tgs[0].clone(), 100), (tgs[1].clone(), 0)];
    let mut want = both_idle_green.clone();
    want.sort();
    for listener in [f.s("listener"), second.clone()] {
        assert_eq!(
            weights(&actions(&listener).await),
            want,
            "both groups are forwarded to before a task set registers targets ({listener})"
        );
    }

    deployer
        .route(
            &ctx,
            &[
                TrafficWeight {
                    fleet: candidate.id.clone(),
                    percent: 10,
                },
                TrafficWeight {
                    fleet: stable.id.clone(),
                    percent: 90,
                },
            ],
        )
        .await
        .unwrap();
    let mut want = vec![(tgs[0].clone(), 90), (tgs[1].clone(), 10)];
    want.sort();
    assert_eq!(weights(&actions(&f.s("listener")).await), want);
    let after = actions(&second).await;
    assert_eq!(weights(&after), want, "the second route moves in step");
    let kept_auth = after
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::AuthenticateOidc))
        .expect("the sign-in action is kept");
    assert_eq!(kept_auth.order(), Some(1));
    assert_eq!(
        kept_auth
            .authenticate_oidc_config()
            .and_then(|c| c.client_id()),
        Some("tapit")
    );
    let forward = after
        .iter()
        .find(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
        .unwrap();
    assert_eq!(forward.order(), Some(2));
    assert_eq!(
        forward
            .forward_config()
            .and_then(|c| c.target_group_stickiness_config()),
        Some(&sticky),
        "stickiness is kept"
    );
    deployer.retire(&ctx, &candidate).await.ok();
}
