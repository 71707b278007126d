//! The simulation of one fleet's instances over tokio's clock: start delays, crash loops
//! (with replacement), health flaps, scaling.

use std::time::SystemTime;

use tokio::time::Instant;

use crate::fleet::{Fleet, FleetStatus, Instance, InstanceStatus};

use super::behavior::Behavior;

/// Stopped instances kept per fleet (older ones are forgotten, as ECS forgets old tasks).
const MAX_STOPPED_KEPT: usize = 50;

#[derive(Debug)]
pub(super) struct SimInstance {
    id: String,
    launched: Instant,
    stopped: Option<(Instant, String, i32)>,
}

#[derive(Debug)]
pub(super) struct SimFleet {
    pub(super) fleet: Fleet,
    pub(super) behavior: Behavior,
    pub(super) desired: u32,
    pub(super) instances: Vec<SimInstance>,
    pub(super) next_instance: u64,
}

impl SimFleet {
    fn running_since(&self, i: &SimInstance) -> Instant {
        i.launched + self.behavior.start_delay
    }

    /// Plays the crash loop forward to `now`: crashed instances stop and are replaced.
    pub(super) fn advance(&mut self, now: Instant) {
        let Some(crash_after) = self.behavior.crash_after else {
            return;
        };
        loop {
            let mut replaced = Vec::new();
            for idx in 0..self.instances.len() {
                let i = &self.instances[idx];
                if i.stopped.is_some() {
                    continue;
                }
                let crash_at = self.running_since(i) + crash_after;
                if crash_at <= now {
                    let code = self.behavior.exit_code;
                    self.instances[idx].stopped =
                        Some((crash_at, "Essential container in task exited".into(), code));
                    replaced.push(crash_at);
                }
            }
            if replaced.is_empty() {
                break;
            }
            for at in replaced {
                self.spawn(at);
            }
        }
        let stopped: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].stopped.is_some())
            .collect();
        if stopped.len() > MAX_STOPPED_KEPT {
            let drop: Vec<usize> = stopped[..stopped.len() - MAX_STOPPED_KEPT].to_vec();
            let mut idx = 0;
            self.instances.retain(|_| {
                let keep = !drop.contains(&idx);
                idx += 1;
                keep
            });
        }
    }

    pub(super) fn spawn(&mut self, at: Instant) {
        self.next_instance += 1;
        self.instances.push(SimInstance {
            id: format!("{}-task-{}", self.fleet.id, self.next_instance),
            launched: at,
            stopped: None,
        });
    }

    pub(super) fn scale_to(&mut self, count: u32, now: Instant) {
        self.advance(now);
        self.desired = count;
        let live = self
            .instances
            .iter()
            .filter(|i| i.stopped.is_none())
            .count();
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if live < count {
            for _ in live..count {
                self.spawn(now);
            }
        } else {
            // Scale-in removes the newest instances first; they leave without counting as
            // failures.
            let mut excess = live - count;
            while excess > 0 {
                if let Some(pos) = self.instances.iter().rposition(|i| i.stopped.is_none()) {
                    self.instances.remove(pos);
                }
                excess -= 1;
            }
        }
    }

    fn container_healthy(&self, i: &SimInstance, now: Instant) -> bool {
        if self.behavior.never_healthy {
            return false;
        }
        match self.behavior.flap_period {
            Some(p) if !p.is_zero() => {
                let up = now.saturating_duration_since(self.running_since(i));
                (up.as_nanos() / p.as_nanos()).is_multiple_of(2)
            }
            _ => true,
        }
    }

    pub(super) fn status(&self, now: Instant) -> FleetStatus {
        let wall = SystemTime::now();
        let instances = self
            .instances
            .iter()
            .map(|i| {
                let status = match &i.stopped {
                    Some((_, reason, code)) => InstanceStatus::Stopped {
                        reason: reason.clone(),
                        exit_code: Some(*code),
                    },
                    None if self.running_since(i) > now => InstanceStatus::Pending,
                    None => InstanceStatus::Running {
                        healthy: Some(self.container_healthy(i, now)),
                    },
                };
                let started_at = (self.running_since(i) <= now).then(|| {
                    wall.checked_sub(now.saturating_duration_since(self.running_since(i)))
                        .unwrap_or(wall)
                });
                Instance {
                    id: i.id.clone(),
                    status,
                    started_at,
                }
            })
            .collect();
        FleetStatus {
            fleet: self.fleet.id.clone(),
            desired: self.desired,
            instances,
        }
    }
}
