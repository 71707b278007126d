//! CloudWatch alarms and metric queries as [`Analysis`] gates for canary and blue-green.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, Metric, MetricDataQuery, MetricStat, StateValue,
};
use aws_smithy_types::DateTime;
use tapitalee_core::{Analysis, AnalysisTarget, Error, Measurement, Result};

use crate::backend::Shared;
use crate::poller::ServiceKey;

/// The most alarm names one `DescribeAlarms` call takes.
const MAX_ALARM_NAMES: usize = 100;

/// A dimension value replaced by the candidate fleet's target group (`targetgroup/name/id`),
/// for ALB metrics of the new fleet alone.
pub const CANDIDATE_TARGET_GROUP: &str = "{candidate_target_group}";

/// Passes while every alarm is OK; fails while any is in ALARM; inconclusive otherwise
/// (INSUFFICIENT_DATA, or an alarm that does not exist).
#[derive(Clone)]
pub struct AlarmAnalysis {
    shared: Arc<Shared>,
    name: String,
    alarms: Vec<String>,
}

impl std::fmt::Debug for AlarmAnalysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlarmAnalysis")
            .field("name", &self.name)
            .field("alarms", &self.alarms)
            .finish_non_exhaustive()
    }
}

impl AlarmAnalysis {
    pub(crate) fn new(
        shared: Arc<Shared>,
        name: String,
        alarms: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        AlarmAnalysis {
            shared,
            name,
            alarms: alarms.into_iter().map(Into::into).collect(),
        }
    }
}

#[async_trait]
impl Analysis for AlarmAnalysis {
    fn name(&self) -> &str {
        &self.name
    }

    async fn measure(&self, target: &AnalysisTarget) -> Result<Measurement> {
        let cw = &self.shared.clients(&target.context.target.app).cloudwatch;
        let mut states: Vec<(String, StateValue, String)> = Vec::new();
        // DescribeAlarms takes at most 100 names a call, returns only metric alarms unless
        // asked for composite ones too, and pages its answer.
        for names in self.alarms.chunks(MAX_ALARM_NAMES) {
            let mut next: Option<String> = None;
            loop {
                let out = self
                    .shared
                    .layer
                    .call("DescribeAlarms", Some(target.context.deployment), || {
                        cw.describe_alarms()
                            .set_alarm_names(Some(names.to_vec()))
                            .alarm_types(AlarmType::MetricAlarm)
                            .alarm_types(AlarmType::CompositeAlarm)
                            .set_next_token(next.clone())
                            .send()
                    })
                    .await?;
                states.extend(
                    out.metric_alarms()
                        .iter()
                        .map(|a| (a.alarm_name(), a.state_value(), a.state_reason()))
                        .chain(
                            out.composite_alarms()
                                .iter()
                                .map(|a| (a.alarm_name(), a.state_value(), a.state_reason())),
                        )
                        .map(|(n, s, r)| {
                            (
                                n.unwrap_or_default().to_owned(),
                                s.cloned().unwrap_or(StateValue::InsufficientData),
                                r.unwrap_or_default().to_owned(),
                            )
                        }),
                );
                next = out.next_token().map(str::to_owned);
                if next.is_none() {
                    break;
                }
            }
        }
        let firing: Vec<String> = states
            .iter()
            .filter(|(_, s, _)| *s == StateValue::Alarm)
            .map(|(n, _, r)| format!("{n} in ALARM ({r})"))
            .collect();
        if !firing.is_empty() {
            return Ok(Measurement::Fail {
                detail: firing.join("; "),
            });
        }
        let missing: Vec<&String> = self
            .alarms
            .iter()
            .filter(|a| !states.iter().any(|(n, _, _)| n == *a))
            .collect();
        if !missing.is_empty() {
            return Ok(Measurement::Inconclusive {
                detail: format!("alarm(s) not found: {missing:?}; check the alarm names"),
            });
        }
        let waiting: Vec<&str> = states
            .iter()
            .filter(|(_, s, _)| *s != StateValue::Ok)
            .map(|(n, _, _)| n.as_str())
            .collect();
        if !waiting.is_empty() {
            return Ok(Measurement::Inconclusive {
                detail: format!("no verdict yet from: {}", waiting.join(", ")),
            });
        }
        Ok(Measurement::Pass {
            detail: format!("{} alarm(s) OK", states.len()),
        })
    }
}

/// Which side of the threshold fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailWhen {
    /// The value above the threshold fails (error rates, latency).
    Above,
    /// The value below the threshold fails (success rates, throughput).
    Below,
}

/// One CloudWatch metric statistic compared with a threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    /// A short name for events ("5xx-rate", …).
    pub name: String,
    /// The namespace, e.g. `AWS/ApplicationELB`.
    pub namespace: String,
    /// The metric, e.g. `HTTPCode_Target_5XX_Count`.
    pub metric: String,
    /// Dimensions; a value of [`CANDIDATE_TARGET_GROUP`] is the new fleet's target group.
    pub dimensions: Vec<(String, String)>,
    /// The statistic (`Sum`, `Average`, `p99`, …).
    pub stat: String,
    /// The period of each data point.
    pub period: Duration,
    /// How far back to look; the newest data point decides.
    pub window: Duration,
    /// The threshold.
    pub threshold: f64,
    /// Which side of it fails.
    pub fail_when: FailWhen,
}

impl MetricQuery {
    /// A query of `namespace`/`metric` by `stat` over 1-minute periods in the last 5 minutes.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        metric: impl Into<String>,
        stat: impl Into<String>,
        threshold: f64,
        fail_when: FailWhen,
    ) -> Self {
        MetricQuery {
            name: name.into(),
            namespace: namespace.into(),
            metric: metric.into(),
            dimensions: Vec::new(),
            stat: stat.into(),
            period: Duration::from_secs(60),
            window: Duration::from_secs(300),
            threshold,
            fail_when,
        }
    }

    /// Adds a dimension.
    #[must_use]
    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    /// Judges one value.
    pub fn judge(&self, value: f64) -> Measurement {
        let (fails, op) = match self.fail_when {
            FailWhen::Above => (value > self.threshold, ">"),
            FailWhen::Below => (value < self.threshold, "<"),
        };
        let detail = format!(
            "{} {} = {value} ({}{} {})",
            self.metric,
            self.stat,
            if fails { "" } else { "not " },
            op,
            self.threshold
        );
        if fails {
            Measurement::Fail { detail }
        } else {
            Measurement::Pass { detail }
        }
    }
}

/// A [`MetricQuery`] as an [`Analysis`]: the newest data point in the window passes or fails;
/// no data is inconclusive.
#[derive(Clone)]
pub struct MetricAnalysis {
    shared: Arc<Shared>,
    query: MetricQuery,
}

impl std::fmt::Debug for MetricAnalysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricAnalysis")
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl MetricAnalysis {
    pub(crate) fn new(shared: Arc<Shared>, query: MetricQuery) -> Self {
        MetricAnalysis { shared, query }
    }

    async fn candidate_target_group(&self, target: &AnalysisTarget) -> Result<String> {
        let p = self
            .shared
            .config
            .app(&target.context.target.app)?
            .get(&target.context.target.process)?
            .clone();
        let info = self
            .shared
            .poller(&target.context.target.app)
            .service(ServiceKey::new(&p.cluster, &p.service))
            .await?;
        let id = &target.candidate.id.0;
        let tg = info
            .task_sets
            .iter()
            .find(|t| &t.arn == id || &t.id == id)
            .and_then(|t| match &p.load_balancer {
                Some(lb) => t.target_group_of(&lb.target_groups),
                // Without a configured pair: the task set's first target group.
                None => t.load_balancers.iter().find_map(|l| l.target_group_arn()),
            })
            .ok_or_else(|| {
                Error::invalid(
                    "metric dimension",
                    CANDIDATE_TARGET_GROUP,
                    format!("the new fleet {id} is attached to no target group"),
                )
            })?;
        Ok(tg.rsplit(':').next().unwrap_or(tg).to_owned())
    }
}

#[async_trait]
impl Analysis for MetricAnalysis {
    fn name(&self) -> &str {
        &self.query.name
    }

    async fn measure(&self, target: &AnalysisTarget) -> Result<Measurement> {
        let q = &self.query;
        let mut dims = Vec::new();
        for (k, v) in &q.dimensions {
            let v = if v == CANDIDATE_TARGET_GROUP {
                self.candidate_target_group(target).await?
            } else {
                v.clone()
            };
            dims.push(Dimension::builder().name(k).value(v).build());
        }
        let query = MetricDataQuery::builder()
            .id("m")
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(&q.namespace)
                            .metric_name(&q.metric)
                            .set_dimensions(Some(dims))
                            .build(),
                    )
                    .period(i32::try_from(q.period.as_secs().max(1)).unwrap_or(60))
                    .stat(&q.stat)
                    .build(),
            )
            .build();
        let now = SystemTime::now();
        let start = DateTime::from(now - q.window);
        let end = DateTime::from(now);
        let cw = &self.shared.clients(&target.context.target.app).cloudwatch;
        let out = self
            .shared
            .layer
            .call("GetMetricData", Some(target.context.deployment), || {
                cw.get_metric_data()
                    .metric_data_queries(query.clone())
                    .start_time(start)
                    .end_time(end)
                    .send()
            })
            .await?;
        // Results come newest first.
        match out
            .metric_data_results()
            .iter()
            .flat_map(|r| r.values().first())
            .next()
        {
            Some(v) => Ok(q.judge(*v)),
            None => Ok(Measurement::Inconclusive {
                detail: format!(
                    "no data for {} {} in the last {}s",
                    q.metric,
                    q.stat,
                    q.window.as_secs()
                ),
            }),
        }
    }
}
