//! Reading `tapit.toml` into the configuration types, collecting every problem with its key
//! path instead of stopping at the first.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::{
    AppConfig, Behavior, CanaryStepConfig, DockerSettings, GateConfig, History, LoadBalancer,
    Platform, ProcessConfig, SimConfig, SimImage, StrategyConfig, StrategyKind,
};
use crate::words::closest;

/// Accumulates problems while reading the file.
#[derive(Debug, Default)]
pub(super) struct Check {
    pub(super) problems: Vec<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    v.type_str()
}

impl Check {
    pub(super) fn problem(&mut self, path: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{path}: {message}"));
    }

    pub(super) fn keys(&mut self, t: &Table, path: &str, allowed: &[&str]) {
        for key in t.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = closest(key, allowed)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                self.problem(
                    &join(path, key),
                    format!("unknown key{hint}; valid keys here: {}", allowed.join(", ")),
                );
            }
        }
    }

    pub(super) fn table<'a>(&mut self, v: &'a Value, path: &str) -> Option<&'a Table> {
        match v {
            Value::Table(t) => Some(t),
            other => {
                self.problem(path, format!("expected a table, found a {}", kind(other)));
                None
            }
        }
    }

    pub(super) fn string(&mut self, t: &Table, path: &str, key: &str) -> Option<String> {
        match t.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::String(_) => {
                self.problem(&join(path, key), "must not be empty");
                None
            }
            other => {
                self.problem(
                    &join(path, key),
                    format!("expected a string, found a {}", kind(other)),
                );
                None
            }
        }
    }

    fn strings(&mut self, t: &Table, path: &str, key: &str) -> Vec<String> {
        match t.get(key) {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        self.problem(
                            &format!("{}[{i}]", join(path, key)),
                            format!("expected a string, found a {}", kind(other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                self.problem(
                    &join(path, key),
                    format!("expected an array of strings, found a {}", kind(other)),
                );
                Vec::new()
            }
        }
    }

    fn boolean(&mut self, t: &Table, path: &str, key: &str) -> Option<bool> {
        match t.get(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                self.problem(
                    &join(path, key),
                    format!("expected true or false, found a {}", kind(other)),
                );
                None
            }
        }
    }

    fn integer(&mut self, t: &Table, path: &str, key: &str, min: i64, max: i64) -> Option<i64> {
        match t.get(key)? {
            Value::Integer(n) if (min..=max).contains(n) => Some(*n),
            Value::Integer(n) => {
                self.problem(
                    &join(path, key),
                    format!("{n} is out of range {min}..={max}"),
                );
                None
            }
            other => {
                self.problem(
                    &join(path, key),
                    format!("expected an integer, found a {}", kind(other)),
                );
                None
            }
        }
    }

    fn duration(&mut self, t: &Table, path: &str, key: &str) -> Option<Duration> {
        let s = self.string(t, path, key)?;
        match humantime::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    &join(path, key),
                    format!("{s:?} is not a duration ({e}); e.g. \"30s\", \"10m\""),
                );
                None
            }
        }
    }

    fn choice<T>(
        &mut self,
        t: &Table,
        path: &str,
        key: &str,
        names: &[&str],
        from: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(t, path, key)?;
        let found = from(&s);
        if found.is_none() {
            let hint = closest(&s, names)
                .map(|c| format!(" (did you mean {c:?}?)"))
                .unwrap_or_default();
            self.problem(
                &join(path, key),
                format!("{s:?} is not one of: {}{hint}", names.join(", ")),
            );
        }
        found
    }

    /// `history`: `"sqlite"`, `"dynamodb:TABLE"`, or a path to a SQLite file. Anything
    /// that looks like another store (`"dynamodb"` without a table, `"dynamo:t"`) is refused
    /// rather than taken for a file name.
    pub(super) fn history(&mut self, t: &Table, path: &str, base: &Path) -> Option<History> {
        let s = self.string(t, path, "history")?;
        let key = join(path, "history");
        if s == "sqlite" {
            return Some(History::DefaultSqlite);
        }
        if let Some(table) = s.strip_prefix("dynamodb:") {
            return match tapitalee::aws::DynamoStore::check_table_name(table) {
                Ok(()) => Some(History::DynamoDb(table.to_owned())),
                Err(_) => {
                    self.problem(
                        &key,
                        format!(
                            "{table:?} is not a valid DynamoDB table name: use 3-255 characters \
                             of a-z, A-Z, 0-9, '_', '-' and '.', e.g. history = \
                             \"dynamodb:tapit-history\""
                        ),
                    );
                    None
                }
            };
        }
        let scheme = s.split_once(':').map(|(scheme, _)| scheme);
        if s == "dynamodb" || scheme.is_some_and(|p| !p.contains('/')) {
            let hint = closest(scheme.unwrap_or(&s), &["dynamodb", "sqlite"])
                .map(|c| format!(" (did you mean {c:?}?)"))
                .unwrap_or_default();
            self.problem(
                &key,
                format!(
                    "{s:?} is not a history store{hint}: use \"sqlite\" (a file in your data \
                     directory), \"dynamodb:TABLE\" (e.g. \"dynamodb:tapit-history\"), or a path \
                     to a SQLite file"
                ),
            );
            return None;
        }
        Some(History::Sqlite(base.join(s)))
    }

    pub(super) fn app(
        &mut self,
        name: &str,
        t: &Table,
        path: &str,
        history: &History,
        base: &Path,
    ) -> Option<AppConfig> {
        let before = self.problems.len();
        if tapitalee::AppName::new(name).is_err() {
            self.problem(
                path,
                format!("{name:?} is not a valid app name (lowercase letters, digits and -)"),
            );
        }
        self.keys(
            t,
            path,
            &[
                "platform",
                "history",
                "repository",
                "region",
                "endpoint_url",
                "registry_id",
                "role_arn",
                "deregister_rolled_back",
                "strategy",
                "rollback",
                "lock_lease",
                "gate",
                "canary",
                "blue_green",
                "rolling",
                "processes",
                "simulated",
                "docker",
            ],
        );
        let platform = match t.get("platform") {
            None => {
                self.problem(
                    &join(path, "platform"),
                    "missing: \"aws\", \"docker\" or \"simulated\"",
                );
                None
            }
            Some(_) => self.choice(
                t,
                path,
                "platform",
                &["aws", "docker", "simulated"],
                |s| match s {
                    "aws" => Some(Platform::Aws),
                    "docker" => Some(Platform::Docker),
                    "simulated" => Some(Platform::Simulated),
                    _ => None,
                },
            ),
        };
        let history = self
            .history(t, path, base)
            .unwrap_or_else(|| history.clone());
        let repository = self.string(t, path, "repository");
        if platform == Some(Platform::Aws) && repository.is_none() {
            self.problem(
                &join(path, "repository"),
                "missing: the app's ECR repository name",
            );
        }
        if platform == Some(Platform::Docker) && repository.is_none() {
            self.problem(
                &join(path, "repository"),
                "missing: the app's image repository (e.g. \"shop\", or \"127.0.0.1:5000/shop\" \
                 to push to that registry)",
            );
        }
        let docker = match t.get("docker") {
            None => DockerSettings::default(),
            Some(v) => {
                let p = join(path, "docker");
                if platform.is_some() && platform != Some(Platform::Docker) {
                    self.problem(&p, "only for platform = \"docker\"");
                }
                self.table(v, &p)
                    .map(|dt| self.docker(dt, &p))
                    .unwrap_or_default()
            }
        };
        if docker.registry_username.is_some()
            && let Some(r) = &repository
            && tapitalee::docker::builder::repository_registry(r).is_none()
        {
            self.problem(
                &join(path, "docker.registry_username"),
                format!(
                    "the repository {r:?} names no registry, so there is nothing to log in to; \
                     name one in the repository (e.g. \"127.0.0.1:5000/{r}\") or remove the \
                     registry settings"
                ),
            );
        }
        let region = self.string(t, path, "region");
        let endpoint_url = self.string(t, path, "endpoint_url");
        let registry_id = self.string(t, path, "registry_id");
        if let Some(id) = &registry_id {
            if platform.is_some() && platform != Some(Platform::Aws) {
                self.problem(&join(path, "registry_id"), "only for platform = \"aws\"");
            } else if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                self.problem(
                    &join(path, "registry_id"),
                    format!(
                        "{id:?} is not an AWS account id: the account whose ECR registry holds \
                         the repository, 12 digits, e.g. \"123456789012\""
                    ),
                );
            }
        }
        let deregister_rolled_back = self.boolean(t, path, "deregister_rolled_back");
        if deregister_rolled_back.is_some() && platform.is_some() && platform != Some(Platform::Aws)
        {
            self.problem(
                &join(path, "deregister_rolled_back"),
                "only for platform = \"aws\" (ECS task definitions)",
            );
        }
        let role_arn = self.string(t, path, "role_arn");
        if let Some(arn) = &role_arn {
            let parts: Vec<&str> = arn.split(':').collect();
            let valid = parts.len() == 6
                && parts[0] == "arn"
                && parts[2] == "iam"
                && parts[4].len() == 12
                && parts[5]
                    .strip_prefix("role/")
                    .is_some_and(|n| !n.is_empty());
            if !valid {
                self.problem(
                    &join(path, "role_arn"),
                    format!(
                        "{arn:?} is not an IAM role ARN: the role every AWS call is made as, e.g. \
                         \"arn:aws:iam::123456789012:role/deployer\""
                    ),
                );
            }
        }
        let rollback_all = self
            .choice(t, path, "rollback", &["per-process", "all"], |s| match s {
                "per-process" => Some(false),
                "all" => Some(true),
                _ => None,
            })
            .unwrap_or(false);
        let mut strategy = StrategyConfig::default();
        if let Some(k) = self.choice(
            t,
            path,
            "strategy",
            StrategyKind::NAMES,
            StrategyKind::from_name,
        ) {
            strategy.kind = k;
        }
        if let Some(v) = t.get("canary") {
            let p = join(path, "canary");
            if let Some(ct) = self.table(v, &p) {
                self.keys(ct, &p, &["steps"]);
                if ct.contains_key("steps") {
                    let steps = self.strings(ct, &p, "steps");
                    let mut parsed = Vec::new();
                    for (i, s) in steps.iter().enumerate() {
                        match parse_canary_step(s) {
                            Ok(step) => parsed.push(step),
                            Err(e) => self.problem(&format!("{p}.steps[{i}]"), e),
                        }
                    }
                    strategy.canary_steps = parsed;
                }
            }
        }
        if let Some(v) = t.get("blue_green") {
            let p = join(path, "blue_green");
            if let Some(bt) = self.table(v, &p) {
                self.keys(bt, &p, &["auto_promote", "bake_time", "scale_down_delay"]);
                if let Some(b) = self.boolean(bt, &p, "auto_promote") {
                    strategy.blue_green_auto_promote = b;
                }
                strategy.blue_green_bake_time = self.duration(bt, &p, "bake_time");
                strategy.blue_green_scale_down_delay = self.duration(bt, &p, "scale_down_delay");
            }
        }
        if let Some(v) = t.get("rolling") {
            let p = join(path, "rolling");
            if let Some(rt) = self.table(v, &p) {
                self.keys(rt, &p, &["watch"]);
                strategy.rolling_watch = self.duration(rt, &p, "watch");
            }
        }
        let mut gate = GateConfig::default();
        if let Some(v) = t.get("gate") {
            let p = join(path, "gate");
            if let Some(gt) = self.table(v, &p) {
                self.keys(
                    gt,
                    &p,
                    &[
                        "min_healthy_time",
                        "poll_interval",
                        "progress_deadline",
                        "failure_threshold",
                    ],
                );
                gate.min_healthy_time = self.duration(gt, &p, "min_healthy_time");
                gate.poll_interval = self.duration(gt, &p, "poll_interval");
                gate.progress_deadline = self.duration(gt, &p, "progress_deadline");
                gate.failure_threshold = self
                    .integer(gt, &p, "failure_threshold", 1, 10_000)
                    .and_then(|n| u32::try_from(n).ok());
                for (key, d) in [
                    ("poll_interval", gate.poll_interval),
                    ("progress_deadline", gate.progress_deadline),
                ] {
                    if d.is_some_and(|d| d.is_zero()) {
                        self.problem(&join(&p, key), "must be above zero");
                    }
                }
            }
        }
        let lock_lease = self.duration(t, path, "lock_lease");
        if lock_lease.is_some_and(|d| d < Duration::from_millis(100)) {
            self.problem(&join(path, "lock_lease"), "must be at least 100ms");
        }
        let mut processes = Vec::new();
        match t.get("processes") {
            None => self.problem(
                &join(path, "processes"),
                "missing: add at least one [apps.NAME.processes.default] table",
            ),
            Some(v) => {
                let p = join(path, "processes");
                if let Some(pt) = self.table(v, &p) {
                    if pt.is_empty() {
                        self.problem(&p, "empty: add at least one process");
                    }
                    for (pname, v) in pt {
                        let pp = join(&p, pname);
                        if let Some(t) = self.table(v, &pp)
                            && let Some(proc) = self.process(pname, t, &pp, platform)
                        {
                            processes.push(proc);
                        }
                    }
                }
            }
        }
        let simulated = match (t.get("simulated"), platform) {
            (Some(v), _) => {
                let p = join(path, "simulated");
                self.table(v, &p)
                    .and_then(|st| self.simulated(st, &p, &processes))
            }
            (None, Some(Platform::Simulated)) => {
                self.problem(
                    &join(path, "simulated"),
                    "missing: a simulated app needs [apps.NAME.simulated] with its images",
                );
                None
            }
            (None, _) => None,
        };
        if platform == Some(Platform::Docker) {
            let webs: Vec<&str> = processes
                .iter()
                .filter(|p| p.port.is_some())
                .map(|p| p.name.as_str())
                .collect();
            if webs.len() > 1 {
                self.problem(
                    &join(path, "processes"),
                    format!(
                        "{} set a port; the app's proxy fronts exactly one web process: keep \
                         `port` on one of them",
                        webs.join(", ")
                    ),
                );
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(AppConfig {
            name: name.to_owned(),
            platform: platform?,
            history,
            repository: repository.unwrap_or_else(|| name.to_owned()),
            region,
            endpoint_url,
            registry_id,
            role_arn,
            deregister_rolled_back: deregister_rolled_back.unwrap_or(false),
            rollback_all,
            strategy,
            gate,
            lock_lease,
            processes,
            simulated,
            docker,
        })
    }

    fn docker(&mut self, t: &Table, path: &str) -> DockerSettings {
        self.keys(
            t,
            path,
            &[
                "host",
                "proxy_port",
                "proxy_image",
                "stop_timeout",
                "drain_timeout",
                "registry_username",
                "registry_password_env",
            ],
        );
        let registry_username = self.string(t, path, "registry_username");
        let registry_password_env = self.string(t, path, "registry_password_env");
        match (&registry_username, &registry_password_env) {
            (Some(_), None) => self.problem(
                &join(path, "registry_password_env"),
                "is missing: registry_username needs the name of the environment variable \
                 holding its password",
            ),
            (None, Some(_)) => self.problem(
                &join(path, "registry_username"),
                "is missing: registry_password_env needs the user name it is the password of",
            ),
            _ => {}
        }
        if let Some(v) = &registry_password_env {
            let valid = !v.is_empty()
                && !v.starts_with(|c: char| c.is_ascii_digit())
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.problem(
                    &join(path, "registry_password_env"),
                    // The value is not repeated: it may be a pasted password.
                    "is not an environment variable name (letters, digits and _); name the \
                     variable that holds the password, not the password",
                );
            }
        }
        let host = self.string(t, path, "host");
        if let Some(h) = &host
            && let Err(e) = tapitalee::docker::DockerHost::parse(h)
        {
            self.problem(&join(path, "host"), e.reason);
        }
        DockerSettings {
            host,
            proxy_port: self
                .integer(t, path, "proxy_port", 0, 65535)
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(0),
            proxy_image: self.string(t, path, "proxy_image"),
            stop_timeout: self.duration(t, path, "stop_timeout"),
            drain_timeout: self.duration(t, path, "drain_timeout"),
            registry_username,
            registry_password_env,
        }
    }

    fn environment(&mut self, t: &Table, path: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Some(v) = t.get("environment") else {
            return env;
        };
        let p = join(path, "environment");
        let Some(et) = self.table(v, &p) else {
            return env;
        };
        for (k, v) in et {
            let valid = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.problem(
                    &join(&p, k),
                    format!("{k:?} is not a variable name (letters, digits and _)"),
                );
            }
            match v {
                Value::String(s) => {
                    env.insert(k.clone(), s.clone());
                }
                Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {
                    env.insert(k.clone(), v.to_string());
                }
                other => self.problem(
                    &join(&p, k),
                    format!("expected a string, found a {}", kind(other)),
                ),
            }
        }
        env
    }

    fn process(
        &mut self,
        name: &str,
        t: &Table,
        path: &str,
        platform: Option<Platform>,
    ) -> Option<ProcessConfig> {
        if tapitalee::ProcessName::new(name).is_err() {
            self.problem(path, format!("{name:?} is not a valid process name"));
        }
        self.keys(
            t,
            path,
            &[
                "instances",
                "load_balanced",
                "cluster",
                "service",
                "container",
                "log_group",
                "load_balancer",
                "subnets",
                "security_groups",
                "assign_public_ip",
                "strategy",
                "command",
                "environment",
                "port",
                "health_path",
            ],
        );
        let docker = platform == Some(Platform::Docker);
        let port = self
            .integer(t, path, "port", 1, 65535)
            .and_then(|n| u16::try_from(n).ok());
        let health_path = self.string(t, path, "health_path");
        if let Some(h) = &health_path
            && !h.starts_with('/')
        {
            self.problem(
                &join(path, "health_path"),
                format!("{h:?} must start with / (e.g. \"/health\")"),
            );
        }
        if docker && health_path.is_some() && port.is_none() {
            self.problem(
                &join(path, "health_path"),
                "needs `port`: only the web process is health-checked over HTTP",
            );
        }
        if docker && t.get("load_balanced") == Some(&Value::Boolean(true)) && port.is_none() {
            self.problem(
                &join(path, "load_balanced"),
                "on Docker the process with a `port` takes the traffic: set `port` instead",
            );
        }
        if !docker {
            for key in ["command", "environment", "port", "health_path"] {
                if t.contains_key(key) && platform.is_some() {
                    self.problem(&join(path, key), "only for platform = \"docker\"");
                }
            }
        }
        let command = self.strings(t, path, "command");
        let environment = self.environment(t, path);
        let cluster = self.string(t, path, "cluster");
        let service = self.string(t, path, "service");
        if platform == Some(Platform::Aws) {
            for (key, v) in [("cluster", &cluster), ("service", &service)] {
                if v.is_none() && !t.contains_key(key) {
                    self.problem(
                        &join(path, key),
                        "missing: the process's ECS ".to_owned() + key,
                    );
                }
            }
        }
        let load_balancer = t.get("load_balancer").and_then(|v| {
            let p = join(path, "load_balancer");
            let lt = self.table(v, &p)?;
            self.keys(
                lt,
                &p,
                &["listener", "rule", "target_groups", "container", "port"],
            );
            let listener = self.string(lt, &p, "listener");
            if listener.is_none() && !lt.contains_key("listener") {
                self.problem(&join(&p, "listener"), "missing: the listener ARN");
            }
            let groups = self.strings(lt, &p, "target_groups");
            if groups.len() != 2 {
                self.problem(
                    &join(&p, "target_groups"),
                    format!(
                        "expected two target group ARNs (blue and green), found {}",
                        groups.len()
                    ),
                );
            }
            let port = self.integer(lt, &p, "port", 1, 65535);
            if port.is_none() && !lt.contains_key("port") {
                self.problem(
                    &join(&p, "port"),
                    "missing: the container port receiving traffic",
                );
            }
            let [a, b] = <[String; 2]>::try_from(groups).ok()?;
            Some(LoadBalancer {
                listener: listener?,
                rule: self.string(lt, &p, "rule"),
                target_groups: [a, b],
                container: self.string(lt, &p, "container"),
                port: i32::try_from(port?).ok()?,
            })
        });
        let load_balanced = if docker {
            port.is_some()
        } else {
            self.boolean(t, path, "load_balanced")
                .unwrap_or(load_balancer.is_some() || name == "default")
        };
        Some(ProcessConfig {
            name: name.to_owned(),
            instances: self
                .integer(t, path, "instances", 0, 10_000)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            load_balanced,
            cluster,
            service,
            container: self.string(t, path, "container"),
            log_group: self.string(t, path, "log_group"),
            load_balancer,
            subnets: self.strings(t, path, "subnets"),
            security_groups: self.strings(t, path, "security_groups"),
            assign_public_ip: self.boolean(t, path, "assign_public_ip").unwrap_or(false),
            strategy: self.choice(
                t,
                path,
                "strategy",
                StrategyKind::NAMES,
                StrategyKind::from_name,
            ),
            command,
            environment,
            health_path: port.map(|_| health_path.unwrap_or_else(|| "/health".to_owned())),
            port,
        })
    }

    fn simulated(
        &mut self,
        t: &Table,
        path: &str,
        processes: &[ProcessConfig],
    ) -> Option<SimConfig> {
        self.keys(t, path, &["initial", "start_delay", "latency", "images"]);
        let mut images = BTreeMap::new();
        let names: Vec<&str> = processes.iter().map(|p| p.name.as_str()).collect();
        match t.get("images") {
            None => self.problem(
                &join(path, "images"),
                "missing: the images of the simulated registry, e.g. images = { \"v1\" = \"good\" }",
            ),
            Some(v) => {
                let p = join(path, "images");
                if let Some(it) = self.table(v, &p) {
                    for (tag, v) in it {
                        let ip = format!("{p}.{tag:?}");
                        if tapitalee::DockerTag::new(tag).is_err() {
                            self.problem(&ip, format!("{tag:?} is not a valid Docker tag"));
                        }
                        let behavior = |c: &mut Check, s: &str, at: &str| {
                            let b = Behavior::from_name(s);
                            if b.is_none() {
                                let hint = closest(s, Behavior::NAMES)
                                    .map(|c| format!(" (did you mean {c:?}?)"))
                                    .unwrap_or_default();
                                c.problem(
                                    at,
                                    format!("{s:?} is not one of: {}{hint}", Behavior::NAMES.join(", ")),
                                );
                            }
                            b
                        };
                        let image = match v {
                            Value::String(s) => behavior(self, s, &ip).map(|all| SimImage {
                                all,
                                processes: BTreeMap::new(),
                            }),
                            Value::Table(bt) => {
                                let mut all = Behavior::Good;
                                let mut per = BTreeMap::new();
                                for (k, v) in bt {
                                    let kp = format!("{ip}.{k}");
                                    let Value::String(s) = v else {
                                        self.problem(&kp, format!("expected a behaviour name, found a {}", kind(v)));
                                        continue;
                                    };
                                    let Some(b) = behavior(self, s, &kp) else { continue };
                                    if k == "all" {
                                        all = b;
                                    } else if names.contains(&k.as_str()) {
                                        per.insert(k.clone(), b);
                                    } else {
                                        let hint = closest(k, &names)
                                            .map(|c| format!(" (did you mean `{c}`?)"))
                                            .unwrap_or_default();
                                        self.problem(
                                            &kp,
                                            format!("unknown process{hint}; keys here are `all` and the app's processes: {}", names.join(", ")),
                                        );
                                    }
                                }
                                Some(SimImage { all, processes: per })
                            }
                            other => {
                                self.problem(
                                    &ip,
                                    format!("expected a behaviour name or a table, found a {}", kind(other)),
                                );
                                None
                            }
                        };
                        if let Some(image) = image {
                            images.insert(tag.clone(), image);
                        }
                    }
                }
            }
        }
        let initial = self.string(t, path, "initial");
        if let Some(i) = &initial
            && !images.contains_key(i)
            && t.get("images").is_some()
        {
            self.problem(
                &join(path, "initial"),
                format!("{i:?} is not one of the images listed under images"),
            );
        }
        if initial.is_none() && !t.contains_key("initial") {
            self.problem(
                &join(path, "initial"),
                "missing: the tag every process runs before its first deployment",
            );
        }
        Some(SimConfig {
            initial: initial?,
            start_delay: self
                .duration(t, path, "start_delay")
                .unwrap_or(Duration::from_millis(500)),
            latency: self.duration(t, path, "latency").unwrap_or(Duration::ZERO),
            images,
        })
    }
}

/// One canary step from its config string.
pub fn parse_canary_step(s: &str) -> Result<CanaryStepConfig, String> {
    let s = s.trim();
    if let Some(n) = s.strip_suffix('%') {
        return match n.trim().parse::<u8>() {
            Ok(w) if w <= 100 => Ok(CanaryStepConfig::Weight(w)),
            _ => Err(format!("{s:?}: a weight is 0% to 100%")),
        };
    }
    if s == "pause" {
        return Ok(CanaryStepConfig::Pause(None));
    }
    if let Some(d) = s.strip_prefix("pause ") {
        return humantime::parse_duration(d.trim())
            .map(|d| CanaryStepConfig::Pause(Some(d)))
            .map_err(|e| format!("{s:?}: {e}"));
    }
    if let Some(n) = s.strip_prefix("scale ") {
        return n
            .trim()
            .parse()
            .map(CanaryStepConfig::Scale)
            .map_err(|_| format!("{s:?}: scale takes a number of instances"));
    }
    Err(format!(
        "{s:?} is not a canary step; write \"25%\" (traffic weight), \"pause 30s\", \"pause\" \
         (until `tapit promote deploy`) or \"scale 2\""
    ))
}
