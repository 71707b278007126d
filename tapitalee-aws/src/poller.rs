//! The shared, batched poller: every deployment in flight asks it for services and tasks, and
//! it answers them all with as few calls as ECS allows.
//!
//! Requests arriving within one batch window form a round. A round describes the services
//! asked for with `DescribeServices`, 10 per call (per cluster); lists the tasks asked for
//! with `ListTasks`, once per service whoever asks (every fleet of a service shares the
//! listing); describes them with `DescribeTasks`, 100 per call, except tasks already seen
//! STOPPED (a stopped task never changes: described once); and reads the target health of
//! the target groups asked for, one `DescribeTargetHealth` per group. Calls go through the
//! crate's rate limiter and retry layer; they are counted as shared (not attributed to one
//! deployment).
//!
//! `ListTasks` takes one desired status a call, so the running and the stopped tasks are two
//! listings (and `startedBy`, the task set's id, must be ListTasks' only filter: listing per
//! task set would cost more, not less). The running listing is made every round; the stopped
//! one only when a task can have stopped since the last one (see [`Listing`]), because ECS
//! keeps listing stopped tasks for about an hour.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::Client as EcsClient;
use aws_sdk_ecs::types::DesiredStatus;
use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use tapitalee_core::{Error, Resource, Result};
use tokio::sync::oneshot;

use crate::error::AwsError;
use crate::model::{ServiceInfo, TaskInfo};
use crate::retry::CallLayer;

/// DescribeServices takes at most 10 services a call.
pub(crate) const SERVICES_PER_CALL: usize = 10;
/// DescribeTasks takes at most 100 tasks a call.
pub(crate) const TASKS_PER_CALL: usize = 100;

/// A service by cluster and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ServiceKey {
    pub(crate) cluster: String,
    pub(crate) service: String,
}

impl ServiceKey {
    pub(crate) fn new(cluster: impl Into<String>, service: impl Into<String>) -> Self {
        ServiceKey {
            cluster: cluster.into(),
            service: service.into(),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, AwsError>>;

/// The health of a target group's targets: target id (an IP for Fargate tasks) → state and
/// reason.
pub(crate) type Targets = Arc<HashMap<String, (String, Option<String>)>>;

#[derive(Debug, Default)]
struct Round {
    services: BTreeMap<ServiceKey, Vec<Reply<ServiceInfo>>>,
    tasks: BTreeMap<ServiceKey, Vec<Reply<Vec<TaskInfo>>>>,
    /// Task requests that the last listing may answer ([`Poller::tasks_unless`]).
    maybe_tasks: BTreeMap<ServiceKey, Vec<MaybeAsk>>,
    targets: BTreeMap<String, Vec<Reply<Targets>>>,
}

/// Whether a listing still shows what its caller knows from elsewhere.
pub(crate) struct StillTrue(pub(crate) Box<Check>);

type Check = dyn Fn(&[TaskInfo]) -> bool + Send;

/// A task request the last listing may answer, and where the answer goes.
type MaybeAsk = (StillTrue, Reply<Vec<TaskInfo>>);

impl std::fmt::Debug for StillTrue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StillTrue")
    }
}

/// The stopped listing is made at least every this many rounds of a service, whatever the
/// signs say.
const STOPPED_LISTING_EVERY: u32 = 12;

/// A service's last task listings. A task that stopped since the previous round either left
/// the running listing (its ARN is gone), or was started and stopped in between: then the
/// scheduler's replacement is a new ARN in the running listing, or, if it has not started
/// one yet (ECS backs off restarting a failing service), the running listing is short of the
/// service's desired tasks. So the stopped listing is made when the running one changed,
/// when it is short of what the last `DescribeServices` asked for, when a deployment's
/// failed-task count moved, on the first listing, and every [`STOPPED_LISTING_EVERY`] rounds.
#[derive(Debug, Default)]
struct Listing {
    running: BTreeSet<String>,
    stopped: Vec<String>,
    rounds_since_stopped: u32,
    failed_at_stopped: i64,
}

/// The tasks a service should have by its last description (RUNNING listings include
/// PENDING and PROVISIONING tasks), and its deployments' failed-task count.
fn expected_tasks(info: &ServiceInfo) -> (usize, i64) {
    let failed = info
        .deployments
        .iter()
        .map(|d| i64::from(d.failed_tasks))
        .sum();
    let want: i32 = if !info.task_sets.is_empty() {
        info.task_sets.iter().map(|t| t.computed_desired).sum()
    } else if !info.deployments.is_empty() {
        info.deployments.iter().map(|d| d.desired).sum()
    } else {
        info.desired
    };
    (usize::try_from(want).unwrap_or(0), failed)
}

impl Listing {
    /// Whether the stopped tasks must be listed again, given this round's running listing
    /// and the service's last description.
    fn stale(&self, running: &BTreeSet<String>, info: Option<&ServiceInfo>) -> bool {
        if self.rounds_since_stopped + 1 >= STOPPED_LISTING_EVERY || *running != self.running {
            return true;
        }
        match info {
            None => true,
            Some(info) => {
                let (want, failed) = expected_tasks(info);
                running.len() < want || failed != self.failed_at_stopped
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    ecs: EcsClient,
    elb: ElbClient,
    layer: CallLayer,
    window: Duration,
    pending: Mutex<Option<Round>>,
    /// The tasks each service had at its last listing, for probes that need task details
    /// (IPs) of instances the engine already polled, and how many times the listing has
    /// stood in for a new one ([`Poller::reuse_listing`]).
    recent: Mutex<HashMap<ServiceKey, (Vec<TaskInfo>, u32)>>,
    /// Tasks seen STOPPED, by ARN. A stopped task never changes and ECS keeps listing it for
    /// about an hour: it is described once, not at every poll. Bounded by
    /// [`STOPPED_TASKS_KEPT`].
    stopped: Mutex<HashMap<String, TaskInfo>>,
    /// Each service's last listings (bounded by the services configured).
    listings: Mutex<HashMap<ServiceKey, Listing>>,
    /// Each service's last description (bounded by the services configured).
    described: Mutex<HashMap<ServiceKey, ServiceInfo>>,
}

/// How many times in a row a listing may stand in for a new one
/// ([`Poller::reuse_listing`]).
pub(crate) const LISTING_REUSES: u32 = 5;

/// The most stopped tasks remembered; past it the memory starts over (they are described
/// again once, which costs calls, never correctness).
const STOPPED_TASKS_KEPT: usize = 10_000;

/// The poller, shared (cheaply cloned) by everything of one backend.
#[derive(Debug, Clone)]
pub(crate) struct Poller {
    inner: Arc<Inner>,
}

impl Poller {
    pub(crate) fn new(ecs: EcsClient, elb: ElbClient, layer: CallLayer, window: Duration) -> Self {
        Poller {
            inner: Arc::new(Inner {
                ecs,
                elb,
                layer,
                window,
                pending: Mutex::new(None),
                recent: Mutex::new(HashMap::new()),
                stopped: Mutex::new(HashMap::new()),
                listings: Mutex::new(HashMap::new()),
                described: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A service, described in the next round.
    pub(crate) async fn service(&self, key: ServiceKey) -> Result<ServiceInfo> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(|round| round.services.entry(key).or_default().push(tx));
        Self::wait(rx).await
    }

    /// Several services, described in the next round (in the order asked).
    pub(crate) async fn services(&self, keys: &[ServiceKey]) -> Result<Vec<ServiceInfo>> {
        futures::future::try_join_all(keys.iter().map(|k| self.service(k.clone()))).await
    }

    /// A service's running and recently stopped tasks, listed in the next round.
    pub(crate) async fn tasks(&self, key: ServiceKey) -> Result<Vec<TaskInfo>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(|round| round.tasks.entry(key).or_default().push(tx));
        Self::wait(rx).await
    }

    /// A target group's target health, read in the next round (once for everyone asking).
    pub(crate) async fn targets(&self, target_group: &str) -> Result<Targets> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(|round| {
            round
                .targets
                .entry(target_group.to_owned())
                .or_default()
                .push(tx)
        });
        Self::wait(rx).await
    }

    /// The service's tasks from the latest round that listed them, or a new listing.
    pub(crate) async fn recent_tasks(&self, key: &ServiceKey) -> Result<Vec<TaskInfo>> {
        let cached = self
            .inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|(tasks, _)| tasks.clone());
        match cached {
            Some(tasks) => Ok(tasks),
            None => self.tasks(key.clone()).await,
        }
    }

    /// A service's tasks, answered in the next round from the service's last listing when
    /// `still_true` accepts it (a caller that knows from `DescribeServices` that nothing
    /// changed: a task set in `STEADY_STATE` that the listing already shows whole and
    /// healthy), else listed. A listing stands in at most [`LISTING_REUSES`] rounds in a
    /// row; when someone else asks for a new listing of the service in the same round, that
    /// one answers. The answer comes with the round (not at once), so the callers polling in
    /// step stay in step and keep sharing rounds.
    pub(crate) async fn tasks_unless(
        &self,
        key: ServiceKey,
        still_true: StillTrue,
    ) -> Result<Vec<TaskInfo>> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(|round| {
            round
                .maybe_tasks
                .entry(key)
                .or_default()
                .push((still_true, tx))
        });
        Self::wait(rx).await
    }

    async fn wait<T>(rx: oneshot::Receiver<Result<T, AwsError>>) -> Result<T> {
        match rx.await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Transient {
                operation: "poll".into(),
                source: "the poll round ended without an answer (runtime shutting down?)".into(),
            }),
        }
    }

    fn enqueue(&self, add: impl FnOnce(&mut Round)) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        let start = pending.is_none();
        add(pending.get_or_insert_with(Round::default));
        drop(pending);
        if start {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(inner.window).await;
                let round = inner
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_default();
                inner.run(round).await;
            });
        }
    }
}

impl Inner {
    async fn run(&self, round: Round) {
        let Round {
            services,
            mut tasks,
            maybe_tasks,
            targets,
        } = round;
        for (key, asks) in maybe_tasks {
            let asks = match tasks.get_mut(&key) {
                Some(replies) => {
                    replies.extend(asks.into_iter().map(|(_, r)| r));
                    continue;
                }
                None => self.answer_from_last_listing(&key, asks),
            };
            if !asks.is_empty() {
                tasks.entry(key).or_default().extend(asks);
            }
        }
        tracing::trace!(
            services = services.len(),
            task_lists = tasks.len(),
            target_groups = targets.len(),
            "poll round"
        );
        if !services.is_empty() {
            self.describe_services(services).await;
        }
        if !tasks.is_empty() {
            self.list_tasks(tasks).await;
        }
        for (target_group, replies) in targets {
            let answer = self.target_health(&target_group).await;
            send_all(replies, &answer);
        }
    }

    /// Answers `asks` from the service's last listing if every one of them accepts it and it
    /// has not stood in too often; returns the replies still to answer (all or none).
    fn answer_from_last_listing(
        &self,
        key: &ServiceKey,
        asks: Vec<MaybeAsk>,
    ) -> Vec<Reply<Vec<TaskInfo>>> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let reusable = match recent.get_mut(key) {
            Some((tasks, reuses)) if *reuses < LISTING_REUSES => {
                if asks.iter().all(|(still_true, _)| (still_true.0)(tasks)) {
                    *reuses += 1;
                    Some(tasks.clone())
                } else {
                    None
                }
            }
            _ => None,
        };
        drop(recent);
        match reusable {
            Some(tasks) => {
                send_all(asks.into_iter().map(|(_, r)| r).collect(), &Ok(tasks));
                Vec::new()
            }
            None => asks.into_iter().map(|(_, r)| r).collect(),
        }
    }

    async fn target_health(&self, target_group: &str) -> Result<Targets, AwsError> {
        let out = self
            .layer
            .call("DescribeTargetHealth", None, || {
                self.elb
                    .describe_target_health()
                    .target_group_arn(target_group)
                    .send()
            })
            .await
            .map_err(|e| {
                e.not_found_as(
                    Resource::Process,
                    target_group,
                    "the target group does not exist; fix LoadBalancerConfig's target groups",
                )
            })?;
        Ok(Arc::new(
            out.target_health_descriptions()
                .iter()
                .filter_map(|d| {
                    let id = d.target()?.id()?.to_owned();
                    let h = d.target_health()?;
                    let state = h.state().map_or("unknown", |s| s.as_str()).to_owned();
                    let why = h
                        .description()
                        .map(str::to_owned)
                        .or_else(|| h.reason().map(|r| r.as_str().to_owned()));
                    Some((id, (state, why)))
                })
                .collect(),
        ))
    }

    async fn describe_services(&self, wanted: BTreeMap<ServiceKey, Vec<Reply<ServiceInfo>>>) {
        type Wanted = Vec<(String, Vec<Reply<ServiceInfo>>)>;
        let mut by_cluster: BTreeMap<String, Wanted> = BTreeMap::new();
        for (key, replies) in wanted {
            by_cluster
                .entry(key.cluster)
                .or_default()
                .push((key.service, replies));
        }
        for (cluster, services) in by_cluster {
            let mut services = services.into_iter().peekable();
            while services.peek().is_some() {
                let chunk: Vec<_> = services.by_ref().take(SERVICES_PER_CALL).collect();
                let names: Vec<String> = chunk.iter().map(|(s, _)| s.clone()).collect();
                let result = self
                    .layer
                    .call("DescribeServices", None, || {
                        self.ecs
                            .describe_services()
                            .cluster(&cluster)
                            .set_services(Some(names.clone()))
                            .send()
                    })
                    .await;
                match result {
                    Ok(out) => {
                        let found: HashMap<&str, ServiceInfo> = out
                            .services()
                            .iter()
                            .filter(|s| s.status() != Some("INACTIVE"))
                            .flat_map(|s| {
                                let info = ServiceInfo::from(s);
                                [s.service_name(), s.service_arn()]
                                    .into_iter()
                                    .flatten()
                                    .map(move |k| (k, info.clone()))
                            })
                            .collect();
                        for (name, replies) in chunk {
                            let answer = match found.get(name.as_str()) {
                                Some(info) => {
                                    self.described
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .insert(
                                            ServiceKey::new(cluster.clone(), name.clone()),
                                            info.clone(),
                                        );
                                    Ok(info.clone())
                                }
                                None => Err(AwsError::missing(
                                    "DescribeServices",
                                    Resource::Process,
                                    format!("{cluster}/{name}"),
                                    format!(
                                        "ECS service {name:?} does not exist (or is inactive) in \
                                         cluster {cluster:?}; fix ProcessConfig's cluster and \
                                         service"
                                    ),
                                )),
                            };
                            send_all(replies, &answer);
                        }
                    }
                    Err(e) => {
                        for (_, replies) in chunk {
                            send_all(replies, &Err(e.clone()));
                        }
                    }
                }
            }
        }
    }

    async fn list_tasks(&self, wanted: BTreeMap<ServiceKey, Vec<Reply<Vec<TaskInfo>>>>) {
        // 1. Task ARNs per service: running, and stopped when they can have changed.
        let mut arns: BTreeMap<ServiceKey, Result<Vec<String>, AwsError>> = BTreeMap::new();
        for key in wanted.keys() {
            arns.insert(key.clone(), self.task_arns(key).await);
        }
        // 2. DescribeTasks, 100 per call, per cluster, except tasks already seen stopped.
        let mut described: HashMap<String, TaskInfo> = {
            let stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
            arns.values()
                .flat_map(|list| list.iter().flatten())
                .filter_map(|a| stopped.get(a).map(|t| (a.clone(), t.clone())))
                .collect()
        };
        let mut per_cluster: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (key, list) in &arns {
            if let Ok(list) = list {
                per_cluster.entry(key.cluster.as_str()).or_default().extend(
                    list.iter()
                        .filter(|a| !described.contains_key(*a))
                        .map(String::as_str),
                );
            }
        }
        let mut cluster_errors: HashMap<&str, AwsError> = HashMap::new();
        for (cluster, set) in per_cluster {
            let list: Vec<&str> = set.into_iter().collect();
            for chunk in list.chunks(TASKS_PER_CALL) {
                let ids: Vec<String> = chunk.iter().map(|s| (*s).to_owned()).collect();
                let result = self
                    .layer
                    .call("DescribeTasks", None, || {
                        self.ecs
                            .describe_tasks()
                            .cluster(cluster)
                            .set_tasks(Some(ids.clone()))
                            .send()
                    })
                    .await;
                match result {
                    Ok(out) => {
                        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
                        for t in out.tasks() {
                            let info = TaskInfo::from(t);
                            if info.last_status == "STOPPED" {
                                if stopped.len() >= STOPPED_TASKS_KEPT {
                                    stopped.clear();
                                }
                                stopped.insert(info.arn.clone(), info.clone());
                            }
                            described.insert(info.arn.clone(), info);
                        }
                    }
                    Err(e) => {
                        cluster_errors.insert(cluster, e);
                        break;
                    }
                }
            }
        }
        // 3. Answer.
        for (key, replies) in wanted {
            let answer: Result<Vec<TaskInfo>, AwsError> =
                match (&arns[&key], cluster_errors.get(key.cluster.as_str())) {
                    (Err(e), _) | (Ok(_), Some(e)) => Err(e.clone()),
                    (Ok(list), None) => Ok(list
                        .iter()
                        .filter_map(|a| described.get(a).cloned())
                        .collect()),
                };
            if let Ok(tasks) = &answer {
                self.recent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), (tasks.clone(), 0));
            }
            send_all(replies, &answer);
        }
    }

    /// A service's running tasks, listed, and its stopped ones, listed again only when one
    /// can have stopped since the last listing ([`Listing`]).
    async fn task_arns(&self, key: &ServiceKey) -> Result<Vec<String>, AwsError> {
        let running = self.list_task_arns(key, DesiredStatus::Running).await?;
        let running_set: BTreeSet<String> = running.iter().cloned().collect();
        let info = self
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        let previous = {
            let mut listings = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            match listings.get_mut(key) {
                Some(l) if !l.stale(&running_set, info.as_ref()) => {
                    l.rounds_since_stopped += 1;
                    Some(l.stopped.clone())
                }
                _ => None,
            }
        };
        let stopped = match previous {
            Some(stopped) => stopped,
            None => {
                let stopped = self.list_task_arns(key, DesiredStatus::Stopped).await?;
                let failed = info.as_ref().map_or(0, |i| expected_tasks(i).1);
                self.listings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        key.clone(),
                        Listing {
                            running: running_set.clone(),
                            stopped: stopped.clone(),
                            rounds_since_stopped: 0,
                            failed_at_stopped: failed,
                        },
                    );
                stopped
            }
        };
        let mut all = running;
        all.extend(stopped.into_iter().filter(|a| !running_set.contains(a)));
        Ok(all)
    }

    async fn list_task_arns(
        &self,
        key: &ServiceKey,
        status: DesiredStatus,
    ) -> Result<Vec<String>, AwsError> {
        let mut arns = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .layer
                .call("ListTasks", None, || {
                    self.ecs
                        .list_tasks()
                        .cluster(&key.cluster)
                        .service_name(&key.service)
                        .desired_status(status.clone())
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            arns.extend(out.task_arns().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() && Some(t) != token.as_deref() => {
                    token = Some(t.to_owned());
                }
                _ => break,
            }
        }
        Ok(arns)
    }
}

fn send_all<T: Clone>(replies: Vec<Reply<T>>, answer: &Result<T, AwsError>) {
    for r in replies {
        let _ = r.send(answer.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{Deployment, Service};

    fn service(desired: i32, failed: i32) -> ServiceInfo {
        ServiceInfo::from(
            &Service::builder()
                .desired_count(desired)
                .deployments(
                    Deployment::builder()
                        .id("ecs-svc/1")
                        .status("PRIMARY")
                        .desired_count(desired)
                        .failed_tasks(failed)
                        .build(),
                )
                .build(),
        )
    }

    fn set(arns: &[&str]) -> BTreeSet<String> {
        arns.iter().map(|a| (*a).to_owned()).collect()
    }

    /// Each sign that a task can have stopped since the last stopped listing asks for a new
    /// one; none of them, none.
    #[test]
    fn the_stopped_listing_is_stale_on_any_sign_of_a_stopped_task() {
        let last = Listing {
            running: set(&["a", "b"]),
            stopped: vec!["z".into()],
            rounds_since_stopped: 3,
            failed_at_stopped: 0,
        };
        let steady = service(2, 0);
        assert!(!last.stale(&set(&["a", "b"]), Some(&steady)));
        assert!(last.stale(&set(&["a", "c"]), Some(&steady)), "b left");
        assert!(last.stale(&set(&["a"]), Some(&steady)), "b left, short");
        assert!(
            last.stale(&set(&["a", "b"]), Some(&service(3, 0))),
            "short of a desired count that grew"
        );
        assert!(
            last.stale(&set(&["a", "b"]), Some(&service(2, 1))),
            "a deployment counted a failed task"
        );
        assert!(last.stale(&set(&["a", "b"]), None), "never described");
        let old = Listing {
            rounds_since_stopped: STOPPED_LISTING_EVERY - 1,
            ..last
        };
        assert!(
            old.stale(&set(&["a", "b"]), Some(&steady)),
            "every 12th round"
        );
    }
}
