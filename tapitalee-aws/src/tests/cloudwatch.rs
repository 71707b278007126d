//! CloudWatch alarm and metric-query analyses, scripted (CloudWatch speaks CBOR, which moto
//! does not).

use aws_sdk_cloudwatch::Client as Cw;
use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
use aws_sdk_cloudwatch::types::{CompositeAlarm, MetricAlarm, MetricDataResult, StateValue};
use aws_sdk_ecs::types::{DeploymentControllerType, LoadBalancer, TaskSet};
use aws_smithy_mocks::{Rule, mock};
use tapitalee_core::{Analysis, AnalysisTarget, Error, Measurement};

use super::scripted;
use super::scripted::{NEW_TD, OLD_TD, app, ecs_service, fleet, services_rule};
use crate::cloudwatch::{CANDIDATE_TARGET_GROUP, FailWhen, MetricQuery};

const TS_ARN: &str = "arn:aws:ecs:us-east-1:1:task-set/c/s0/ecs-svc/9";
const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/green/0123abcd";

fn analysis_target() -> AnalysisTarget {
    AnalysisTarget {
        context: super::scripted::ctx("p0"),
        candidate: fleet("p0", TS_ARN, NEW_TD),
        stable: Some(fleet("p0", "arn:ts/old", OLD_TD)),
    }
}

fn metric_rule(values: Vec<f64>) -> Rule {
    mock!(Cw::get_metric_data).then_output(move || {
        GetMetricDataOutput::builder()
            .metric_data_results(
                MetricDataResult::builder()
                    .id("m")
                    .set_values(Some(values.clone()))
                    .build(),
            )
            .build()
    })
}

async fn measure(query: MetricQuery, values: Vec<f64>) -> Measurement {
    let rule = metric_rule(values);
    let backend = scripted(vec![app(1)], &[], &[], &[&rule]);
    let m = backend
        .metric_analysis(query)
        .measure(&analysis_target())
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1);
    m
}

fn error_count(threshold: f64) -> MetricQuery {
    MetricQuery::new(
        "5xx",
        "AWS/ApplicationELB",
        "HTTPCode_Target_5XX_Count",
        "Sum",
        threshold,
        FailWhen::Above,
    )
}

#[tokio::test]
async fn metric_queries_pass_fail_or_are_inconclusive_on_the_newest_point() {
    // Newest first: the newest point decides, not the older spike.
    match measure(error_count(5.0), vec![3.0, 40.0]).await {
        Measurement::Pass { detail } => assert!(detail.contains("= 3"), "{detail}"),
        other => panic!("expected Pass, got {other:?}"),
    }
    match measure(error_count(5.0), vec![7.0, 1.0]).await {
        Measurement::Fail { detail } => {
            assert!(
                detail.contains("HTTPCode_Target_5XX_Count Sum = 7") && detail.contains("> 5"),
                "{detail}"
            )
        }
        other => panic!("expected Fail, got {other:?}"),
    }
    // On the threshold is not past it.
    assert!(matches!(
        measure(error_count(5.0), vec![5.0]).await,
        Measurement::Pass { .. }
    ));
    // Below-threshold failures (success rates).
    let success = MetricQuery::new(
        "success",
        "MyApp",
        "SuccessRate",
        "Average",
        0.99,
        FailWhen::Below,
    );
    assert!(matches!(
        measure(success.clone(), vec![0.95]).await,
        Measurement::Fail { .. }
    ));
    assert!(matches!(
        measure(success, vec![0.999]).await,
        Measurement::Pass { .. }
    ));
    // No data in the window: no verdict.
    match measure(error_count(5.0), vec![]).await {
        Measurement::Inconclusive { detail } => {
            assert!(
                detail.contains("no data") && detail.contains("300s"),
                "{detail}"
            )
        }
        other => panic!("expected Inconclusive, got {other:?}"),
    }
}

#[tokio::test]
async fn the_candidate_target_group_dimension_is_the_new_task_sets_group() {
    let ts = TaskSet::builder()
        .id("ecs-svc/9")
        .task_set_arn(TS_ARN)
        .status("ACTIVE")
        .task_definition(NEW_TD)
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(GREEN)
                .container_name("app")
                .container_port(8080)
                .build(),
        )
        .build();
    let mut svc = ecs_service("s0", DeploymentControllerType::External, vec![]);
    svc.task_sets = Some(vec![ts]);
    let svc = services_rule(vec![svc]);
    let rule = mock!(Cw::get_metric_data)
        .match_requests(|r| {
            let q = &r.metric_data_queries()[0];
            let Some(stat) = q.metric_stat() else {
                return false;
            };
            let Some(metric) = stat.metric() else {
                return false;
            };
            let dims: Vec<(&str, &str)> = metric
                .dimensions()
                .iter()
                .map(|d| (d.name().unwrap_or(""), d.value().unwrap_or("")))
                .collect();
            let window = match (r.start_time(), r.end_time()) {
                (Some(s), Some(e)) => e.secs() - s.secs(),
                _ => -1,
            };
            metric.namespace() == Some("AWS/ApplicationELB")
                && metric.metric_name() == Some("HTTPCode_Target_5XX_Count")
                && stat.stat() == Some("Sum")
                && stat.period() == Some(60)
                && window == 300
                && dims
                    == [
                        ("TargetGroup", "targetgroup/green/0123abcd"),
                        ("LoadBalancer", "app/web/1"),
                    ]
        })
        .then_output(|| {
            GetMetricDataOutput::builder()
                .metric_data_results(MetricDataResult::builder().values(0.0).build())
                .build()
        });
    let backend = scripted(vec![app(1)], &[&svc], &[], &[&rule]);
    let query = error_count(5.0)
        .dimension("TargetGroup", CANDIDATE_TARGET_GROUP)
        .dimension("LoadBalancer", "app/web/1");
    let m = backend
        .metric_analysis(query.clone())
        .measure(&analysis_target())
        .await
        .unwrap();
    assert!(matches!(m, Measurement::Pass { .. }), "{m:?}");
    assert_eq!(
        rule.num_calls(),
        1,
        "the request carried the candidate's group"
    );

    // A candidate attached to no target group cannot be measured that way: a clear error.
    let bare = services_rule(vec![ecs_service(
        "s0",
        DeploymentControllerType::External,
        vec![],
    )]);
    let backend = scripted(vec![app(1)], &[&bare], &[], &[&rule]);
    let e = backend
        .metric_analysis(query)
        .measure(&analysis_target())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains("attached to no target group"), "{e}");
}

fn alarm(name: &str, state: StateValue, reason: &str) -> MetricAlarm {
    MetricAlarm::builder()
        .alarm_name(name)
        .state_value(state)
        .state_reason(reason)
        .build()
}

async fn alarms(
    names: &[&str],
    metric: Vec<MetricAlarm>,
    composite: Vec<CompositeAlarm>,
) -> Measurement {
    let wanted: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let rule = mock!(Cw::describe_alarms)
        .match_requests(move |r| r.alarm_names() == wanted.as_slice())
        .then_output(move || {
            DescribeAlarmsOutput::builder()
                .set_metric_alarms(Some(metric.clone()))
                .set_composite_alarms(Some(composite.clone()))
                .build()
        });
    let backend = scripted(vec![app(1)], &[], &[], &[&rule]);
    let a = backend.alarm_analysis("alarms", names.iter().copied());
    assert_eq!(a.name(), "alarms");
    let m = a.measure(&analysis_target()).await.unwrap();
    assert_eq!(
        rule.num_calls(),
        1,
        "asked for exactly the configured alarms"
    );
    m
}

#[tokio::test]
async fn alarms_ok_alarm_and_insufficient_data() {
    let ok = |n: &str| alarm(n, StateValue::Ok, "fine");
    match alarms(&["5xx", "latency"], vec![ok("5xx"), ok("latency")], vec![]).await {
        Measurement::Pass { detail } => assert_eq!(detail, "2 alarm(s) OK"),
        other => panic!("expected Pass, got {other:?}"),
    }
    match alarms(
        &["5xx", "latency"],
        vec![
            ok("5xx"),
            alarm("latency", StateValue::Alarm, "p99 above 2s for 3 periods"),
        ],
        vec![],
    )
    .await
    {
        Measurement::Fail { detail } => {
            assert_eq!(detail, "latency in ALARM (p99 above 2s for 3 periods)")
        }
        other => panic!("expected Fail, got {other:?}"),
    }
    // ALARM wins over INSUFFICIENT_DATA elsewhere; composite alarms count too.
    let composite = CompositeAlarm::builder()
        .alarm_name("app-health")
        .state_value(StateValue::Alarm)
        .state_reason("children in ALARM")
        .build();
    match alarms(
        &["5xx", "app-health"],
        vec![alarm("5xx", StateValue::InsufficientData, "no data")],
        vec![composite],
    )
    .await
    {
        Measurement::Fail { detail } => assert!(detail.contains("app-health in ALARM"), "{detail}"),
        other => panic!("expected Fail, got {other:?}"),
    }
    match alarms(
        &["5xx", "latency"],
        vec![
            ok("5xx"),
            alarm("latency", StateValue::InsufficientData, "no data"),
        ],
        vec![],
    )
    .await
    {
        Measurement::Inconclusive { detail } => {
            assert_eq!(detail, "no verdict yet from: latency")
        }
        other => panic!("expected Inconclusive, got {other:?}"),
    }
    // A misspelt alarm is never a pass.
    match alarms(&["5xx", "latncy"], vec![ok("5xx")], vec![]).await {
        Measurement::Inconclusive { detail } => {
            assert!(
                detail.contains("not found") && detail.contains("latncy"),
                "{detail}"
            )
        }
        other => panic!("expected Inconclusive, got {other:?}"),
    }
}

/// DescribeAlarms as CloudWatch documents it: at most 100 names a call, only metric alarms
/// unless `AlarmTypes` asks for composite ones too, and answers in pages (`NextToken`). A
/// composite alarm in ALARM among 150 names fails the analysis; before, it read as "not
/// found" (inconclusive: a deployment paused for good).
#[tokio::test]
async fn alarms_are_described_the_way_cloudwatch_answers() {
    use aws_sdk_cloudwatch::types::AlarmType;
    const PAGE: usize = 40;
    let rule = mock!(Cw::describe_alarms)
        .match_requests(|r| r.alarm_names().len() <= 100)
        .then_compute_output(|r| {
            let names = r.alarm_names();
            let start: usize = r.next_token().map_or(0, |t| t.parse().unwrap());
            let end = (start + PAGE).min(names.len());
            let composite_asked = r.alarm_types().contains(&AlarmType::CompositeAlarm);
            let mut out = DescribeAlarmsOutput::builder();
            for n in &names[start..end] {
                if n == "app-health" {
                    if composite_asked {
                        out = out.composite_alarms(
                            CompositeAlarm::builder()
                                .alarm_name(n)
                                .state_value(StateValue::Alarm)
                                .state_reason("children in ALARM")
                                .build(),
                        );
                    }
                } else {
                    out = out.metric_alarms(alarm(n, StateValue::Ok, "fine"));
                }
            }
            if end < names.len() {
                out = out.next_token(end.to_string());
            }
            out.build()
        });
    let backend = scripted(vec![app(1)], &[], &[], &[&rule]);
    let mut names: Vec<String> = (0..150).map(|i| format!("a{i}")).collect();
    names.insert(120, "app-health".into());
    let a = backend.alarm_analysis("alarms", names.iter().map(String::as_str));
    match a.measure(&analysis_target()).await.unwrap() {
        Measurement::Fail { detail } => {
            assert_eq!(detail, "app-health in ALARM (children in ALARM)")
        }
        other => panic!("expected Fail, got {other:?}"),
    }
    // 151 names: 100 + 51 per call, each answered in pages of 40: 3 + 2 calls.
    assert_eq!(rule.num_calls(), 5);
}
