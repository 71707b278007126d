//! [`EcsStrategy`]: the deployment strategy ECS itself runs for an ECS-controller service
//! (rolling, blue-green, linear, canary), set on `UpdateService` with each new revision.

use std::time::Duration;

use aws_sdk_ecs::types::{
    CanaryConfiguration, DeploymentConfiguration, DeploymentStrategy, LinearConfiguration,
};
use tapitalee_core::{Error, Result};

/// The longest bake or step time ECS accepts: 24 hours.
const MAX_MINUTES: u64 = 1440;

/// How ECS rolls out a new revision of a service on the ECS deployment controller.
///
/// Set per process with [`ProcessConfig::ecs_strategy`](crate::ProcessConfig::ecs_strategy);
/// a process without one leaves the service's own deployment configuration as it is (ECS's
/// default is [`Rolling`](EcsStrategy::Rolling)). Only the strategy fields of the service's
/// deployment configuration are changed: its circuit breaker, alarms and min/max percents are
/// kept.
///
/// Blue-green, linear and canary shift traffic with the service's load balancer (an
/// alternate target group and a production listener rule in its load balancer's advanced
/// configuration) or Service Connect; set that up on the service. Lifecycle hooks are not
/// managed here.
///
/// Times are whole minutes (ECS counts them so), from 0 to 24 hours. The new fleet counts as
/// healthy only once ECS reports its rollout `COMPLETED`, which is after every bake: the
/// engine's progress deadline is extended by [`total_bake_time`](Self::total_bake_time) (of
/// this strategy, or of the one the service's own deployment configuration sets when the
/// process has none).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum EcsStrategy {
    /// ECS replaces tasks a batch at a time, within the service's minimum healthy and maximum
    /// percents (`ROLLING`).
    #[default]
    Rolling,
    /// ECS starts the whole new revision beside the old, shifts all traffic at once, then
    /// keeps the old one for `bake_time` before removing it (`BLUE_GREEN`).
    BlueGreen {
        /// How long both revisions run after traffic has shifted (ECS requires it).
        bake_time: Duration,
    },
    /// ECS shifts traffic in equal steps of `step_percent`, waiting `step_bake_time` after each
    /// (`LINEAR`).
    Linear {
        /// The traffic shifted per step: a multiple of 0.1 from 3.0 to 100.0.
        step_percent: f64,
        /// The wait after each step but the last.
        step_bake_time: Duration,
        /// How long both revisions run after all traffic has shifted.
        bake_time: Duration,
    },
    /// ECS shifts `canary_percent` of traffic, waits `canary_bake_time`, then shifts the rest
    /// (`CANARY`).
    Canary {
        /// The traffic of the canary phase: a multiple of 0.1 from 0.1 to 100.0.
        canary_percent: f64,
        /// How long the canary phase lasts.
        canary_bake_time: Duration,
        /// How long both revisions run after all traffic has shifted.
        bake_time: Duration,
    },
}

impl EcsStrategy {
    /// The family of rollout this is, to map a requested strategy onto it.
    pub fn kind(&self) -> tapitalee_core::RolloutKind {
        match self {
            EcsStrategy::Rolling => tapitalee_core::RolloutKind::Rolling,
            EcsStrategy::BlueGreen { .. } => tapitalee_core::RolloutKind::BlueGreen,
            EcsStrategy::Linear { .. } | EcsStrategy::Canary { .. } => {
                tapitalee_core::RolloutKind::Canary
            }
        }
    }

    /// ECS's name of the strategy (`ROLLING`, `BLUE_GREEN`, `LINEAR`, `CANARY`).
    pub fn name(&self) -> &'static str {
        match self {
            EcsStrategy::Rolling => "ROLLING",
            EcsStrategy::BlueGreen { .. } => "BLUE_GREEN",
            EcsStrategy::Linear { .. } => "LINEAR",
            EcsStrategy::Canary { .. } => "CANARY",
        }
    }

    /// The least time ECS takes to complete a rollout with this strategy, in bake and step
    /// waits alone (task start-up and health checks come on top).
    pub fn total_bake_time(&self) -> Duration {
        match *self {
            EcsStrategy::Rolling => Duration::ZERO,
            EcsStrategy::BlueGreen { bake_time } => bake_time,
            EcsStrategy::Linear {
                step_percent,
                step_bake_time,
                bake_time,
            } => {
                // Steps of `step_percent` up to 100%; no wait after the last (ECS's
                // LinearConfiguration: the step bake "is not applied after reaching 100
                // percent traffic").
                let steps = if step_percent > 0.0 {
                    (100.0 / step_percent).ceil() as u32
                } else {
                    1
                };
                step_bake_time * steps.saturating_sub(1) + bake_time
            }
            EcsStrategy::Canary {
                canary_bake_time,
                bake_time,
                ..
            } => canary_bake_time + bake_time,
        }
    }

    /// Checks the values against ECS's limits; `process` names the process in the error.
    pub(crate) fn validate(&self, process: &str) -> Result<()> {
        match *self {
            EcsStrategy::Rolling => Ok(()),
            EcsStrategy::BlueGreen { bake_time } => minutes("ECS bake time", bake_time, process),
            EcsStrategy::Linear {
                step_percent,
                step_bake_time,
                bake_time,
            } => {
                percent("ECS linear step percent", step_percent, 3.0, process)?;
                minutes("ECS linear step bake time", step_bake_time, process)?;
                minutes("ECS bake time", bake_time, process)
            }
            EcsStrategy::Canary {
                canary_percent,
                canary_bake_time,
                bake_time,
            } => {
                percent("ECS canary percent", canary_percent, 0.1, process)?;
                minutes("ECS canary bake time", canary_bake_time, process)?;
                minutes("ECS bake time", bake_time, process)
            }
        }
    }

    /// The strategy a service's own deployment configuration sets (what ECS runs when a
    /// process has no [`EcsStrategy`] of its own): its bakes count toward the engine's
    /// progress deadline as much as configured ones do. Values ECS did not report are 0.
    pub(crate) fn of_service(c: &DeploymentConfiguration) -> EcsStrategy {
        let min =
            |m: Option<i32>| Duration::from_secs(u64::try_from(m.unwrap_or(0)).unwrap_or(0) * 60);
        let bake_time = min(c.bake_time_in_minutes());
        match c.strategy() {
            Some(DeploymentStrategy::BlueGreen) => EcsStrategy::BlueGreen { bake_time },
            Some(DeploymentStrategy::Linear) => {
                let l = c.linear_configuration();
                EcsStrategy::Linear {
                    step_percent: l.and_then(|l| l.step_percent()).unwrap_or(100.0),
                    step_bake_time: min(l.and_then(|l| l.step_bake_time_in_minutes())),
                    bake_time,
                }
            }
            Some(DeploymentStrategy::Canary) => {
                let k = c.canary_configuration();
                EcsStrategy::Canary {
                    canary_percent: k.and_then(|k| k.canary_percent()).unwrap_or(100.0),
                    canary_bake_time: min(k.and_then(|k| k.canary_bake_time_in_minutes())),
                    bake_time,
                }
            }
            _ => EcsStrategy::Rolling,
        }
    }

    /// The service's deployment configuration (`base`, as ECS reported it) with this strategy
    /// in place of its own; everything else is kept.
    pub(crate) fn apply(&self, base: Option<&DeploymentConfiguration>) -> DeploymentConfiguration {
        let mut c = base
            .cloned()
            .unwrap_or_else(|| DeploymentConfiguration::builder().build());
        c.linear_configuration = None;
        c.canary_configuration = None;
        c.bake_time_in_minutes = None;
        match *self {
            EcsStrategy::Rolling => c.strategy = Some(DeploymentStrategy::Rolling),
            EcsStrategy::BlueGreen { bake_time } => {
                c.strategy = Some(DeploymentStrategy::BlueGreen);
                c.bake_time_in_minutes = Some(whole_minutes(bake_time));
            }
            EcsStrategy::Linear {
                step_percent,
                step_bake_time,
                bake_time,
            } => {
                c.strategy = Some(DeploymentStrategy::Linear);
                c.linear_configuration = Some(
                    LinearConfiguration::builder()
                        .step_percent(tenths(step_percent))
                        .step_bake_time_in_minutes(whole_minutes(step_bake_time))
                        .build(),
                );
                c.bake_time_in_minutes = Some(whole_minutes(bake_time));
            }
            EcsStrategy::Canary {
                canary_percent,
                canary_bake_time,
                bake_time,
            } => {
                c.strategy = Some(DeploymentStrategy::Canary);
                c.canary_configuration = Some(
                    CanaryConfiguration::builder()
                        .canary_percent(tenths(canary_percent))
                        .canary_bake_time_in_minutes(whole_minutes(canary_bake_time))
                        .build(),
                );
                c.bake_time_in_minutes = Some(whole_minutes(bake_time));
            }
        }
        c
    }
}

impl std::fmt::Display for EcsStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn whole_minutes(d: Duration) -> i32 {
    i32::try_from(d.as_secs() / 60).unwrap_or(i32::MAX)
}

/// A percent rounded to ECS's 0.1 steps (3.3 stays 3.3, not 3.2999999999999998).
fn tenths(p: f64) -> f64 {
    (p * 10.0).round() / 10.0
}

fn minutes(what: &'static str, d: Duration, process: &str) -> Result<()> {
    let whole = d.subsec_nanos() == 0 && d.as_secs().is_multiple_of(60);
    if whole && d.as_secs() / 60 <= MAX_MINUTES {
        return Ok(());
    }
    let secs = d.as_secs_f64();
    let fix = if whole {
        "ECS allows at most 24 hours (1440 minutes)".to_owned()
    } else {
        let down = d.as_secs() / 60;
        format!(
            "ECS counts it in whole minutes, 0 to 1440; use {}s or {}s",
            down * 60,
            (down + 1) * 60
        )
    };
    Err(Error::invalid(
        what,
        format!("{secs}s"),
        format!("process {process}: {fix}"),
    ))
}

fn percent(what: &'static str, p: f64, min: f64, process: &str) -> Result<()> {
    let scaled = p * 10.0;
    let on_step = p.is_finite() && (scaled - scaled.round()).abs() < 1e-6;
    if on_step && (min - 1e-9..=100.0 + 1e-9).contains(&p) {
        return Ok(());
    }
    Err(Error::invalid(
        what,
        p.to_string(),
        format!("process {process}: ECS takes a multiple of 0.1 from {min:.1} to 100.0"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::DeploymentCircuitBreaker;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn values_outside_ecs_limits_name_the_value_and_the_fix() {
        let e = EcsStrategy::BlueGreen {
            bake_time: Duration::from_secs(90),
        }
        .validate("myapp/web")
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid ECS bake time \"90s\": process myapp/web: ECS counts it in whole minutes, \
             0 to 1440; use 60s or 120s"
        );
        let e = EcsStrategy::Linear {
            step_percent: 2.5,
            step_bake_time: MIN,
            bake_time: MIN,
        }
        .validate("myapp/web")
        .unwrap_err()
        .to_string();
        assert!(e.contains("step percent \"2.5\""), "{e}");
        assert!(e.contains("from 3.0 to 100.0"), "{e}");
        let e = EcsStrategy::Canary {
            canary_percent: 5.05,
            canary_bake_time: MIN,
            bake_time: MIN,
        }
        .validate("myapp/web")
        .unwrap_err()
        .to_string();
        assert!(e.contains("canary percent \"5.05\""), "{e}");
        for bad in [f64::NAN, 0.0, 100.1, -1.0] {
            assert!(
                EcsStrategy::Canary {
                    canary_percent: bad,
                    canary_bake_time: MIN,
                    bake_time: MIN,
                }
                .validate("p")
                .is_err(),
                "{bad}"
            );
        }
        let e = EcsStrategy::Canary {
            canary_percent: 10.0,
            canary_bake_time: MIN * 1441,
            bake_time: MIN,
        }
        .validate("p")
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("canary bake time") && e.contains("24 hours"),
            "{e}"
        );
        for ok in [
            EcsStrategy::Rolling,
            EcsStrategy::BlueGreen {
                bake_time: Duration::ZERO,
            },
            EcsStrategy::Linear {
                step_percent: 3.3,
                step_bake_time: MIN * 1440,
                bake_time: MIN,
            },
            EcsStrategy::Canary {
                canary_percent: 0.1,
                canary_bake_time: MIN,
                bake_time: MIN,
            },
        ] {
            ok.validate("p").unwrap();
        }
    }

    #[test]
    fn apply_replaces_the_strategy_and_keeps_the_rest() {
        let base = DeploymentConfiguration::builder()
            .maximum_percent(150)
            .minimum_healthy_percent(50)
            .deployment_circuit_breaker(
                DeploymentCircuitBreaker::builder()
                    .enable(true)
                    .rollback(true)
                    .build(),
            )
            .strategy(DeploymentStrategy::Linear)
            .linear_configuration(LinearConfiguration::builder().step_percent(10.0).build())
            .bake_time_in_minutes(5)
            .build();
        let c = EcsStrategy::Canary {
            canary_percent: 3.3,
            canary_bake_time: MIN * 10,
            bake_time: MIN * 2,
        }
        .apply(Some(&base));
        assert_eq!(c.strategy(), Some(&DeploymentStrategy::Canary));
        assert_eq!(c.maximum_percent(), Some(150));
        assert_eq!(c.minimum_healthy_percent(), Some(50));
        assert!(c.deployment_circuit_breaker().is_some_and(|b| b.rollback()));
        assert!(
            c.linear_configuration().is_none(),
            "the old step config goes"
        );
        let canary = c.canary_configuration().unwrap();
        assert_eq!(canary.canary_percent(), Some(3.3));
        assert_eq!(canary.canary_bake_time_in_minutes(), Some(10));
        assert_eq!(c.bake_time_in_minutes(), Some(2));

        let r = EcsStrategy::Rolling.apply(Some(&base));
        assert_eq!(r.strategy(), Some(&DeploymentStrategy::Rolling));
        assert_eq!(r.bake_time_in_minutes(), None);
        assert!(r.linear_configuration().is_none());
        assert_eq!(r.maximum_percent(), Some(150));
    }

    #[test]
    fn the_services_own_configuration_gives_its_bakes() {
        let canary = DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::Canary)
            .canary_configuration(
                CanaryConfiguration::builder()
                    .canary_percent(5.0)
                    .canary_bake_time_in_minutes(7)
                    .build(),
            )
            .bake_time_in_minutes(15)
            .build();
        assert_eq!(
            EcsStrategy::of_service(&canary),
            EcsStrategy::Canary {
                canary_percent: 5.0,
                canary_bake_time: MIN * 7,
                bake_time: MIN * 15,
            }
        );
        assert_eq!(EcsStrategy::of_service(&canary).total_bake_time(), MIN * 22);
        let blue_green = DeploymentConfiguration::builder()
            .strategy(DeploymentStrategy::BlueGreen)
            .bake_time_in_minutes(15)
            .build();
        assert_eq!(
            EcsStrategy::of_service(&blue_green).total_bake_time(),
            MIN * 15
        );
        let plain = DeploymentConfiguration::builder()
            .maximum_percent(200)
            .build();
        assert_eq!(EcsStrategy::of_service(&plain), EcsStrategy::Rolling);
    }

    #[test]
    fn total_bake_time_counts_every_wait() {
        assert_eq!(EcsStrategy::Rolling.total_bake_time(), Duration::ZERO);
        let linear = EcsStrategy::Linear {
            step_percent: 25.0,
            step_bake_time: MIN * 2,
            bake_time: MIN * 5,
        };
        // 4 steps, 3 waits between them, then the bake.
        assert_eq!(linear.total_bake_time(), MIN * 11);
        let canary = EcsStrategy::Canary {
            canary_percent: 10.0,
            canary_bake_time: MIN * 10,
            bake_time: MIN,
        };
        assert_eq!(canary.total_bake_time(), MIN * 11);
    }
}
