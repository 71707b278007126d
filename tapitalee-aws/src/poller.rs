//! The shared, batched poller: every deployment in flight asks it for services and tasks, and
//! it answers them all with as few calls as ECS allows.
//!
//! Requests arriving within one batch window form a round. A round describes the services
//! asked for with `DescribeServices`, 10 per call (per cluster), and the tasks asked for with
//! `ListTasks` (running and recently stopped, per service) then `DescribeTasks`, 100 per call.
//! Calls go through the crate's rate limiter and retry layer; they are counted as shared (not
//! attributed to one deployment).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::Client as EcsClient;
use aws_sdk_ecs::types::DesiredStatus;
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

#[derive(Debug, Default)]
struct Round {
    services: BTreeMap<ServiceKey, Vec<Reply<ServiceInfo>>>,
    tasks: BTreeMap<ServiceKey, Vec<Reply<Vec<TaskInfo>>>>,
}

#[derive(Debug)]
struct Inner {
    ecs: EcsClient,
    layer: CallLayer,
    window: Duration,
    pending: Mutex<Option<Round>>,
    /// The tasks each service had at its last listing, for probes that need task details
    /// (IPs) of instances the engine already polled.
    recent: Mutex<HashMap<ServiceKey, Vec<TaskInfo>>>,
    /// Tasks seen STOPPED, by ARN. A stopped task never changes and ECS keeps listing it for
    /// about an hour: it is described once, not at every poll. Bounded by
    /// [`STOPPED_TASKS_KEPT`].
    stopped: Mutex<HashMap<String, TaskInfo>>,
}

/// The most stopped tasks remembered; past it the memory starts over (they are described
/// again once, which costs calls, never correctness).
const STOPPED_TASKS_KEPT: usize = 10_000;

/// The poller, shared (cheaply cloned) by everything of one backend.
#[derive(Debug, Clone)]
pub(crate) struct Poller {
    inner: Arc<Inner>,
}

impl Poller {
    pub(crate) fn new(ecs: EcsClient, layer: CallLayer, window: Duration) -> Self {
        Poller {
            inner: Arc::new(Inner {
                ecs,
                layer,
                window,
                pending: Mutex::new(None),
                recent: Mutex::new(HashMap::new()),
                stopped: Mutex::new(HashMap::new()),
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

    /// The service's tasks from the latest round that listed them, or a new listing.
    pub(crate) async fn recent_tasks(&self, key: &ServiceKey) -> Result<Vec<TaskInfo>> {
        let cached = self
            .inner
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        match cached {
            Some(tasks) => Ok(tasks),
            None => self.tasks(key.clone()).await,
        }
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
        let Round { services, tasks } = round;
        tracing::trace!(
            services = services.len(),
            task_lists = tasks.len(),
            "poll round"
        );
        if !services.is_empty() {
            self.describe_services(services).await;
        }
        if !tasks.is_empty() {
            self.list_tasks(tasks).await;
        }
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
                                Some(info) => Ok(info.clone()),
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
        // 1. Task ARNs per service (running and stopped).
        let mut arns: BTreeMap<ServiceKey, Result<Vec<String>, AwsError>> = BTreeMap::new();
        for key in wanted.keys() {
            let mut all = Vec::new();
            let mut failed = None;
            for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
                match self.list_task_arns(key, status).await {
                    Ok(mut v) => all.append(&mut v),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            arns.insert(key.clone(), failed.map_or(Ok(all), Err));
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
                    .insert(key.clone(), tasks.clone());
            }
            send_all(replies, &answer);
        }
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
