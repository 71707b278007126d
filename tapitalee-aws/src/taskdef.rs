//! Task definitions: reading them (cached: a revision never changes) and registering a copy of
//! the live one with only the image changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ecs::types::{
    ContainerDefinition, LogDriver, Tag, TaskDefinition, TaskDefinitionField,
};
use tapitalee_core::{
    AppName, DeployContext, DeploymentId, Error, ImageRef, Resource, Result, Revision,
};

use crate::backend::Shared;
use crate::error::unexpected;

/// Tag keys Tapitalee puts on the revisions it registers.
pub(crate) const TAG_DEPLOYMENT: &str = "tapitalee:deployment";
pub(crate) const TAG_INITIATOR: &str = "tapitalee:initiator";
pub(crate) const TAG_IMAGE: &str = "tapitalee:image";

/// A described task definition and its tags.
#[derive(Debug)]
pub(crate) struct TaskDef {
    pub(crate) def: TaskDefinition,
    pub(crate) tags: Vec<Tag>,
}

impl TaskDef {
    pub(crate) fn arn(&self) -> &str {
        self.def.task_definition_arn().unwrap_or_default()
    }

    /// The container a deployment changes: the configured one, else the first essential one.
    pub(crate) fn main_container(&self, configured: Option<&str>) -> Result<&ContainerDefinition> {
        let containers = self.def.container_definitions();
        let found = match configured {
            Some(name) => containers.iter().find(|c| c.name() == Some(name)),
            None => containers
                .iter()
                .find(|c| c.essential() != Some(false))
                .or(containers.first()),
        };
        found.ok_or_else(|| {
            let names: Vec<&str> = containers.iter().filter_map(|c| c.name()).collect();
            Error::not_found(
                Resource::Revision,
                format!("{} container {}", self.arn(), configured.unwrap_or("(any)")),
                format!(
                    "its containers are: {}; fix ProcessConfig::container",
                    names.join(", ")
                ),
            )
        })
    }

    /// The image the main container runs.
    pub(crate) fn image(&self, configured: Option<&str>) -> Result<ImageRef> {
        let c = self.main_container(configured)?;
        let image = c.image().unwrap_or_default();
        image.parse().map_err(|e| {
            Error::platform(
                "read the live task definition",
                format!("container {:?} of {} runs {image:?}, which is not an image reference Tapitalee understands: {e}", c.name().unwrap_or_default(), self.arn()),
            )
        })
    }

    /// What judging this revision's tasks needs to know of its containers.
    pub(crate) fn containers(&self) -> Containers {
        let essential: Vec<&aws_sdk_ecs::types::ContainerDefinition> = self
            .def
            .container_definitions()
            .iter()
            // ECS's default: a container is essential unless it says otherwise.
            .filter(|c| c.essential().unwrap_or(true))
            .collect();
        Containers {
            essential: essential
                .iter()
                .filter_map(|c| c.name())
                .map(str::to_owned)
                .collect(),
            // ECS derives task health from the essential containers only: a health check on a
            // sidecar alone leaves the task's health UNKNOWN for good.
            health_check: essential.iter().any(|c| c.health_check().is_some()),
        }
    }

    /// The `awslogs` group, stream prefix and container name of the main container.
    pub(crate) fn awslogs(
        &self,
        configured: Option<&str>,
    ) -> Result<(String, Option<String>, String)> {
        let c = self.main_container(configured)?;
        let name = c.name().unwrap_or_default().to_owned();
        let log = c
            .log_configuration()
            .filter(|l| *l.log_driver() == LogDriver::Awslogs)
            .and_then(|l| l.options());
        let group = log
            .and_then(|o| o.get("awslogs-group"))
            .cloned()
            .ok_or_else(|| {
                Error::platform(
                    "find the process's logs",
                    format!(
                        "container {name:?} of {} does not log to CloudWatch Logs; give it an \
                     awslogs log configuration with awslogs-group",
                        self.arn()
                    ),
                )
            })?;
        let prefix = log.and_then(|o| o.get("awslogs-stream-prefix")).cloned();
        Ok((group, prefix, name))
    }
}

/// Described task definitions by ARN.
/// What judging a revision's tasks needs to know of its containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Containers {
    /// The essential containers' names: a task stops when one of them exits.
    pub(crate) essential: Vec<String>,
    /// Whether an essential container defines a health check (so "UNKNOWN" health means
    /// "not yet").
    pub(crate) health_check: bool,
}

/// Described task definitions by ARN (a revision is immutable: described once), the ones
/// this backend registered included. Bounded by [`TASK_DEFS_KEPT`]: past it the memory starts
/// over, which costs a `DescribeTaskDefinition` again, never correctness.
#[derive(Debug, Default)]
pub(crate) struct TaskDefCache {
    map: Mutex<HashMap<String, Arc<TaskDef>>>,
    /// Names being described now (removed once answered).
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The most task definitions remembered.
pub(crate) const TASK_DEFS_KEPT: usize = 1_000;

impl TaskDefCache {
    fn get(&self, arn: &str) -> Option<Arc<TaskDef>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(arn)
            .cloned()
    }

    fn insert(&self, td: Arc<TaskDef>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TASK_DEFS_KEPT {
            map.clear();
        }
        map.insert(td.arn().to_owned(), td);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Shared {
    /// A task definition (ARN, or family for its latest revision), cached by ARN.
    pub(crate) async fn task_def(
        &self,
        app: &AppName,
        name: &str,
        deployment: Option<DeploymentId>,
    ) -> Result<Arc<TaskDef>> {
        if let Some(td) = self.task_defs.get(name) {
            return Ok(td);
        }
        // One describe per name at a time: callers asking concurrently (a deployment reads
        // the live revision for `current` and `prepare` at once) wait for the first one.
        let gate = self
            .task_defs
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        if let Some(td) = self.task_defs.get(name) {
            return Ok(td);
        }
        let result = self.describe_task_def(app, name, deployment).await;
        let mut inflight = self
            .task_defs
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if inflight.get(name).is_some_and(|g| Arc::ptr_eq(g, &gate)) {
            inflight.remove(name);
        }
        result
    }

    async fn describe_task_def(
        &self,
        app: &AppName,
        name: &str,
        deployment: Option<DeploymentId>,
    ) -> Result<Arc<TaskDef>> {
        let ecs = &self.clients(app).ecs;
        let out = self
            .layer
            .call("DescribeTaskDefinition", deployment, || {
                ecs.describe_task_definition()
                    .task_definition(name)
                    .include(TaskDefinitionField::Tags)
                    .send()
            })
            .await
            .map_err(|e| {
                e.not_found_as(
                    Resource::Revision,
                    name,
                    "register the task definition, or fix ProcessConfig::task_family",
                )
            })?;
        let def = out.task_definition().cloned().ok_or_else(|| {
            unexpected(
                "DescribeTaskDefinition",
                format!("no task definition {name}"),
            )
        })?;
        let td = Arc::new(TaskDef {
            def,
            tags: out.tags().to_vec(),
        });
        // Cached by its ARN only when asked by ARN: a family name means its latest revision,
        // which changes.
        if td.arn() == name || name.starts_with("arn:") && name.contains(':') {
            self.task_defs.insert(td.clone());
        }
        Ok(td)
    }

    /// Registers a copy of `base` whose main container runs `image` (by digest), tagged with
    /// the deployment and its initiator.
    pub(crate) async fn register_copy(
        &self,
        base: &TaskDef,
        container: Option<&str>,
        image: &ImageRef,
        meta: &DeployContext,
    ) -> Result<Revision> {
        if image.digest.is_none() {
            return Err(Error::invalid(
                "image",
                image.to_string(),
                "must be resolved to a digest before a revision is prepared \
                 (ImageRegistry::resolve); a tag can move, a digest cannot",
            ));
        }
        let main = base.main_container(container)?.name().map(str::to_owned);
        let containers = copy_containers(base.def.container_definitions(), main.as_deref(), image);
        let tags = copy_tags(&base.tags, meta, image);
        let d = &base.def;
        let family = d.family().ok_or_else(|| {
            unexpected(
                "DescribeTaskDefinition",
                "the live task definition has no family",
            )
        })?;
        let ecs = &self.clients(&meta.target.app).ecs;
        let out = self
            .layer
            .call("RegisterTaskDefinition", Some(meta.deployment), || {
                ecs.register_task_definition()
                    .family(family)
                    .set_task_role_arn(d.task_role_arn().map(str::to_owned))
                    .set_execution_role_arn(d.execution_role_arn().map(str::to_owned))
                    .set_network_mode(d.network_mode().cloned())
                    .set_container_definitions(Some(containers.clone()))
                    .set_volumes(non_empty(d.volumes()))
                    .set_placement_constraints(non_empty(d.placement_constraints()))
                    .set_requires_compatibilities(non_empty(d.requires_compatibilities()))
                    .set_cpu(d.cpu().map(str::to_owned))
                    .set_memory(d.memory().map(str::to_owned))
                    .set_tags(Some(tags.clone()))
                    .set_pid_mode(d.pid_mode().cloned())
                    .set_ipc_mode(d.ipc_mode().cloned())
                    .set_proxy_configuration(d.proxy_configuration().cloned())
                    .set_ephemeral_storage(d.ephemeral_storage().cloned())
                    .set_runtime_platform(d.runtime_platform().cloned())
                    .set_enable_fault_injection(d.enable_fault_injection())
                    .send()
            })
            .await?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| unexpected("RegisterTaskDefinition", "no ARN in the answer"))?
            .to_owned();
        if let Some(def) = out.task_definition() {
            // The answer is the whole new revision: judging its tasks needs no describe. Its
            // tags are the ones sent (not every implementation echoes them).
            self.task_defs.insert(Arc::new(TaskDef {
                def: def.clone(),
                tags: if out.tags().is_empty() {
                    tags.clone()
                } else {
                    out.tags().to_vec()
                },
            }));
        }
        tracing::info!(revision = %arn, image = %image, "registered task definition");
        Ok(Revision {
            id: arn,
            image: image.clone(),
        })
    }
}

fn non_empty<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// An ECS tag value: at most 256 of letters, digits, spaces and `_ . : / = + - @`.
pub(crate) fn tag_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

/// The most tags a task definition takes.
const MAX_TAGS: usize = 50;

/// The live containers with the new image (pinned by digest) in the main container and in
/// every other container that runs an image of the same repository (a migration or worker
/// sidecar built from the app's image); sidecars of other images are left as they are.
fn copy_containers(
    live: &[ContainerDefinition],
    main: Option<&str>,
    image: &ImageRef,
) -> Vec<ContainerDefinition> {
    let pinned = image.pinned();
    live.iter()
        .map(|c| {
            let is_main = c.name().is_some() && c.name() == main;
            let same_repository = c
                .image()
                .and_then(|i| i.parse::<ImageRef>().ok())
                .is_some_and(|i| i.repository == image.repository);
            let mut c = c.clone();
            if is_main || same_repository {
                c.image = Some(pinned.clone());
            }
            c
        })
        .collect()
}

/// The live task definition's tags with ours (deployment, initiator, image) set, without the
/// `aws:` tags AWS manages itself (it refuses them), and within the 50-tag limit (the live
/// definition's own tags are kept first come, first kept).
fn copy_tags(live: &[Tag], meta: &DeployContext, image: &ImageRef) -> Vec<Tag> {
    let ours = [
        (TAG_DEPLOYMENT, meta.deployment.to_string()),
        (TAG_INITIATOR, tag_value(meta.initiator.as_str())),
        (TAG_IMAGE, tag_value(&image.to_string())),
    ];
    let mut tags: Vec<Tag> = live
        .iter()
        .filter(|t| !matches!(t.key(), Some(TAG_DEPLOYMENT | TAG_INITIATOR | TAG_IMAGE)))
        .filter(|t| !t.key().is_some_and(|k| k.starts_with("aws:")))
        .cloned()
        .collect();
    let room = MAX_TAGS - ours.len();
    if tags.len() > room {
        let dropped: Vec<&str> = tags[room..].iter().filter_map(|t| t.key()).collect();
        tracing::warn!(
            ?dropped,
            "the live task definition has more tags than a copy can keep"
        );
        tags.truncate(room);
    }
    for (k, v) in ours {
        tags.push(Tag::builder().key(k).value(v).build());
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache of described revisions is bounded: past the limit it starts over.
    #[test]
    fn the_task_definition_cache_is_bounded() {
        let cache = TaskDefCache::default();
        for i in 0..=TASK_DEFS_KEPT + 5 {
            let arn = format!("arn:aws:ecs:us-east-1:1:task-definition/web:{i}");
            cache.insert(Arc::new(TaskDef {
                def: TaskDefinition::builder().task_definition_arn(&arn).build(),
                tags: Vec::new(),
            }));
            assert!(cache.len() <= TASK_DEFS_KEPT);
            assert!(cache.get(&arn).is_some(), "the newest is kept");
        }
    }

    #[test]
    fn tag_values_are_sanitized() {
        assert_eq!(
            tag_value("github-actions[bot] (run 42)"),
            "github-actions_bot_ _run 42_"
        );
        assert_eq!(tag_value("john.doe@example.com"), "john.doe@example.com");
        assert_eq!(tag_value(&"x".repeat(300)).len(), 256);
    }

    /// ECS derives a task's health from its essential containers only: a health check on a
    /// sidecar alone must not make "UNKNOWN" mean "not healthy yet" (every task would stay
    /// pending until the deadline).
    #[test]
    fn only_essential_containers_count() {
        use aws_sdk_ecs::types::{ContainerDefinition, HealthCheck};
        let check = || {
            HealthCheck::builder()
                .command("CMD-SHELL")
                .command("true")
                .build()
                .unwrap()
        };
        let def = |sidecar_checked: bool, app_checked: bool| TaskDef {
            def: TaskDefinition::builder()
                .container_definitions(
                    ContainerDefinition::builder()
                        .name("app")
                        .set_health_check(app_checked.then(check))
                        .build(),
                )
                .container_definitions(
                    ContainerDefinition::builder()
                        .name("envoy")
                        .essential(false)
                        .set_health_check(sidecar_checked.then(check))
                        .build(),
                )
                .build(),
            tags: Vec::new(),
        };
        let c = def(true, false).containers();
        assert_eq!(c.essential, ["app"], "essential unless it says otherwise");
        assert!(!c.health_check, "a sidecar's health check does not count");
        assert!(def(false, true).containers().health_check);
    }

    fn meta() -> DeployContext {
        DeployContext::new(
            tapitalee_core::DeploymentId::new(),
            tapitalee_core::Initiator::new("ci").unwrap(),
            tapitalee_core::Target::new("shop".parse().unwrap(), "default".parse().unwrap()),
        )
    }

    fn image() -> ImageRef {
        format!(
            "123.dkr.ecr.us-east-1.amazonaws.com/shop:v2@sha256:{}",
            "a".repeat(64)
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn every_container_of_the_app_image_gets_the_new_one() {
        let c = |name: &str, image: &str| {
            ContainerDefinition::builder()
                .name(name)
                .image(image)
                .build()
        };
        let live = [
            c("app", "123.dkr.ecr.us-east-1.amazonaws.com/shop:v1"),
            c("migrate", "123.dkr.ecr.us-east-1.amazonaws.com/shop:v1"),
            c("envoy", "public.ecr.aws/envoy/envoy:v1.30"),
        ];
        let got = copy_containers(&live, Some("app"), &image());
        let pinned = image().pinned();
        assert_eq!(got[0].image(), Some(pinned.as_str()));
        assert_eq!(
            got[1].image(),
            Some(pinned.as_str()),
            "a container of the app's image"
        );
        assert_eq!(
            got[2].image(),
            Some("public.ecr.aws/envoy/envoy:v1.30"),
            "a sidecar"
        );
    }

    #[test]
    fn tags_leave_out_aws_ones_and_fit_the_limit() {
        let tag = |k: String| Tag::builder().key(k).value("v").build();
        let mut live: Vec<Tag> = (0..60).map(|i| tag(format!("team-{i}"))).collect();
        live.insert(0, tag("aws:cloudformation:stack-name".into()));
        live.push(tag(TAG_DEPLOYMENT.into()));
        let got = copy_tags(&live, &meta(), &image());
        assert_eq!(got.len(), MAX_TAGS);
        assert!(got.iter().all(|t| !t.key().unwrap().starts_with("aws:")));
        let deployment_tags = got
            .iter()
            .filter(|t| t.key() == Some(TAG_DEPLOYMENT))
            .count();
        assert_eq!(deployment_tags, 1, "ours replace the live ones");
        assert_eq!(
            got[0].key(),
            Some("team-0"),
            "the live tags come first, in order"
        );
    }
}
