//! ECS operations: services, deployments, task sets, tasks and service deployments are
//! answered by the model; the rest (task definitions, clusters, tags) goes to moto.

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::Shared;
use crate::http::{Answer, forward};
use crate::state::{
    Controller, Deployment, Service, State, Task, TaskDef, TaskSet, stop, target_state,
};

type Reply = Result<Value, (&'static str, String)>;

fn err<T>(kind: &'static str, msg: impl Into<String>) -> Result<T, (&'static str, String)> {
    Err((kind, msg.into()))
}

const MODELLED: &[&str] = &[
    "CreateService",
    "DescribeServices",
    "UpdateService",
    "DeleteService",
    "ListServices",
    "CreateTaskSet",
    "UpdateTaskSet",
    "DeleteTaskSet",
    "DescribeTaskSets",
    "UpdateServicePrimaryTaskSet",
    "ListTasks",
    "DescribeTasks",
    "StopTask",
    "ListServiceDeployments",
    "DescribeServiceDeployments",
    "StopServiceDeployment",
];

pub(crate) async fn call(
    shared: &Shared,
    op: &str,
    method: &hyper::Method,
    path: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Answer {
    if !shared.state().admit(op) {
        return error("ThrottlingException", "Rate exceeded");
    }
    if !MODELLED.contains(&op) {
        return forward(shared, method, path, headers, body).await;
    }
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error("SerializationException", &e.to_string()),
    };
    // Task definitions come from moto, before the state is locked.
    let wanted_td = match op {
        "CreateService" | "UpdateService" | "CreateTaskSet" => input["taskDefinition"].as_str(),
        _ => None,
    };
    let td = match wanted_td {
        Some(td) => match task_def(shared, td).await {
            Ok(def) => Some(def),
            Err(e) => {
                return error(
                    "ClientException",
                    &format!("Unable to describe task definition {td:?}: {e}"),
                );
            }
        },
        None => None,
    };
    let mut s = shared.state();
    if let Some(def) = &td {
        s.task_defs.insert(def.arn.clone(), def.clone());
    }
    let td = td.map(|d| d.arn);
    let out = match op {
        "CreateService" => create_service(&mut s, &input, td),
        "DescribeServices" => describe_services(&s, &input),
        "UpdateService" => update_service(&mut s, &input, td),
        "DeleteService" => delete_service(&mut s, &input),
        "ListServices" => list_services(&s, &input),
        "CreateTaskSet" => create_task_set(&mut s, &input, td),
        "UpdateTaskSet" => update_task_set(&mut s, &input),
        "DeleteTaskSet" => delete_task_set(&mut s, &input),
        "DescribeTaskSets" => describe_task_sets(&s, &input),
        "UpdateServicePrimaryTaskSet" => primary_task_set(&mut s, &input),
        "ListTasks" => list_tasks(&s, &input),
        "DescribeTasks" => describe_tasks(&s, &input),
        "StopTask" => stop_task(&mut s, &input),
        "ListServiceDeployments" => list_service_deployments(&s, &input),
        "DescribeServiceDeployments" => describe_service_deployments(&s, &input),
        "StopServiceDeployment" => stop_service_deployment(&mut s, &input),
        _ => err("UnknownOperationException", op),
    };
    match out {
        Ok(v) => Answer::json(StatusCode::OK, &v),
        Err((kind, msg)) => error(kind, &msg),
    }
}

fn error(kind: &str, msg: &str) -> Answer {
    Answer::json(
        StatusCode::BAD_REQUEST,
        &json!({"__type": kind, "message": msg}),
    )
}

async fn task_def(shared: &Shared, id: &str) -> Result<TaskDef, String> {
    if let Some(def) = shared
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .task_defs
        .get(id)
    {
        return Ok(def.clone());
    }
    let out = shared
        .upstream
        .ecs(
            "DescribeTaskDefinition",
            &json!({"taskDefinition": id}),
            &shared.config.region,
        )
        .await?;
    TaskDef::from_json(&out["taskDefinition"])
        .ok_or_else(|| "no task definition in moto's answer".into())
}

/// A cluster or service name from a name or ARN.
fn name(v: &Value, default: &str) -> String {
    v.as_str()
        .map_or(default, |s| s.rsplit('/').next().unwrap_or(s))
        .to_owned()
}

fn key(input: &Value, field: &str) -> (String, String) {
    (name(&input["cluster"], "default"), name(&input[field], ""))
}

fn service_mut<'a>(
    s: &'a mut State,
    k: &(String, String),
) -> Result<&'a mut Service, (&'static str, String)> {
    s.services
        .get_mut(k)
        .ok_or_else(|| ("ServiceNotFoundException", "Service not found.".to_owned()))
}

fn default_config() -> Value {
    json!({
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": false, "rollback": false},
        "strategy": "ROLLING",
    })
}

fn merge(base: &mut Value, patch: &Value) {
    if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
    }
}

fn create_service(s: &mut State, input: &Value, td: Option<String>) -> Reply {
    let k = (
        name(&input["cluster"], "default"),
        name(&input["serviceName"], ""),
    );
    if k.1.is_empty() {
        return err("InvalidParameterException", "serviceName is required.");
    }
    if s.services.contains_key(&k) {
        return err(
            "InvalidParameterException",
            "Creation of service was not idempotent.",
        );
    }
    let controller = match input["deploymentController"]["type"].as_str() {
        Some("EXTERNAL") => Controller::External,
        None | Some("ECS") => Controller::Ecs,
        Some(other) => {
            return err(
                "InvalidParameterException",
                format!("deployment controller {other} is not modelled"),
            );
        }
    };
    if controller == Controller::Ecs && td.is_none() {
        return err(
            "InvalidParameterException",
            "Task definition is required for the ECS deployment controller.",
        );
    }
    let mut config = default_config();
    merge(&mut config, &input["deploymentConfiguration"]);
    let mut svc = Service {
        arn: format!(
            "arn:aws:ecs:{}:{}:service/{}/{}",
            s.region, s.account, k.0, k.1
        ),
        name: k.1.clone(),
        cluster: k.0.clone(),
        controller,
        desired: input["desiredCount"].as_i64().unwrap_or(0),
        td: td.clone(),
        load_balancers: input["loadBalancers"].clone(),
        network: input["networkConfiguration"].clone(),
        launch_type: input["launchType"].as_str().map(str::to_owned),
        config,
        deployments: Vec::new(),
        task_sets: Vec::new(),
        events: Vec::new(),
        created: s.now,
        steady_reported: false,
        shown: None,
    };
    if let Some(td) = td.filter(|_| controller == Controller::Ecs) {
        s.new_deployment(&mut svc, &td, false);
    }
    let out = json!({"service": service_json(s, &svc)});
    s.services.insert(k, svc);
    Ok(out)
}

fn describe_services(s: &State, input: &Value) -> Reply {
    let names = input["services"].as_array().cloned().unwrap_or_default();
    if names.is_empty() || names.len() > 10 {
        return err(
            "InvalidParameterException",
            format!("services must name 1 to 10 services, got {}", names.len()),
        );
    }
    let cluster = name(&input["cluster"], "default");
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for n in &names {
        match s.services.get(&(cluster.clone(), name(n, ""))) {
            // Eventual consistency: shortly after an update, reads may show the service as
            // it was.
            Some(Service {
                shown: Some((until, before)),
                ..
            }) if s.now < *until => services.push(service_json(s, before)),
            Some(svc) => services.push(service_json(s, svc)),
            None => failures.push(json!({"arn": n, "reason": "MISSING"})),
        }
    }
    Ok(json!({"services": services, "failures": failures}))
}

fn update_service(s: &mut State, input: &Value, td: Option<String>) -> Reply {
    let k = key(input, "service");
    let mut svc = service_mut(s, &k)?.clone();
    if svc.controller == Controller::External && td.is_some() {
        return err(
            "InvalidParameterException",
            "Unable to update task definition on services with a deployment controller type of EXTERNAL.",
        );
    }
    if let Some(n) = input["desiredCount"].as_i64() {
        if n < 0 {
            return err("InvalidParameterException", "desiredCount must be >= 0.");
        }
        svc.desired = n;
        for d in svc.deployments.iter_mut().filter(|d| d.status == "PRIMARY") {
            d.desired = n;
        }
        // A task set whose computed count changes is not steady until it has it.
        let now = s.now;
        for ts in &mut svc.task_sets {
            let computed = (n as f64 * ts.scale / 100.0).ceil() as i64;
            if ts.status != "DRAINING" && computed != ts.computed {
                ts.computed = computed;
                ts.stability = "STABILIZING";
                ts.stability_at = now;
            }
        }
    }
    merge(&mut svc.config, &input["deploymentConfiguration"]);
    let force = input["forceNewDeployment"].as_bool().unwrap_or(false);
    let changed = td.as_ref().is_some_and(|t| svc.td.as_ref() != Some(t));
    if svc.controller == Controller::Ecs && (changed || force) {
        let lag = s.timing.describe_lag.as_secs_f64();
        if lag > 0.0 {
            let mut before = s.services[&k].clone();
            before.shown = None;
            svc.shown = Some((s.now + lag, Box::new(before)));
        }
        let td = td.or(svc.td.clone()).unwrap_or_default();
        svc.td = Some(td.clone());
        s.new_deployment(&mut svc, &td, false);
    }
    let out = json!({"service": service_json(s, &svc)});
    s.services.insert(k, svc);
    Ok(out)
}

fn delete_service(s: &mut State, input: &Value) -> Reply {
    let k = key(input, "service");
    let svc = service_mut(s, &k)?.clone();
    if svc.desired > 0 && !input["force"].as_bool().unwrap_or(false) {
        return err(
            "InvalidParameterException",
            "The service cannot be stopped while it is scaled above 0.",
        );
    }
    let now = s.now;
    for t in s
        .tasks
        .values_mut()
        .filter(|t| t.cluster == k.0 && t.service == k.1)
    {
        stop(
            t,
            now,
            "ServiceSchedulerInitiated",
            "Service deleted".into(),
            None,
            false,
        );
    }
    let out = json!({"service": service_json(s, &svc)});
    s.services.remove(&k);
    Ok(out)
}

fn list_services(s: &State, input: &Value) -> Reply {
    let cluster = name(&input["cluster"], "default");
    let arns: Vec<&str> = s
        .services
        .values()
        .filter(|v| v.cluster == cluster)
        .map(|v| v.arn.as_str())
        .collect();
    Ok(json!({"serviceArns": arns}))
}

fn create_task_set(s: &mut State, input: &Value, td: Option<String>) -> Reply {
    let k = key(input, "service");
    let svc = service_mut(s, &k)?;
    if svc.controller != Controller::External {
        return err(
            "InvalidParameterException",
            "Amazon ECS only supports task sets on services configured to use the EXTERNAL deployment controller.",
        );
    }
    let Some(td) = td else {
        return err("InvalidParameterException", "taskDefinition is required.");
    };
    let token = input["clientToken"].as_str().map(str::to_owned);
    if let Some(existing) = token.as_ref().and_then(|t| {
        svc.task_sets
            .iter()
            .find(|ts| ts.client_token.as_ref() == Some(t))
    }) {
        let existing = existing.clone();
        let svc = svc.clone();
        return Ok(json!({"taskSet": task_set_json(s, &svc, &existing)}));
    }
    if input["launchType"].is_string()
        && input["capacityProviderStrategy"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    {
        return err(
            "InvalidParameterException",
            "Specifying both a launch type and capacity provider strategy is not supported.",
        );
    }
    let scale = scale_of(&input["scale"])?;
    let (cluster, service, desired) = (svc.cluster.clone(), svc.name.clone(), svc.desired);
    let n = s.id();
    let id = format!("ecs-svc/{n:019}");
    let now = s.now;
    let ts = TaskSet {
        arn: format!(
            "arn:aws:ecs:{}:{}:task-set/{cluster}/{service}/{id}",
            s.region, s.account
        ),
        id,
        status: "ACTIVE",
        td,
        scale,
        computed: (desired as f64 * scale / 100.0).ceil() as i64,
        load_balancers: input["loadBalancers"].clone(),
        network: input["networkConfiguration"].clone(),
        launch_type: input["launchType"].as_str().map(str::to_owned),
        capacity: input["capacityProviderStrategy"].clone(),
        registries: input["serviceRegistries"].clone(),
        external_id: input["externalId"].as_str().map(str::to_owned),
        client_token: token,
        stability: "STABILIZING",
        stability_at: now,
        created: now,
        updated: now,
        platform_version: input["platformVersion"].as_str().map(str::to_owned),
    };
    let svc = service_mut(s, &k)?;
    svc.task_sets.push(ts.clone());
    let svc = svc.clone();
    Ok(json!({"taskSet": task_set_json(s, &svc, &ts)}))
}

fn scale_of(v: &Value) -> Result<f64, (&'static str, String)> {
    if v.is_null() {
        return Ok(100.0);
    }
    let value = v["value"].as_f64().unwrap_or(100.0);
    if !(0.0..=100.0).contains(&value) {
        return err(
            "InvalidParameterException",
            format!("scale value {value} must be 0 to 100."),
        );
    }
    Ok(value)
}

fn find_task_set<'a>(
    svc: &'a mut Service,
    id: &str,
) -> Result<&'a mut TaskSet, (&'static str, String)> {
    svc.task_sets
        .iter_mut()
        .find(|t| (t.id == id || t.arn == id) && t.status != "DRAINING")
        .ok_or_else(|| {
            (
                "TaskSetNotFoundException",
                "The specified task set does not exist.".to_owned(),
            )
        })
}

fn update_task_set(s: &mut State, input: &Value) -> Reply {
    let k = key(input, "service");
    let scale = scale_of(&input["scale"])?;
    let now = s.now;
    let svc = service_mut(s, &k)?;
    let desired = svc.desired;
    let ts = find_task_set(svc, input["taskSet"].as_str().unwrap_or(""))?;
    let computed = (desired as f64 * scale / 100.0).ceil() as i64;
    if computed != ts.computed {
        ts.stability = "STABILIZING";
        ts.stability_at = now;
    }
    ts.scale = scale;
    ts.computed = computed;
    ts.updated = now;
    let ts = ts.clone();
    let svc = svc.clone();
    Ok(json!({"taskSet": task_set_json(s, &svc, &ts)}))
}

fn delete_task_set(s: &mut State, input: &Value) -> Reply {
    let k = key(input, "service");
    let now = s.now;
    let force = input["force"].as_bool().unwrap_or(false);
    let svc = service_mut(s, &k)?;
    let ts = find_task_set(svc, input["taskSet"].as_str().unwrap_or(""))?;
    if ts.status == "PRIMARY" && !force {
        return err(
            "InvalidParameterException",
            "Cannot delete the primary task set without force.",
        );
    }
    ts.status = "DRAINING";
    ts.updated = now;
    ts.stability = "STABILIZING";
    ts.stability_at = now;
    let ts = ts.clone();
    let svc = svc.clone();
    Ok(json!({"taskSet": task_set_json(s, &svc, &ts)}))
}

fn describe_task_sets(s: &State, input: &Value) -> Reply {
    let k = key(input, "service");
    let svc = s
        .services
        .get(&k)
        .ok_or(("ServiceNotFoundException", "Service not found.".to_owned()))?;
    let wanted: Vec<&str> = input["taskSets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let sets: Vec<Value> = svc
        .task_sets
        .iter()
        .filter(|t| wanted.is_empty() || wanted.iter().any(|w| *w == t.id || *w == t.arn))
        .map(|t| task_set_json(s, svc, t))
        .collect();
    Ok(json!({"taskSets": sets, "failures": []}))
}

fn primary_task_set(s: &mut State, input: &Value) -> Reply {
    let k = key(input, "service");
    let now = s.now;
    let svc = service_mut(s, &k)?;
    let id = input["primaryTaskSet"].as_str().unwrap_or("").to_owned();
    find_task_set(svc, &id)?;
    for t in svc.task_sets.iter_mut() {
        if t.id == id || t.arn == id {
            t.status = "PRIMARY";
            t.updated = now;
        } else if t.status == "PRIMARY" {
            t.status = "ACTIVE";
            t.updated = now;
        }
    }
    let svc = svc.clone();
    let ts = svc
        .task_sets
        .iter()
        .find(|t| t.status == "PRIMARY")
        .cloned();
    Ok(json!({"taskSet": ts.map(|t| task_set_json(s, &svc, &t))}))
}

fn list_tasks(s: &State, input: &Value) -> Reply {
    let cluster = name(&input["cluster"], "default");
    let service = input["serviceName"].as_str().map(|n| name(&json!(n), ""));
    let started_by = input["startedBy"].as_str();
    let status = input["desiredStatus"].as_str().unwrap_or("RUNNING");
    let max = input["maxResults"].as_u64().unwrap_or(100) as usize;
    if !(1..=100).contains(&max) {
        return err("InvalidParameterException", "maxResults must be 1 to 100.");
    }
    if let Some(svc) = &service
        && !s.services.contains_key(&(cluster.clone(), svc.clone()))
    {
        return err("ServiceNotFoundException", "Service not found.");
    }
    let mut all: Vec<&Task> = s
        .all_tasks()
        .filter(|t| t.cluster == cluster)
        .filter(|t| service.as_ref().is_none_or(|n| &t.service == n))
        .filter(|t| started_by.is_none_or(|b| t.started_by == b))
        .filter(|t| t.desired_status == status)
        .collect();
    // Pages follow one order (creation: task ids grow), whichever list a task is in.
    all.sort_by(|a, b| a.arn.cmp(&b.arn));
    let start: usize = input["nextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page: Vec<&str> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|t| t.arn.as_str())
        .collect();
    let mut out = json!({"taskArns": page});
    if start + max < all.len() {
        out["nextToken"] = json!((start + max).to_string());
    }
    Ok(out)
}

fn describe_tasks(s: &State, input: &Value) -> Reply {
    let ids = input["tasks"].as_array().cloned().unwrap_or_default();
    if ids.is_empty() || ids.len() > 100 {
        return err(
            "InvalidParameterException",
            format!("tasks must name 1 to 100 tasks, got {}", ids.len()),
        );
    }
    let cluster = name(&input["cluster"], "default");
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for id in &ids {
        let id = id.as_str().unwrap_or("");
        let found = s.task(id).or_else(|| {
            s.all_tasks()
                .find(|t| t.arn.ends_with(&format!("/{id}")) && t.cluster == cluster)
        });
        match found {
            Some(t) => tasks.push(task_json(s, t)),
            None => failures.push(json!({"arn": id, "reason": "MISSING"})),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

fn stop_task(s: &mut State, input: &Value) -> Reply {
    let id = input["task"].as_str().unwrap_or("").to_owned();
    let now = s.now;
    let reason = input["reason"]
        .as_str()
        .unwrap_or("Task stopped by user")
        .to_owned();
    let Some(t) = s
        .tasks
        .values_mut()
        .chain(s.stopped.values_mut())
        .find(|t| t.arn == id || t.arn.ends_with(&format!("/{id}")))
    else {
        return err(
            "InvalidParameterException",
            "The referenced task was not found.",
        );
    };
    stop(t, now, "UserInitiated", reason, None, false);
    let t = t.clone();
    Ok(json!({"task": task_json(s, &t)}))
}

fn find_deployment<'a>(s: &'a State, arn: &str) -> Option<(&'a Service, &'a Deployment)> {
    s.services.values().find_map(|svc| {
        svc.deployments
            .iter()
            .find(|d| d.arn == arn)
            .map(|d| (svc, d))
    })
}

fn list_service_deployments(s: &State, input: &Value) -> Reply {
    let k = key(input, "service");
    let svc = s
        .services
        .get(&k)
        .ok_or(("ServiceNotFoundException", "Service not found.".to_owned()))?;
    let statuses: Vec<&str> = input["status"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let max = input["maxResults"].as_u64().unwrap_or(20) as usize;
    if !(1..=100).contains(&max) {
        return err("InvalidParameterException", "maxResults must be 1 to 100.");
    }
    let mut all: Vec<&Deployment> = svc
        .deployments
        .iter()
        .filter(|d| statuses.is_empty() || statuses.contains(&d.sd_status))
        .collect();
    all.sort_by(|a, b| {
        b.created
            .partial_cmp(&a.created)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let start: usize = input["nextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|d| {
            let mut b = json!({
                "serviceDeploymentArn": d.arn,
                "serviceArn": svc.arn,
                "clusterArn": cluster_arn(s, &svc.cluster),
                "createdAt": d.created,
                "startedAt": d.created,
                "status": d.sd_status,
                "targetServiceRevisionArn": revision_arn(svc, d),
            });
            if let Some(r) = &d.sd_reason {
                b["statusReason"] = json!(r);
            }
            if let Some(f) = d.finished {
                b["finishedAt"] = json!(f);
            }
            b
        })
        .collect();
    let mut out = json!({"serviceDeployments": page});
    if start + max < all.len() {
        out["nextToken"] = json!((start + max).to_string());
    }
    Ok(out)
}

fn describe_service_deployments(s: &State, input: &Value) -> Reply {
    let arns = input["serviceDeploymentArns"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if arns.is_empty() || arns.len() > 20 {
        return err(
            "InvalidParameterException",
            "serviceDeploymentArns must name 1 to 20 deployments.",
        );
    }
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for a in &arns {
        let a = a.as_str().unwrap_or("");
        match find_deployment(s, a) {
            Some((svc, d)) => {
                let mut v = json!({
                    "serviceDeploymentArn": d.arn,
                    "serviceArn": svc.arn,
                    "clusterArn": cluster_arn(s, &svc.cluster),
                    "createdAt": d.created,
                    "startedAt": d.created,
                    "updatedAt": d.updated,
                    "status": d.sd_status,
                    "targetServiceRevision": {"arn": revision_arn(svc, d), "requestedTaskCount": d.desired},
                    "sourceServiceRevisions": d.source_td.as_ref().map(|td| vec![json!({"arn": format!("{}:{}", svc.arn, td.rsplit(':').next().unwrap_or(""))})]).unwrap_or_default(),
                    "deploymentConfiguration": d.config,
                    "deploymentCircuitBreaker": {
                        "status": if !d.breaker { "DISABLED" } else if d.rollout == "FAILED" { "TRIGGERED" } else { "MONITORING" },
                        "failureCount": d.failed_tasks,
                        "threshold": crate::state::breaker_threshold(d.desired),
                    },
                });
                if let Some(r) = &d.sd_reason {
                    v["statusReason"] = json!(r);
                }
                if let Some(f) = d.finished {
                    v["finishedAt"] = json!(f);
                }
                if let Some((reason, at, _)) = &d.rollback {
                    v["rollback"] = json!({"reason": reason, "startedAt": at});
                }
                found.push(v);
            }
            None => failures.push(json!({"arn": a, "reason": "MISSING"})),
        }
    }
    Ok(json!({"serviceDeployments": found, "failures": failures}))
}

fn stop_service_deployment(s: &mut State, input: &Value) -> Reply {
    let arn = input["serviceDeploymentArn"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let stop_type = input["stopType"].as_str().unwrap_or("ROLLBACK").to_owned();
    let Some((svc, d)) = find_deployment(s, &arn) else {
        return err(
            "ServiceDeploymentNotFoundException",
            format!("Service deployment {arn} not found."),
        );
    };
    if !matches!(d.sd_status, "PENDING" | "IN_PROGRESS") {
        return err(
            "InvalidParameterException",
            format!(
                "The service deployment is {} and can't be stopped.",
                d.sd_status
            ),
        );
    }
    let k = (svc.cluster.clone(), svc.name.clone());
    let mut svc = svc.clone();
    let now = s.now;
    let source = d.source_td.clone();
    let d = svc
        .deployments
        .iter_mut()
        .find(|d| d.arn == arn)
        .ok_or(("ServiceDeploymentNotFoundException", arn.clone()))?;
    d.rollout = "FAILED";
    d.updated = now;
    match (stop_type.as_str(), source) {
        ("ROLLBACK", Some(src)) => {
            d.sd_status = "ROLLBACK_IN_PROGRESS";
            d.sd_reason = Some("Service deployment stopped by user; rolling back.".into());
            d.reason = "Service deployment stopped (ROLLBACK) by user.".into();
            d.rollback = Some(("StopServiceDeployment ROLLBACK".into(), now, src.clone()));
            svc.td = Some(src.clone());
            let rb = s.new_deployment(&mut svc, &src, true);
            if let Some(r) = svc.deployments.iter_mut().find(|x| x.id == rb) {
                r.rolls_back = Some(arn.clone());
            }
        }
        ("ROLLBACK", None) => {
            return err(
                "InvalidParameterException",
                "There is no previous service revision to roll back to.",
            );
        }
        _ => {
            d.sd_status = "STOPPED";
            d.sd_reason = Some("Service deployment stopped by user.".into());
            d.reason = "Service deployment stopped (ABORT) by user.".into();
            d.finished = Some(now);
        }
    }
    s.services.insert(k, svc);
    Ok(json!({"serviceDeploymentArn": arn}))
}

fn cluster_arn(s: &State, cluster: &str) -> String {
    format!("arn:aws:ecs:{}:{}:cluster/{cluster}", s.region, s.account)
}

fn revision_arn(svc: &Service, d: &Deployment) -> String {
    format!("{}:{}", svc.arn, d.id.trim_start_matches("ecs-svc/"))
}

fn counts(s: &State, svc: &Service, started_by: &str) -> (i64, i64) {
    let live: Vec<&Task> = s
        .current_tasks(&svc.cluster, &svc.name)
        .filter(|t| t.started_by == started_by && t.live())
        .collect();
    let running = live.iter().filter(|t| t.last_status == "RUNNING").count() as i64;
    (running, live.len() as i64 - running)
}

fn service_json(s: &State, svc: &Service) -> Value {
    let deployments: Vec<Value> = svc
        .deployments
        .iter()
        .filter(|d| d.status != "INACTIVE")
        .map(|d| {
            let (running, pending) = counts(s, svc, &d.id);
            json!({
                "id": d.id,
                "status": d.status,
                "taskDefinition": d.td,
                "desiredCount": if d.status == "PRIMARY" { d.desired } else { 0 },
                "runningCount": running,
                "pendingCount": pending,
                "failedTasks": d.failed_tasks,
                "createdAt": d.created,
                "updatedAt": d.updated,
                "launchType": svc.launch_type,
                "networkConfiguration": svc.network,
                "rolloutState": d.rollout,
                "rolloutStateReason": d.reason,
            })
        })
        .collect();
    let task_sets: Vec<Value> = svc
        .task_sets
        .iter()
        .map(|t| task_set_json(s, svc, t))
        .collect();
    let (running, pending): (i64, i64) = s
        .current_tasks(&svc.cluster, &svc.name)
        .filter(|t| t.live())
        .fold((0, 0), |(r, p), t| {
            if t.last_status == "RUNNING" {
                (r + 1, p)
            } else {
                (r, p + 1)
            }
        });
    let events: Vec<Value> = svc
        .events
        .iter()
        .enumerate()
        .map(|(i, (at, msg))| json!({"id": format!("{i}-{at}"), "createdAt": at, "message": msg}))
        .collect();
    let mut v = json!({
        "serviceArn": svc.arn,
        "serviceName": svc.name,
        "clusterArn": cluster_arn(s, &svc.cluster),
        "status": "ACTIVE",
        "desiredCount": svc.desired,
        "runningCount": running,
        "pendingCount": pending,
        "deploymentController": {"type": match svc.controller { Controller::Ecs => "ECS", Controller::External => "EXTERNAL" }},
        "deployments": deployments,
        "taskSets": task_sets,
        "events": events,
        "createdAt": svc.created,
        "schedulingStrategy": "REPLICA",
    });
    if svc.controller == Controller::Ecs {
        if let Some(d) = svc.deployments.iter().find(|d| d.status == "PRIMARY") {
            v["currentServiceDeployment"] = json!(d.arn);
        }
        v["deploymentConfiguration"] = svc.config.clone();
        if let Some(td) = &svc.td {
            v["taskDefinition"] = json!(td);
        }
    }
    for (k, val) in [
        ("loadBalancers", &svc.load_balancers),
        ("networkConfiguration", &svc.network),
    ] {
        if !val.is_null() {
            v[k] = val.clone();
        }
    }
    if let Some(l) = &svc.launch_type {
        v["launchType"] = json!(l);
    }
    v
}

fn task_set_json(s: &State, svc: &Service, t: &TaskSet) -> Value {
    let (running, pending) = counts(s, svc, &t.id);
    let mut v = json!({
        "id": t.id,
        "taskSetArn": t.arn,
        "serviceArn": svc.arn,
        "clusterArn": cluster_arn(s, &svc.cluster),
        "status": t.status,
        "taskDefinition": t.td,
        "computedDesiredCount": t.computed,
        "runningCount": running,
        "pendingCount": pending,
        "createdAt": t.created,
        "updatedAt": t.updated,
        "scale": {"value": t.scale, "unit": "PERCENT"},
        "stabilityStatus": t.stability,
        "stabilityStatusAt": t.stability_at,
        "startedBy": "tapitalee-ecs-model",
    });
    for (k, val) in [
        ("loadBalancers", &t.load_balancers),
        ("networkConfiguration", &t.network),
        ("capacityProviderStrategy", &t.capacity),
        ("serviceRegistries", &t.registries),
    ] {
        if !val.is_null() {
            v[k] = val.clone();
        }
    }
    for (k, val) in [
        ("launchType", &t.launch_type),
        ("externalId", &t.external_id),
        ("platformVersion", &t.platform_version),
    ] {
        if let Some(x) = val {
            v[k] = json!(x);
        }
    }
    v
}

fn task_json(s: &State, t: &Task) -> Value {
    let stopped = t.last_status == "STOPPED";
    let containers: Vec<Value> = t
        .containers
        .iter()
        .map(|c| {
            let mut v = json!({
                "containerArn": format!("{}/{}", t.arn.replace(":task/", ":container/"), c.name),
                "taskArn": t.arn,
                "name": c.name,
                "image": c.image,
                "lastStatus": if stopped { "STOPPED" } else if t.running_at.is_some() { "RUNNING" } else { "PENDING" },
                "healthStatus": if c.health_check { t.health } else { "UNKNOWN" },
                "networkInterfaces": [{"attachmentId": "eni-attach", "privateIpv4Address": t.ip}],
            });
            if stopped && t.running_at.is_some() {
                // Essential containers carry the task's exit; others were stopped with it.
                v["exitCode"] = json!(if c.essential { t.exit_code.unwrap_or(143) } else { 143 });
            }
            v
        })
        .collect();
    let mut v = json!({
        "taskArn": t.arn,
        "clusterArn": cluster_arn(s, &t.cluster),
        "taskDefinitionArn": t.td,
        "startedBy": t.started_by,
        "group": format!("service:{}", t.service),
        "lastStatus": t.last_status,
        "desiredStatus": t.desired_status,
        "healthStatus": if t.health_checked { t.health } else { "UNKNOWN" },
        "containers": containers,
        "attachments": [{
            "id": "eni",
            "type": "ElasticNetworkInterface",
            "status": if stopped { "DELETED" } else { "ATTACHED" },
            "details": [{"name": "privateIPv4Address", "value": t.ip}],
        }],
        "createdAt": t.created,
        "launchType": "FARGATE",
        "version": 1,
    });
    if let Some(c) = &t.cpu {
        v["cpu"] = json!(c);
    }
    if let Some(m) = &t.memory {
        v["memory"] = json!(m);
    }
    for (k, val) in [
        ("startedAt", t.running_at),
        ("stoppingAt", t.stopping_at),
        ("stoppedAt", t.stopped_at),
    ] {
        if let Some(x) = val {
            v[k] = json!(x);
        }
    }
    if let Some(c) = t.stop_code {
        v["stopCode"] = json!(c);
    }
    if let Some(r) = &t.stopped_reason {
        v["stoppedReason"] = json!(r);
    }
    v
}

/// A target's IP, port, state, reason code and description.
pub(crate) type TargetRow = (
    String,
    i64,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

/// DescribeTargetHealth's members for a target group, from the tasks registered in it.
pub(crate) fn target_health(s: &State, target_group: &str) -> Vec<TargetRow> {
    let used = s.used_groups();
    let mut out = Vec::new();
    for t in s.all_tasks() {
        for r in t
            .registrations
            .iter()
            .filter(|r| r.target_group == target_group)
        {
            let (state, reason, desc) = target_state(t, r, s.now, &used, &s.timing);
            if r.deregistered.is_some() && state == "unused" {
                continue; // deregistered and drained: gone
            }
            out.push((t.ip.clone(), r.port, state, reason, desc));
        }
    }
    out
}

pub(crate) fn debug(s: &State, cluster: &str, service: &str) -> String {
    let Some(svc) = s.services.get(&(cluster.to_owned(), service.to_owned())) else {
        return format!("no service {cluster}/{service}");
    };
    let mut v = service_json(s, svc);
    v["events"] = json!(
        svc.events
            .iter()
            .take(12)
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>()
    );
    let mut out = format!(
        "t={:.0} {}",
        s.now,
        serde_json::to_string_pretty(&v).unwrap_or_default()
    );
    for t in s.service_tasks(cluster, service) {
        out.push_str(&format!(
            "\ntask {} by {} td {} {}/{} health {} created {:.0} {:?} {:?}",
            t.arn.rsplit('/').next().unwrap_or(""),
            t.started_by,
            t.td.rsplit('/').next().unwrap_or(""),
            t.last_status,
            t.desired_status,
            t.health,
            t.created - s.now,
            t.stop_code,
            t.stopped_reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Behavior, ContainerDef};
    use crate::{ModelConfig, Timing};

    /// A model state at `t = 0` with one crash-looping task definition.
    fn crash_loop_state() -> (State, String) {
        let mut config = ModelConfig::new("http://127.0.0.1:1");
        config.throttle = false;
        config.timing = Timing::default();
        let mut s = State::new(&config, 0.0);
        let td = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1".to_owned();
        s.task_defs.insert(
            td.clone(),
            TaskDef {
                arn: td.clone(),
                containers: vec![ContainerDef {
                    name: "web".into(),
                    image: "repo/web:crash".into(),
                    essential: true,
                    health_check: false,
                    awslogs: None,
                }],
                cpu: None,
                memory: None,
            },
        );
        s.scripts.push(("crash".into(), Behavior::CrashLoop));
        (s, td)
    }

    #[test]
    fn steps_visit_live_tasks_only_and_stopped_ones_stay_listed_for_an_hour() {
        let (mut s, td) = crash_loop_state();
        create_service(
            &mut s,
            &json!({"cluster": "c", "serviceName": "web", "desiredCount": 4}),
            Some(td),
        )
        .unwrap();
        // Each task lives ~20 s (10 s start, 5 s up, 5 s stop): 30 model minutes leave
        // hundreds of stopped tasks behind.
        s.advance_to(1800.0);
        let stopped = list(&s, "STOPPED");
        assert!(stopped.len() > 200, "{} stopped", stopped.len());
        assert!(list(&s, "RUNNING").len() <= 4);
        // The next minute costs what the live tasks cost, not the stopped pile: at most
        // the desired tasks plus those stopping, per step.
        let before = s.task_visits;
        s.advance_to(1860.0);
        let per_step = (s.task_visits - before) as f64 / 60.0;
        assert!(per_step <= 8.0, "a step visited {per_step} tasks");
        // Stopped tasks are still described and listed, in creation order across pages.
        let first = stopped[0].clone();
        let out = describe_tasks(&s, &json!({"cluster": "c", "tasks": [first]})).unwrap();
        assert_eq!(out["tasks"][0]["lastStatus"], "STOPPED", "{out}");
        assert_eq!(out["tasks"][0]["stopCode"], "EssentialContainerExited");
        let mut sorted = stopped.clone();
        sorted.sort();
        assert_eq!(stopped, sorted);
        // An hour after they stopped, ECS forgets them.
        s.advance_to(1800.0 + 3600.0 + 60.0);
        let later = list(&s, "STOPPED");
        assert!(!later.contains(&first), "{first} still listed");
        assert!(!later.is_empty());
        let out = describe_tasks(&s, &json!({"cluster": "c", "tasks": [first]})).unwrap();
        assert_eq!(out["failures"][0]["reason"], "MISSING", "{out}");
    }

    /// A linear deployment waits its step bake between shifts, not after the last one
    /// (ECS's `LinearConfiguration`: "not applied after reaching 100 percent traffic"),
    /// then the deployment bake: 25 % steps are 4 shifts, 3 step waits.
    #[test]
    fn a_linear_deployment_waits_between_steps_only() {
        let (mut s, td) = crash_loop_state();
        let shift_and_bake = |s: &mut State, name: &str, config: Value| {
            create_service(
                s,
                &json!({"cluster": "c", "serviceName": name, "desiredCount": 1,
                        "deploymentConfiguration": config}),
                Some(td.clone()),
            )
            .unwrap();
            s.services[&("c".to_owned(), name.to_owned())].deployments[0].shift_and_bake
        };
        let linear = |step: f64| {
            json!({"strategy": "LINEAR", "bakeTimeInMinutes": 5,
                   "linearConfiguration": {"stepPercent": step, "stepBakeTimeInMinutes": 2}})
        };
        assert_eq!(shift_and_bake(&mut s, "l25", linear(25.0)), 11.0 * 60.0);
        // 30 % steps: 30, 60, 90, 100: still 3 waits.
        assert_eq!(shift_and_bake(&mut s, "l30", linear(30.0)), 11.0 * 60.0);
        // One step of 100 %: no step wait at all.
        assert_eq!(shift_and_bake(&mut s, "l100", linear(100.0)), 5.0 * 60.0);
        let canary = json!({"strategy": "CANARY", "bakeTimeInMinutes": 1,
            "canaryConfiguration": {"canaryPercent": 10, "canaryBakeTimeInMinutes": 10}});
        assert_eq!(shift_and_bake(&mut s, "c", canary), 11.0 * 60.0);
    }

    /// A task set is STABILIZING until its computed count of tasks runs and passes its
    /// checks, then STEADY_STATE; a change of the service's desired count that moves its
    /// computed count makes it STABILIZING again at once (ECS's `stabilityStatus`).
    #[test]
    fn task_set_stability_follows_its_tasks_and_its_computed_count() {
        let (mut s, td) = crash_loop_state();
        s.scripts.clear(); // good tasks
        create_service(
            &mut s,
            &json!({"cluster": "c", "serviceName": "x", "desiredCount": 2,
                    "deploymentController": {"type": "EXTERNAL"}}),
            None,
        )
        .unwrap();
        let ts = create_task_set(
            &mut s,
            &json!({"cluster": "c", "service": "x", "scale": {"value": 50, "unit": "PERCENT"}}),
            Some(td),
        )
        .unwrap();
        let id = ts["taskSet"]["id"].as_str().unwrap().to_owned();
        let read = |s: &State| {
            let v = describe_task_sets(s, &json!({"cluster": "c", "service": "x"})).unwrap();
            let t = v["taskSets"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == json!(id))
                .unwrap()
                .clone();
            (
                t["stabilityStatus"].as_str().unwrap().to_owned(),
                t["computedDesiredCount"].as_i64().unwrap(),
                t["runningCount"].as_i64().unwrap(),
            )
        };
        assert_eq!(read(&s).0, "STABILIZING");
        // 10 s to start, no health check: steady once its one task runs.
        s.advance_to(5.0);
        assert_eq!(read(&s), ("STABILIZING".into(), 1, 0));
        s.advance_to(15.0);
        assert_eq!(read(&s), ("STEADY_STATE".into(), 1, 1));
        update_service(
            &mut s,
            &json!({"cluster": "c", "service": "x", "desiredCount": 4}),
            None,
        )
        .unwrap();
        assert_eq!(read(&s), ("STABILIZING".into(), 2, 1));
        s.advance_to(30.0);
        assert_eq!(read(&s), ("STEADY_STATE".into(), 2, 2));
    }

    /// Every task ARN ListTasks gives for the service and desired status, page by page.
    fn list(s: &State, status: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut input = json!({"cluster": "c", "serviceName": "web", "desiredStatus": status});
            if let Some(t) = &token {
                input["nextToken"] = json!(t);
            }
            let page = list_tasks(s, &input).unwrap();
            for a in page["taskArns"].as_array().unwrap() {
                out.push(a.as_str().unwrap().to_owned());
            }
            match page["nextToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => return out,
            }
        }
    }
}
