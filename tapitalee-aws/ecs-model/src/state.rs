//! The model's state and how it moves with time: tasks, the service scheduler, deployments,
//! task sets and target health.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use crate::{CallReport, ModelConfig};

/// What the tasks of an image do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Behavior {
    /// Starts, passes its health checks, keeps running.
    Good,
    /// Its essential container exits with code 1 [`Timing::crash_after`] after starting.
    CrashLoop,
    /// Runs but never passes a health check (container or load balancer): ECS stops it as
    /// unhealthy after [`Timing::healthy_after`].
    NeverHealthy,
    /// Becomes healthy, then its essential container exits with code 1 this long after it
    /// started running (a release that breaks once it takes traffic).
    FailsAfter(Duration),
    /// Never placed: ECS finds no capacity for its tasks, creates none and says so in a
    /// service event ("was unable to place a task"), as it does when Fargate has no
    /// capacity or the task's requirements match nothing.
    Unplaceable,
}

/// How long things take, in model time.
#[derive(Debug, Clone)]
pub struct Timing {
    /// From a task's creation to RUNNING (image pull, ENI). Default 10 s.
    pub start: Duration,
    /// From RUNNING to the first health check verdict (container and load balancer).
    /// Default 30 s.
    pub healthy_after: Duration,
    /// From RUNNING to a crash-looping container's exit. Default 5 s.
    pub crash_after: Duration,
    /// From a stop request to STOPPED. Default 5 s.
    pub stop: Duration,
    /// How long a deregistered target drains. Default 5 s.
    pub deregistration_delay: Duration,
    /// How long a new service deployment stays PENDING before IN_PROGRESS. Default 2 s.
    pub pending: Duration,
    /// How long stopped tasks stay listed. Default 1 hour (as ECS).
    pub stopped_kept: Duration,
    /// How long `DescribeServices` keeps showing a service as it was before an
    /// `UpdateService` that started a deployment (ECS is eventually consistent: right after
    /// the update, a read may still show the old deployments). The `UpdateService` answer
    /// itself is current. Default 0.
    pub describe_lag: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            start: Duration::from_secs(10),
            healthy_after: Duration::from_secs(30),
            crash_after: Duration::from_secs(5),
            stop: Duration::from_secs(5),
            deregistration_delay: Duration::from_secs(5),
            pending: Duration::from_secs(2),
            stopped_kept: Duration::from_secs(3600),
            describe_lag: Duration::ZERO,
        }
    }
}

/// A container of a task definition, as far as the model cares.
#[derive(Debug, Clone)]
pub(crate) struct ContainerDef {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) essential: bool,
    pub(crate) health_check: bool,
    /// Its `awslogs` log group and stream prefix, if it logs to CloudWatch.
    pub(crate) awslogs: Option<(String, String)>,
}

/// A line a container wrote before it exited, for CloudWatch Logs (in moto): the awslogs
/// driver's stream `prefix/container/task-id` in the task definition's log group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEvent {
    pub(crate) group: String,
    pub(crate) stream: String,
    pub(crate) message: String,
}

/// A task definition read from moto.
#[derive(Debug, Clone)]
pub(crate) struct TaskDef {
    pub(crate) arn: String,
    pub(crate) containers: Vec<ContainerDef>,
    pub(crate) cpu: Option<String>,
    pub(crate) memory: Option<String>,
}

impl TaskDef {
    pub(crate) fn from_json(v: &Value) -> Option<TaskDef> {
        let arn = v["taskDefinitionArn"].as_str()?.to_owned();
        let containers = v["containerDefinitions"]
            .as_array()?
            .iter()
            .map(|c| ContainerDef {
                name: c["name"].as_str().unwrap_or("").to_owned(),
                image: c["image"].as_str().unwrap_or("").to_owned(),
                essential: c["essential"].as_bool().unwrap_or(true),
                health_check: c["healthCheck"].is_object(),
                awslogs: {
                    let l = &c["logConfiguration"];
                    let o = &l["options"];
                    match (l["logDriver"].as_str(), o["awslogs-group"].as_str()) {
                        (Some("awslogs"), Some(group)) => Some((
                            group.to_owned(),
                            o["awslogs-stream-prefix"].as_str().unwrap_or("").to_owned(),
                        )),
                        _ => None,
                    }
                },
            })
            .collect();
        Some(TaskDef {
            arn,
            containers,
            cpu: v["cpu"].as_str().map(str::to_owned),
            memory: v["memory"].as_str().map(str::to_owned),
        })
    }

    /// ECS derives task health from essential containers only.
    fn health_checked(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.essential && c.health_check)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    Ecs,
    External,
}

/// A target's registration in a target group.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) target_group: String,
    pub(crate) port: i64,
    pub(crate) since: f64,
    /// When it was deregistered (draining until `+ deregistration_delay`).
    pub(crate) deregistered: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) arn: String,
    pub(crate) cluster: String,
    pub(crate) service: String,
    pub(crate) started_by: String,
    pub(crate) td: String,
    pub(crate) behavior: Behavior,
    pub(crate) health_checked: bool,
    pub(crate) containers: Vec<ContainerDef>,
    pub(crate) created: f64,
    pub(crate) running_at: Option<f64>,
    pub(crate) stopping_at: Option<f64>,
    pub(crate) stopped_at: Option<f64>,
    pub(crate) desired_status: &'static str,
    pub(crate) last_status: &'static str,
    pub(crate) health: &'static str,
    pub(crate) stop_code: Option<&'static str>,
    pub(crate) stopped_reason: Option<String>,
    /// Exit code of the essential containers when stopped.
    pub(crate) exit_code: Option<i64>,
    pub(crate) ip: String,
    pub(crate) registrations: Vec<Registration>,
    /// Whether its stop counts as a failure (for the circuit breaker).
    pub(crate) failed: bool,
    pub(crate) cpu: Option<String>,
    pub(crate) memory: Option<String>,
}

impl Task {
    pub(crate) fn live(&self) -> bool {
        self.desired_status == "RUNNING"
    }

    /// Running and passing every check ECS looks at (container health when the task
    /// definition has one on an essential container, and the load balancer).
    pub(crate) fn healthy(&self, now: f64, used: &BTreeSet<String>, t: &Timing) -> bool {
        if !(self.live() && self.last_status == "RUNNING") {
            return false;
        }
        if self.health_checked && self.health != "HEALTHY" {
            return false;
        }
        self.registrations
            .iter()
            .filter(|r| r.deregistered.is_none())
            .all(|r| target_state(self, r, now, used, t).0 == "healthy")
    }
}

/// A target's state, reason code and description.
pub(crate) fn target_state(
    task: &Task,
    r: &Registration,
    now: f64,
    used: &BTreeSet<String>,
    t: &Timing,
) -> (&'static str, Option<&'static str>, Option<&'static str>) {
    if let Some(at) = r.deregistered {
        if now < at + t.deregistration_delay.as_secs_f64() {
            return (
                "draining",
                Some("Target.DeregistrationInProgress"),
                Some("Target deregistration is in progress"),
            );
        }
        return ("unused", Some("Target.NotRegistered"), None);
    }
    if !used.contains(&r.target_group) {
        return (
            "unused",
            Some("Target.NotInUse"),
            Some("Target group is not configured to receive traffic from the load balancer"),
        );
    }
    let since = task.running_at.unwrap_or(f64::MAX).max(r.since);
    if now < since + t.healthy_after.as_secs_f64() {
        return (
            "initial",
            Some("Elb.InitialHealthChecking"),
            Some("Initial health checks in progress"),
        );
    }
    match task.behavior {
        Behavior::NeverHealthy => (
            "unhealthy",
            Some("Target.ResponseCodeMismatch"),
            Some("Health checks failed with these codes: [503]"),
        ),
        _ => ("healthy", None, None),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub(crate) id: String,
    pub(crate) arn: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub(crate) status: &'static str,
    pub(crate) td: String,
    pub(crate) desired: i64,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub(crate) rollout: &'static str,
    pub(crate) reason: String,
    pub(crate) created: f64,
    pub(crate) updated: f64,
    pub(crate) failed_tasks: i64,
    pub(crate) strategy: String,
    /// Traffic shift plus bake, for blue-green / linear / canary.
    pub(crate) shift_and_bake: f64,
    pub(crate) green_healthy_at: Option<f64>,
    /// The service deployment's status.
    pub(crate) sd_status: &'static str,
    pub(crate) sd_reason: Option<String>,
    pub(crate) source_td: Option<String>,
    pub(crate) finished: Option<f64>,
    pub(crate) rollback: Option<(String, f64, String)>,
    pub(crate) breaker: bool,
    pub(crate) breaker_rollback: bool,
    pub(crate) config: Value,
    /// For a rollback deployment: the service deployment it rolls back.
    pub(crate) rolls_back: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct TaskSet {
    pub(crate) id: String,
    pub(crate) arn: String,
    pub(crate) status: &'static str,
    pub(crate) td: String,
    pub(crate) scale: f64,
    pub(crate) computed: i64,
    pub(crate) load_balancers: Value,
    pub(crate) network: Value,
    pub(crate) launch_type: Option<String>,
    pub(crate) capacity: Value,
    pub(crate) registries: Value,
    pub(crate) external_id: Option<String>,
    pub(crate) client_token: Option<String>,
    pub(crate) stability: &'static str,
    pub(crate) stability_at: f64,
    pub(crate) created: f64,
    pub(crate) updated: f64,
    pub(crate) platform_version: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) arn: String,
    pub(crate) name: String,
    pub(crate) cluster: String,
    pub(crate) controller: Controller,
    pub(crate) desired: i64,
    pub(crate) td: Option<String>,
    pub(crate) load_balancers: Value,
    pub(crate) network: Value,
    pub(crate) launch_type: Option<String>,
    pub(crate) config: Value,
    pub(crate) deployments: Vec<Deployment>,
    pub(crate) task_sets: Vec<TaskSet>,
    pub(crate) events: Vec<(f64, String)>,
    pub(crate) created: f64,
    pub(crate) steady_reported: bool,
    /// What `DescribeServices` shows until the given time instead of the service (see
    /// [`Timing::describe_lag`]).
    pub(crate) shown: Option<(f64, Box<Service>)>,
}

impl Service {
    pub(crate) fn event(&mut self, now: f64, msg: String) {
        self.events
            .insert(0, (now, format!("(service {}) {msg}", self.name)));
        self.events.truncate(100);
    }
}

/// A token bucket on the model clock.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: f64,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) region: String,
    pub(crate) account: String,
    pub(crate) timing: Timing,
    throttle: bool,
    pub(crate) now: f64,
    next_id: u64,
    pub(crate) scripts: Vec<(String, Behavior)>,
    pub(crate) task_defs: HashMap<String, TaskDef>,
    /// Services by (cluster, name).
    pub(crate) services: BTreeMap<(String, String), Service>,
    /// Tasks not yet STOPPED, by ARN: the only tasks a step of the clock visits.
    pub(crate) tasks: BTreeMap<String, Task>,
    /// STOPPED tasks, by ARN, kept for [`Timing::stopped_kept`] as ECS keeps them. Nothing
    /// happens to them any more, so steps leave them alone (a crash loop piles up
    /// hundreds of them in a model hour).
    pub(crate) stopped: BTreeMap<String, Task>,
    /// The ARNs in `tasks` per (cluster, service), oldest first.
    by_service: HashMap<(String, String), Vec<String>>,
    /// The ARNs in `stopped` per (cluster, service), in the order they stopped.
    stopped_by_service: HashMap<(String, String), VecDeque<String>>,
    /// Target groups each listener or rule forwards to, by listener or rule ARN.
    pub(crate) routes: BTreeMap<String, BTreeSet<String>>,
    buckets: HashMap<String, Bucket>,
    pub(crate) calls: CallReport,
    /// Lines containers wrote before they exited, not yet sent to moto's CloudWatch Logs.
    pub(crate) logs: Vec<LogEvent>,
    per_second: HashMap<String, (i64, u64)>,
    /// Tasks the clock's steps have looked at so far (what a step costs).
    pub(crate) task_visits: u64,
}

/// ECS's sustained rate and burst per operation (requests per second), as documented for
/// the ECS API's token buckets; `None`: not throttled by the model.
fn rate(op: &str) -> Option<(f64, f64)> {
    match op {
        "DescribeServices"
        | "DescribeTasks"
        | "ListTasks"
        | "ListServices"
        | "DescribeTaskSets"
        | "ListServiceDeployments"
        | "DescribeServiceDeployments"
        | "DescribeTaskDefinition"
        | "DescribeClusters"
        | "ListTaskDefinitions" => Some((20.0, 50.0)),
        "UpdateService"
        | "CreateService"
        | "DeleteService"
        | "CreateTaskSet"
        | "UpdateTaskSet"
        | "DeleteTaskSet"
        | "UpdateServicePrimaryTaskSet"
        | "StopServiceDeployment"
        | "StopTask" => Some((5.0, 10.0)),
        "RegisterTaskDefinition" | "DeregisterTaskDefinition" => Some((1.0, 10.0)),
        _ => None,
    }
}

/// The circuit breaker's failed-task threshold.
pub(crate) fn breaker_threshold(desired: i64) -> i64 {
    ((desired + 1) / 2).clamp(3, 200)
}

impl State {
    pub(crate) fn new(config: &ModelConfig, now: f64) -> Self {
        State {
            region: config.region.clone(),
            account: config.account.clone(),
            timing: config.timing.clone(),
            throttle: config.throttle,
            now,
            next_id: 1,
            scripts: Vec::new(),
            task_defs: HashMap::new(),
            services: BTreeMap::new(),
            tasks: BTreeMap::new(),
            stopped: BTreeMap::new(),
            by_service: HashMap::new(),
            stopped_by_service: HashMap::new(),
            routes: BTreeMap::new(),
            buckets: HashMap::new(),
            calls: CallReport::default(),
            logs: Vec::new(),
            per_second: HashMap::new(),
            task_visits: 0,
        }
    }

    pub(crate) fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Counts a call; `false` when it is throttled.
    pub(crate) fn admit(&mut self, op: &str) -> bool {
        let now = self.now;
        if self.throttle
            && let Some((per_second, burst)) = rate(op)
        {
            let b = self.buckets.entry(op.to_owned()).or_insert(Bucket {
                tokens: burst,
                at: now,
            });
            b.tokens = (b.tokens + (now - b.at) * per_second).min(burst);
            b.at = now;
            if b.tokens < 1.0 {
                *self.calls.throttled.entry(op.to_owned()).or_default() += 1;
                return false;
            }
            b.tokens -= 1.0;
        }
        *self.calls.calls.entry(op.to_owned()).or_default() += 1;
        let second = now.floor() as i64;
        let slot = self.per_second.entry(op.to_owned()).or_insert((second, 0));
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
        let peak = self.calls.peak_per_second.entry(op.to_owned()).or_default();
        *peak = (*peak).max(slot.1);
        true
    }

    pub(crate) fn behavior(&self, td: &TaskDef) -> Behavior {
        let images: Vec<&str> = td
            .containers
            .iter()
            .filter(|c| c.essential)
            .map(|c| c.image.as_str())
            .collect();
        self.scripts
            .iter()
            .rev()
            .find(|(needle, _)| images.iter().any(|i| i.contains(needle.as_str())))
            .map_or(Behavior::Good, |(_, b)| *b)
    }

    /// Target groups some listener or rule forwards to.
    pub(crate) fn used_groups(&self) -> BTreeSet<String> {
        self.routes.values().flatten().cloned().collect()
    }

    /// Runs the model forward in one-second steps to `now`.
    pub(crate) fn advance_to(&mut self, now: f64) {
        while self.now + 1.0 <= now {
            self.now += 1.0;
            self.step();
        }
    }

    fn step(&mut self) {
        let newly_stopped = self.step_tasks();
        let keys: Vec<(String, String)> = self.services.keys().cloned().collect();
        for key in keys {
            let Some(mut svc) = self.services.remove(&key) else {
                continue;
            };
            match svc.controller {
                Controller::Ecs => self.schedule_ecs(&mut svc),
                Controller::External => self.schedule_external(&mut svc),
            }
            self.services.insert(key, svc);
        }
        // After the schedulers counted this step's failures: the tasks that stopped leave
        // the live list, and those stopped longer than ECS keeps them are forgotten.
        self.set_aside(newly_stopped);
        self.forget_stopped();
    }

    /// Moves tasks that reached STOPPED from the live list to the stopped one.
    fn set_aside(&mut self, arns: Vec<String>) {
        for arn in arns {
            let Some(task) = self.tasks.remove(&arn) else {
                continue;
            };
            let key = (task.cluster.clone(), task.service.clone());
            if let Some(live) = self.by_service.get_mut(&key) {
                live.retain(|a| *a != arn);
            }
            self.stopped_by_service
                .entry(key)
                .or_default()
                .push_back(arn.clone());
            self.stopped.insert(arn, task);
        }
    }

    /// Drops stopped tasks older than [`Timing::stopped_kept`] (each list is in stopping
    /// order, so only its front is looked at).
    fn forget_stopped(&mut self) {
        let kept = self.timing.stopped_kept.as_secs_f64();
        let now = self.now;
        for arns in self.stopped_by_service.values_mut() {
            while let Some(arn) = arns.front() {
                let expired = self
                    .stopped
                    .get(arn)
                    .is_none_or(|t| t.stopped_at.is_none_or(|at| now >= at + kept));
                if !expired {
                    break;
                }
                self.stopped.remove(arn);
                arns.pop_front();
            }
        }
    }

    /// A task, live or stopped, by ARN.
    pub(crate) fn task(&self, arn: &str) -> Option<&Task> {
        self.tasks.get(arn).or_else(|| self.stopped.get(arn))
    }

    /// Every task the model knows: live ones first, then stopped ones.
    pub(crate) fn all_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().chain(self.stopped.values())
    }

    /// Tasks start, pass or fail health checks, crash, and stop. Returns the tasks that
    /// reached STOPPED.
    fn step_tasks(&mut self) -> Vec<String> {
        let now = self.now;
        let used = self.used_groups();
        let t = self.timing.clone();
        let mut newly_stopped = Vec::new();
        self.task_visits += self.tasks.len() as u64;
        for task in self.tasks.values_mut() {
            if task.last_status == "STOPPED" {
                newly_stopped.push(task.arn.clone());
                continue;
            }
            if !task.live() {
                let since = task.stopping_at.unwrap_or(now);
                for r in &mut task.registrations {
                    r.deregistered.get_or_insert(since);
                }
                if now >= since + t.stop.as_secs_f64() {
                    task.last_status = "STOPPED";
                    task.stopped_at = Some(now);
                    task.exit_code
                        .get_or_insert(if task.running_at.is_some() { 143 } else { 0 });
                    newly_stopped.push(task.arn.clone());
                } else {
                    task.last_status = if task.running_at.is_some() {
                        "DEACTIVATING"
                    } else {
                        "STOPPING"
                    };
                }
                continue;
            }
            let Some(running) = task.running_at else {
                if now >= task.created + t.start.as_secs_f64() {
                    task.running_at = Some(now);
                    task.last_status = "RUNNING";
                } else {
                    task.last_status = "PENDING";
                }
                continue;
            };
            let up = now - running;
            let verdict = up >= t.healthy_after.as_secs_f64();
            let exit_at = match task.behavior {
                Behavior::CrashLoop => Some(t.crash_after.as_secs_f64()),
                Behavior::FailsAfter(d) => Some(d.as_secs_f64()),
                _ => None,
            };
            if exit_at.is_some_and(|at| up >= at) {
                // What the crashing container said last, as the awslogs driver ships it.
                for c in task.containers.iter().filter(|c| c.essential) {
                    if let Some((group, prefix)) = &c.awslogs {
                        self.logs.push(LogEvent {
                            group: group.clone(),
                            stream: format!("{prefix}/{}/{}", c.name, short(&task.arn)),
                            message: format!(
                                "fatal: {} cannot start: database unreachable; exiting with code 1",
                                c.name
                            ),
                        });
                    }
                }
                stop(
                    task,
                    now,
                    "EssentialContainerExited",
                    "Essential container in task exited".into(),
                    Some(1),
                    true,
                );
                task.stopping_at = Some(now - t.stop.as_secs_f64()); // it is already down
                continue;
            }
            if task.health_checked {
                task.health = match (verdict, task.behavior) {
                    (false, _) => "UNKNOWN",
                    (true, Behavior::NeverHealthy) => "UNHEALTHY",
                    (true, _) => "HEALTHY",
                };
                if task.health == "UNHEALTHY" {
                    stop(
                        task,
                        now,
                        "ServiceSchedulerInitiated",
                        "Task failed container health checks".into(),
                        None,
                        true,
                    );
                    continue;
                }
            }
            let unhealthy_tg = task
                .registrations
                .iter()
                .filter(|r| r.deregistered.is_none())
                .find(|r| target_state(task, r, now, &used, &t).0 == "unhealthy")
                .map(|r| r.target_group.clone());
            if let Some(tg) = unhealthy_tg {
                stop(
                    task,
                    now,
                    "ServiceSchedulerInitiated",
                    format!("Task failed ELB health checks in (target-group {tg})"),
                    None,
                    true,
                );
            }
        }
        newly_stopped
    }

    pub(crate) fn start_task(
        &mut self,
        cluster: &str,
        service: &str,
        started_by: &str,
        td_arn: &str,
        load_balancers: &Value,
    ) -> Option<String> {
        let td = self.task_defs.get(td_arn)?.clone();
        let n = self.id();
        let id = format!("{n:032x}");
        let arn = format!(
            "arn:aws:ecs:{}:{}:task/{cluster}/{id}",
            self.region, self.account
        );
        let registrations = load_balancers
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|lb| {
                Some(Registration {
                    target_group: lb["targetGroupArn"].as_str()?.to_owned(),
                    port: lb["containerPort"].as_i64().unwrap_or(80),
                    since: self.now,
                    deregistered: None,
                })
            })
            .collect();
        let task = Task {
            arn: arn.clone(),
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            started_by: started_by.to_owned(),
            td: td.arn.clone(),
            behavior: self.behavior(&td),
            health_checked: td.health_checked(),
            containers: td.containers.clone(),
            created: self.now,
            running_at: None,
            stopping_at: None,
            stopped_at: None,
            desired_status: "RUNNING",
            last_status: "PROVISIONING",
            health: "UNKNOWN",
            stop_code: None,
            stopped_reason: None,
            exit_code: None,
            ip: format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
            registrations,
            failed: false,
            cpu: td.cpu.clone(),
            memory: td.memory.clone(),
        };
        self.tasks.insert(arn.clone(), task);
        self.by_service
            .entry((cluster.to_owned(), service.to_owned()))
            .or_default()
            .push(arn.clone());
        Some(arn)
    }

    /// A service's tasks not yet STOPPED (running, starting, or stopping), oldest first.
    pub(crate) fn current_tasks<'a>(
        &'a self,
        cluster: &str,
        service: &str,
    ) -> impl Iterator<Item = &'a Task> + 'a {
        self.by_service
            .get(&(cluster.to_owned(), service.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|a| self.tasks.get(a))
    }

    /// A service's tasks: the current ones, then those stopped within the last hour.
    pub(crate) fn service_tasks<'a>(
        &'a self,
        cluster: &str,
        service: &str,
    ) -> impl Iterator<Item = &'a Task> + 'a {
        let stopped = self
            .stopped_by_service
            .get(&(cluster.to_owned(), service.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|a| self.stopped.get(a));
        self.current_tasks(cluster, service).chain(stopped)
    }

    fn live_tasks(&self, cluster: &str, service: &str, started_by: &str) -> Vec<&Task> {
        self.current_tasks(cluster, service)
            .filter(|t| t.started_by == started_by && t.live())
            .collect()
    }

    /// Stops up to `n` of the given live tasks of `svc`, least healthy and newest first,
    /// and says so in a service event.
    fn stop_some(&mut self, svc: &mut Service, arns: Vec<String>, n: usize, reason: &str) {
        let used = self.used_groups();
        let now = self.now;
        let mut candidates: Vec<(bool, f64, String)> = arns
            .into_iter()
            .filter_map(|a| {
                let t = self.tasks.get(&a)?;
                Some((t.healthy(now, &used, &self.timing), -t.created, a))
            })
            .collect();
        candidates.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let mut stopped = Vec::new();
        for (_, _, arn) in candidates.into_iter().take(n) {
            if let Some(t) = self.tasks.get_mut(&arn) {
                stop(
                    t,
                    now,
                    "ServiceSchedulerInitiated",
                    reason.to_owned(),
                    None,
                    false,
                );
                stopped.push(short(&arn));
            }
        }
        if !stopped.is_empty() {
            svc.event(
                now,
                format!(
                    "has stopped {} running tasks: {}.",
                    stopped.len(),
                    paren(&stopped)
                ),
            );
        }
    }

    fn start_many(&mut self, svc: &mut Service, started_by: &str, td: &str, lbs: &Value, n: i64) {
        let unplaceable = self
            .task_defs
            .get(td)
            .is_some_and(|def| self.behavior(def) == Behavior::Unplaceable);
        if unplaceable && n > 0 {
            // ECS retries placement and repeats the event, at most once a minute here.
            let msg = "was unable to place a task. Reason: Capacity is unavailable at this \
                       time. Please try again later or in a different availability zone.";
            let recent = svc
                .events
                .iter()
                .any(|(at, m)| m.ends_with(msg) && self.now - at < 60.0);
            if !recent {
                svc.event(self.now, msg.into());
            }
            return;
        }
        let mut started = Vec::new();
        for _ in 0..n.max(0) {
            if let Some(arn) = self.start_task(&svc.cluster, &svc.name, started_by, td, lbs) {
                started.push(short(&arn));
            }
        }
        if !started.is_empty() {
            svc.steady_reported = false;
            svc.event(
                self.now,
                format!("has started {} tasks: {}.", started.len(), paren(&started)),
            );
        }
    }

    /// Failed stops since the last step, per `started_by`, counted once.
    fn new_failures(&mut self, svc: &Service) -> HashMap<String, i64> {
        let mut out: HashMap<String, i64> = HashMap::new();
        // Every second for every service: no copies of the task list (it holds an hour of
        // stopped tasks).
        let Some(arns) = self
            .by_service
            .get(&(svc.cluster.clone(), svc.name.clone()))
        else {
            return out;
        };
        for a in arns {
            if let Some(t) = self.tasks.get_mut(a)
                && t.failed
            {
                t.failed = false;
                *out.entry(t.started_by.clone()).or_default() += 1;
            }
        }
        out
    }

    fn schedule_ecs(&mut self, svc: &mut Service) {
        let now = self.now;
        let used = self.used_groups();
        let failures = self.new_failures(svc);
        let lbs = svc.load_balancers.clone();
        let desired = svc.desired;
        // Failed tasks count against the in-progress deployment's circuit breaker.
        let mut rollback_to: Option<(String, String)> = None;
        for d in svc
            .deployments
            .iter_mut()
            .filter(|d| d.status != "INACTIVE")
        {
            let failed = failures.get(&d.id).copied().unwrap_or(0);
            if d.rollout != "IN_PROGRESS" || failed == 0 {
                continue;
            }
            d.failed_tasks += failed;
            if d.breaker && d.failed_tasks >= breaker_threshold(d.desired) {
                d.rollout = "FAILED";
                d.reason = "ECS deployment circuit breaker: tasks failed to start.".into();
                d.updated = now;
                if d.breaker_rollback
                    && let Some(src) = d.source_td.clone()
                {
                    d.sd_status = "ROLLBACK_IN_PROGRESS";
                    d.sd_reason = Some(
                        "Service deployment rolled back because the circuit breaker threshold \
                         was exceeded."
                            .into(),
                    );
                    rollback_to = Some((src, d.arn.clone()));
                } else {
                    d.sd_status = "FAILED";
                    d.sd_reason = Some("Circuit breaker threshold exceeded.".into());
                    d.finished = Some(now);
                }
            }
        }
        let failed_event: Vec<String> = svc
            .deployments
            .iter()
            .filter(|d| d.rollout == "FAILED" && d.updated == now)
            .map(|d| {
                format!(
                    "(deployment {}) deployment failed: tasks failed to start.",
                    d.id
                )
            })
            .collect();
        for e in failed_event {
            svc.event(now, e);
        }
        if let Some((td, failed_arn)) = rollback_to {
            let rb = self.new_deployment(svc, &td, true);
            if let Some(d) = svc.deployments.iter_mut().find(|d| d.id == rb) {
                d.rolls_back = Some(failed_arn.clone());
            }
            let mut failed_id = String::new();
            if let Some(failed) = svc.deployments.iter_mut().find(|d| d.arn == failed_arn) {
                failed.rollback =
                    Some(("circuit breaker threshold exceeded".into(), now, td.clone()));
                failed_id = failed.id.clone();
            }
            svc.event(
                now,
                format!(
                    "(deployment {failed_id}) deployment circuit breaker: rolling back to \
                     deployment {rb} ({}).",
                    short(&td)
                ),
            );
            svc.td = Some(td);
        }
        // PENDING → IN_PROGRESS.
        let pending = self.timing.pending.as_secs_f64();
        for d in &mut svc.deployments {
            if d.sd_status == "PENDING" && now >= d.created + pending {
                d.sd_status = "IN_PROGRESS";
            }
        }
        let Some(pi) = svc.deployments.iter().position(|d| d.status == "PRIMARY") else {
            return;
        };
        let primary = svc.deployments[pi].clone();
        if primary.sd_status == "PENDING" {
            return;
        }
        let (min_pct, max_pct) = (
            svc.config["minimumHealthyPercent"].as_i64().unwrap_or(100),
            svc.config["maximumPercent"].as_i64().unwrap_or(200),
        );
        let new_live: Vec<String> = self
            .live_tasks(&svc.cluster, &svc.name, &primary.id)
            .iter()
            .map(|t| t.arn.clone())
            .collect();
        let new_healthy = new_live
            .iter()
            .filter(|a| self.tasks[*a].healthy(now, &used, &self.timing))
            .count() as i64;
        let old_ids: Vec<String> = svc
            .deployments
            .iter()
            .filter(|d| d.status == "ACTIVE")
            .map(|d| d.id.clone())
            .collect();
        let old_live: Vec<String> = old_ids
            .iter()
            .flat_map(|id| self.live_tasks(&svc.cluster, &svc.name, id))
            .map(|t| t.arn.clone())
            .collect();
        let old_healthy = old_live
            .iter()
            .filter(|a| self.tasks[*a].healthy(now, &used, &self.timing))
            .count() as i64;
        let stopped_failed = primary.rollout == "FAILED" && !primary.breaker_rollback;
        let native = primary.strategy != "ROLLING";
        // Start the new revision's tasks.
        let want_new = desired - new_live.len() as i64;
        if want_new > 0 && !stopped_failed {
            let room = if native || primary.rollout != "IN_PROGRESS" {
                want_new
            } else {
                let max_total = desired * max_pct / 100;
                want_new.min(max_total - new_live.len() as i64 - old_live.len() as i64)
            };
            if room > 0 {
                self.start_many(svc, &primary.id, &primary.td, &lbs, room);
            }
        } else if want_new < 0 {
            self.stop_some(
                svc,
                new_live.clone(),
                (-want_new) as usize,
                "Scaling activity initiated by (deployment)",
            );
        }
        // Blue-green, linear, canary: the shift and the bake start once the whole new
        // revision is healthy.
        if native && new_healthy >= desired {
            svc.deployments[pi].green_healthy_at.get_or_insert(now);
        }
        // Stop the old revisions' tasks.
        if !old_live.is_empty() {
            let n = if native {
                let d = &svc.deployments[pi];
                match d.green_healthy_at {
                    Some(at) if now >= at + d.shift_and_bake => old_live.len(),
                    _ => 0,
                }
            } else {
                let min_healthy = (desired * min_pct + 99) / 100;
                let spare = new_healthy + old_healthy - min_healthy;
                let unhealthy_old = old_live.len() as i64 - old_healthy;
                (spare.max(0) + unhealthy_old).min(old_live.len() as i64) as usize
            };
            if n > 0 {
                self.stop_some(
                    svc,
                    old_live,
                    n,
                    &format!("Scaling activity initiated by (deployment {})", primary.id),
                );
            }
        }
        // Completion: every task of the new revision healthy, nothing else left.
        let old_left = old_ids
            .iter()
            .any(|id| !self.live_tasks(&svc.cluster, &svc.name, id).is_empty());
        let d = &mut svc.deployments[pi];
        if d.rollout == "IN_PROGRESS" && new_healthy >= desired && !old_left {
            let bake_done = !native
                || d.green_healthy_at
                    .is_some_and(|at| now >= at + d.shift_and_bake);
            if bake_done {
                d.rollout = "COMPLETED";
                d.reason = "ECS deployment completed.".into();
                d.updated = now;
                d.finished = Some(now);
                d.sd_status = "SUCCESSFUL";
                let rolled_back = d.rolls_back.clone();
                for o in svc.deployments.iter_mut().filter(|o| o.status == "ACTIVE") {
                    o.status = "INACTIVE";
                    o.finished.get_or_insert(now);
                    if o.sd_status == "IN_PROGRESS" || o.sd_status == "PENDING" {
                        o.sd_status = "STOPPED";
                    }
                }
                if let Some(arn) = rolled_back
                    && let Some(o) = svc.deployments.iter_mut().find(|o| o.arn == arn)
                {
                    o.sd_status = "ROLLBACK_SUCCESSFUL";
                    o.finished = Some(now);
                }
                let id = svc
                    .deployments
                    .iter()
                    .find(|d| d.status == "PRIMARY")
                    .map(|d| d.id.clone())
                    .unwrap_or_default();
                svc.event(now, format!("(deployment {id}) deployment completed."));
            }
        }
        if svc
            .deployments
            .iter()
            .filter(|d| d.status != "INACTIVE")
            .count()
            == 1
            && !svc.steady_reported
            && svc
                .deployments
                .iter()
                .any(|d| d.status == "PRIMARY" && d.rollout == "COMPLETED")
            && new_healthy >= desired
        {
            svc.steady_reported = true;
            svc.event(now, "has reached a steady state.".into());
        }
    }

    /// A new PRIMARY deployment of `td`; the previous primary becomes ACTIVE.
    pub(crate) fn new_deployment(&mut self, svc: &mut Service, td: &str, rollback: bool) -> String {
        let now = self.now;
        let n = self.id();
        let id = format!("ecs-svc/{:019}", n);
        let source = svc
            .deployments
            .iter()
            .filter(|d| d.rollout == "COMPLETED")
            .max_by(|a, b| {
                a.finished
                    .partial_cmp(&b.finished)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|d| d.td.clone());
        for d in svc.deployments.iter_mut().filter(|d| d.status == "PRIMARY") {
            d.status = "ACTIVE";
            if d.rollout == "IN_PROGRESS" && !rollback {
                // Superseded by a newer deployment.
                d.sd_status = "STOPPED";
                d.sd_reason = Some("Superseded by a newer service deployment.".into());
                d.finished = Some(now);
            }
        }
        let config = svc.config.clone();
        let strategy = config["strategy"].as_str().unwrap_or("ROLLING").to_owned();
        let minutes = |v: &Value| v.as_f64().unwrap_or(0.0) * 60.0;
        let bake = minutes(&config["bakeTimeInMinutes"]);
        let shift = match strategy.as_str() {
            "LINEAR" => {
                let step = config["linearConfiguration"]["stepPercent"]
                    .as_f64()
                    .unwrap_or(10.0)
                    .max(0.1);
                // ceil(100 / step) shifts; ECS waits the step bake between them, "not
                // applied after reaching 100 percent traffic" (LinearConfiguration).
                ((100.0 / step).ceil() - 1.0).max(0.0)
                    * minutes(&config["linearConfiguration"]["stepBakeTimeInMinutes"])
            }
            "CANARY" => minutes(&config["canaryConfiguration"]["canaryBakeTimeInMinutes"]),
            _ => 0.0,
        };
        let breaker = &config["deploymentCircuitBreaker"];
        let short_id = id.trim_start_matches("ecs-svc/").to_owned();
        svc.deployments.insert(
            0,
            Deployment {
                arn: format!(
                    "arn:aws:ecs:{}:{}:service-deployment/{}/{}/{short_id}",
                    self.region, self.account, svc.cluster, svc.name
                ),
                id: id.clone(),
                status: "PRIMARY",
                td: td.to_owned(),
                desired: svc.desired,
                rollout: "IN_PROGRESS",
                reason: "ECS deployment in progress.".into(),
                created: now,
                updated: now,
                failed_tasks: 0,
                strategy,
                // A rollback shifts traffic straight back, without a bake.
                shift_and_bake: if rollback { 0.0 } else { shift + bake },
                green_healthy_at: None,
                sd_status: if rollback { "IN_PROGRESS" } else { "PENDING" },
                sd_reason: None,
                source_td: if rollback { None } else { source },
                finished: None,
                rollback: None,
                breaker: breaker["enable"].as_bool().unwrap_or(false),
                breaker_rollback: breaker["rollback"].as_bool().unwrap_or(false),
                config,
                rolls_back: None,
            },
        );
        svc.steady_reported = false;
        id
    }

    fn schedule_external(&mut self, svc: &mut Service) {
        let now = self.now;
        let used = self.used_groups();
        self.new_failures(svc);
        let desired = svc.desired;
        for i in 0..svc.task_sets.len() {
            let ts = svc.task_sets[i].clone();
            let computed = if ts.status == "DRAINING" {
                0
            } else {
                (desired as f64 * ts.scale / 100.0).ceil() as i64
            };
            let live: Vec<String> = self
                .live_tasks(&svc.cluster, &svc.name, &ts.id)
                .iter()
                .map(|t| t.arn.clone())
                .collect();
            let diff = computed - live.len() as i64;
            if diff > 0 {
                self.start_many(svc, &ts.id, &ts.td, &ts.load_balancers, diff);
            } else if diff < 0 {
                self.stop_some(
                    svc,
                    live,
                    (-diff) as usize,
                    &format!("Scaling activity initiated by (deployment {})", ts.id),
                );
            }
            let live: Vec<&Task> = self.live_tasks(&svc.cluster, &svc.name, &ts.id);
            let healthy = live
                .iter()
                .filter(|t| t.healthy(now, &used, &self.timing))
                .count() as i64;
            let stability = if live.len() as i64 == computed && healthy == computed {
                "STEADY_STATE"
            } else {
                "STABILIZING"
            };
            let ts = &mut svc.task_sets[i];
            ts.computed = computed;
            if ts.stability != stability {
                ts.stability = stability;
                ts.stability_at = now;
            }
        }
        // Drained task sets go away once their tasks stopped.
        let (cluster, name) = (svc.cluster.clone(), svc.name.clone());
        svc.task_sets.retain(|ts| {
            ts.status != "DRAINING"
                || self
                    .current_tasks(&cluster, &name)
                    .any(|t| t.started_by == ts.id && t.last_status != "STOPPED")
        });
        let steady = !svc.task_sets.is_empty()
            && svc.task_sets.iter().all(|t| t.stability == "STEADY_STATE");
        if steady && !svc.steady_reported {
            svc.steady_reported = true;
            svc.event(now, "has reached a steady state.".into());
        } else if !steady {
            svc.steady_reported = false;
        }
    }

    pub(crate) fn running_task_definitions(&self, cluster: &str, service: &str) -> Vec<String> {
        self.current_tasks(cluster, service)
            .filter(|t| t.live() && t.last_status == "RUNNING")
            .map(|t| t.td.clone())
            .collect()
    }

    pub(crate) fn steady(&self, cluster: &str, service: &str) -> bool {
        let Some(svc) = self.services.get(&(cluster.to_owned(), service.to_owned())) else {
            return false;
        };
        let used = self.used_groups();
        let live: Vec<&Task> = self
            .current_tasks(cluster, service)
            .filter(|t| t.live())
            .collect();
        let all_healthy = live
            .iter()
            .all(|t| t.healthy(self.now, &used, &self.timing));
        match svc.controller {
            Controller::External => {
                all_healthy
                    && svc
                        .task_sets
                        .iter()
                        .all(|t| t.stability == "STEADY_STATE" && t.status != "DRAINING")
            }
            Controller::Ecs => {
                all_healthy
                    && live.len() as i64 == svc.desired
                    && svc
                        .deployments
                        .iter()
                        .filter(|d| d.status != "INACTIVE")
                        .count()
                        == 1
                    && svc
                        .deployments
                        .iter()
                        .any(|d| d.status == "PRIMARY" && d.rollout == "COMPLETED")
            }
        }
    }
}

/// Marks a task to stop (nothing if it is already stopping).
pub(crate) fn stop(
    task: &mut Task,
    now: f64,
    code: &'static str,
    reason: String,
    exit: Option<i64>,
    failed: bool,
) {
    if !task.live() {
        return;
    }
    task.desired_status = "STOPPED";
    task.stopping_at = Some(now);
    task.stop_code = Some(code);
    task.stopped_reason = Some(reason);
    task.exit_code = exit;
    task.failed = failed;
}

fn short(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_owned()
}

fn paren(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("(task {i})"))
        .collect::<Vec<_>>()
        .join(" ")
}
