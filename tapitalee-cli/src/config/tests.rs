use super::*;

const GOOD: &str = r#"
default_app = "shop-staging"

[apps.shop-staging]
platform = "simulated"
rollback = "per-process"
[apps.shop-staging.gate]
min_healthy_time = "1s"
[apps.shop-staging.processes.default]
instances = 2
[apps.shop-staging.processes.worker]
[apps.shop-staging.simulated]
initial = "v1"
images = { "v1" = "good", "v2" = { all = "good", worker = "crash-loop" } }

[apps.shop-prod]
platform = "aws"
repository = "shop"
[apps.shop-prod.processes.default]
cluster = "prod"
service = "shop-web"
load_balancer = { listener = "arn:l", target_groups = ["arn:a", "arn:b"], port = 8080 }
"#;

#[test]
fn a_good_file_loads() {
    let c = Config::parse(GOOD, Path::new("/x/tapit.toml")).unwrap();
    let app = c.app(None).unwrap();
    assert_eq!(app.name, "shop-staging");
    assert_eq!(app.platform, Platform::Simulated);
    assert_eq!(app.processes.len(), 2);
    assert!(
        app.processes[0].load_balanced,
        "default is load balanced by default"
    );
    assert!(!app.processes[1].load_balanced);
    let sim = app.simulated.as_ref().unwrap();
    assert_eq!(sim.images["v2"].processes["worker"], Behavior::CrashLoop);
    let prod = c.app(Some("shop-prod")).unwrap();
    assert_eq!(prod.platform, Platform::Aws);
    assert_eq!(prod.processes[0].load_balancer.as_ref().unwrap().port, 8080);
    assert_eq!(app.resolve_process("web").unwrap(), "default");
    assert!(
        app.resolve_process("wrker")
            .unwrap_err()
            .to_string()
            .contains("did you mean `worker`")
    );
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let bad = r#"
[apps.shop]
platform = "awz"
strategy = "canery"
[apps.shop.gate]
poll_interval = "soon"
[apps.shop.processes.default]
instanses = 2
"#;
    let e = Config::parse(bad, Path::new("tapit.toml")).unwrap_err();
    let m = e.to_string();
    assert_eq!(e.code(), 2);
    for want in [
        "apps.shop.platform: \"awz\" is not one of: aws, docker, simulated (did you mean \"aws\"?)",
        "apps.shop.strategy: \"canery\" is not one of: rolling, blue-green, canary (did you mean \"canary\"?)",
        "apps.shop.gate.poll_interval: \"soon\" is not a duration",
        "apps.shop.processes.default.instanses: unknown key (did you mean `instances`?)",
    ] {
        assert!(m.contains(want), "missing {want:?} in:\n{m}");
    }
}

#[test]
fn unknown_app_suggests() {
    let c = Config::parse(GOOD, Path::new("tapit.toml")).unwrap();
    let e = c.app(Some("shop-prd")).unwrap_err();
    assert!(e.to_string().contains("did you mean `shop-prod`?"), "{e}");
}

#[test]
fn canary_steps() {
    assert_eq!(parse_canary_step("25%"), Ok(CanaryStepConfig::Weight(25)));
    assert_eq!(
        parse_canary_step("pause"),
        Ok(CanaryStepConfig::Pause(None))
    );
    assert_eq!(
        parse_canary_step("pause 30s"),
        Ok(CanaryStepConfig::Pause(Some(Duration::from_secs(30))))
    );
    assert!(parse_canary_step("150%").is_err());
    assert!(parse_canary_step("wait").is_err());
}

#[test]
fn the_init_template_is_valid() {
    let text = crate::commands::init::template("myapp");
    let c = Config::parse(&text, Path::new("/x/tapit.toml")).unwrap();
    assert!(c.apps.contains_key("myapp-staging"));
    assert!(c.apps.contains_key("myapp-prod"));
    // Its commented-out examples are valid once uncommented: the Docker app, the AWS role
    // and registry.
    let docker_start = text.find("# [apps.myapp-local]").unwrap();
    let uncommented: String = text[..docker_start]
        .replace("# role_arn", "role_arn")
        .replace("# registry_id", "registry_id")
        .replace("# deregister_rolled_back", "deregister_rolled_back")
        + &text[docker_start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
    let c = Config::parse(&uncommented, Path::new("/x/tapit.toml")).unwrap();
    let local = &c.apps["myapp-local"];
    assert_eq!(local.platform, Platform::Docker);
    assert_eq!(local.processes.len(), 2);
    let prod = &c.apps["myapp-prod"];
    assert_eq!(prod.registry_id.as_deref(), Some("210987654321"));
    assert!(prod.deregister_rolled_back);
    assert!(
        !c.apps["myapp-staging"].deregister_rolled_back,
        "off by default"
    );
    assert!(
        prod.role_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(":role/deployer"))
    );
}

#[test]
fn web_is_a_process_of_its_own_when_it_exists() {
    let text = GOOD.replace(
        "[apps.shop-staging.processes.worker]",
        "[apps.shop-staging.processes.web]\n[apps.shop-staging.processes.worker]",
    );
    let c = Config::parse(&text, Path::new("tapit.toml")).unwrap();
    let app = c.app(None).unwrap();
    assert_eq!(app.resolve_process("web").unwrap(), "web");
    assert_eq!(app.resolve_process("default").unwrap(), "default");
}

#[test]
fn history_stores_are_read_and_bad_ones_named_with_the_fix() {
    let with = |top: &str, app: &str| {
        format!(
            "{top}\n[apps.shop]\nplatform = \"simulated\"\n{app}\n[apps.shop.processes.default]\n\
             [apps.shop.simulated]\ninitial = \"v1\"\nimages = {{ \"v1\" = \"good\" }}\n"
        )
    };
    let load = |text: String| Config::parse(&text, Path::new("/x/tapit.toml"));
    let history = |text: String| load(text).unwrap().apps["shop"].history.clone();
    assert_eq!(history(with("", "")), History::DefaultSqlite);
    assert_eq!(
        history(with("history = \"sqlite\"", "")),
        History::DefaultSqlite
    );
    assert_eq!(
        history(with("history = \"dynamodb:tapit-history\"", "")),
        History::DynamoDb("tapit-history".into())
    );
    // The app's own setting wins over the file's.
    assert_eq!(
        history(with(
            "history = \"dynamodb:team.history_1\"",
            "history = \"local/h.db\""
        )),
        History::Sqlite(PathBuf::from("/x/local/h.db"))
    );
    assert_eq!(
        history(with("", "history = \"dynamodb:prod-history\"")),
        History::DynamoDb("prod-history".into())
    );
    let problems = |text: String| match load(text) {
        Err(CliError::Config(p)) => p.join("\n"),
        other => panic!("expected a configuration error, got {other:?}"),
    };
    let p = problems(with("history = \"dynamodb:a b\"", ""));
    assert!(
        p.contains("history: \"a b\" is not a valid DynamoDB table name")
            && p.contains("3-255")
            && p.contains("dynamodb:tapit-history"),
        "{p}"
    );
    let p = problems(with("", "history = \"dynamodb:ab\""));
    assert!(p.contains("apps.shop.history: \"ab\""), "{p}");
    let p = problems(with("history = \"dynamodb\"", ""));
    assert!(
        p.contains("history: \"dynamodb\" is not a history store"),
        "{p}"
    );
    let p = problems(with("", "history = \"dynamo:tapit\""));
    assert!(
        p.contains("apps.shop.history: \"dynamo:tapit\" is not a history store (did you mean \"dynamodb\"?)"),
        "{p}"
    );
}

#[test]
fn a_docker_app_takes_its_processes_from_the_file() {
    let text = r#"
[apps.demo]
platform = "docker"
repository = "127.0.0.1:5000/demo"
[apps.demo.docker]
host = "tcp://127.0.0.1:2375"
proxy_port = 8088
[apps.demo.processes.default]
instances = 2
command = ["demo", "--fast"]
port = 8080
environment = { GREETING = "hi", WORKERS = 4 }
[apps.demo.processes.worker]
instances = 3
"#;
    let c = Config::parse(text, Path::new("tapit.toml")).unwrap();
    let app = &c.apps["demo"];
    assert_eq!(app.platform, Platform::Docker);
    assert_eq!(app.repository, "127.0.0.1:5000/demo");
    assert_eq!(app.docker.host.as_deref(), Some("tcp://127.0.0.1:2375"));
    assert_eq!(app.docker.proxy_port, 8088);
    let web = &app.processes[0];
    assert_eq!(web.command, ["demo", "--fast"]);
    assert_eq!(web.port, Some(8080));
    assert_eq!(web.health_path.as_deref(), Some("/health"), "the default");
    assert!(web.load_balanced);
    assert_eq!(web.environment["WORKERS"], "4");
    let worker = &app.processes[1];
    assert_eq!(
        (worker.instances, worker.port, worker.load_balanced),
        (3, None, false)
    );

    let bad = r#"
[apps.demo]
platform = "docker"
[apps.demo.docker]
proxy_port = 70000
[apps.demo.processes.worker]
load_balanced = true
health_path = "/health"
environment = { "1BAD" = "x" }
[apps.other]
platform = "simulated"
[apps.other.docker]
[apps.other.processes.default]
port = 80
[apps.other.simulated]
initial = "v1"
images = { "v1" = "good" }
"#;
    let m = Config::parse(bad, Path::new("tapit.toml"))
        .unwrap_err()
        .to_string();
    for want in [
        "apps.demo.repository: missing: the app's image repository",
        "apps.demo.docker.proxy_port: 70000 is out of range 0..=65535",
        "apps.demo.processes.worker.load_balanced: on Docker the process with a `port` takes the traffic",
        "apps.demo.processes.worker.health_path: needs `port`",
        "apps.demo.processes.worker.environment.1BAD: \"1BAD\" is not a variable name",
        "apps.other.docker: only for platform = \"docker\"",
        "apps.other.processes.default.port: only for platform = \"docker\"",
    ] {
        assert!(m.contains(want), "missing {want:?} in:\n{m}");
    }
}

#[test]
fn docker_registry_credentials_name_a_user_and_the_variable_of_its_password() {
    let good = r#"
[apps.demo]
platform = "docker"
repository = "127.0.0.1:5000/demo"
[apps.demo.docker]
registry_username = "ci"
registry_password_env = "REGISTRY_PASSWORD"
[apps.demo.processes.default]
port = 8080
"#;
    let c = Config::parse(good, Path::new("tapit.toml")).unwrap();
    let app = c.app(None).unwrap();
    assert_eq!(
        (
            app.docker.registry_username.as_deref(),
            app.docker.registry_password_env.as_deref()
        ),
        (Some("ci"), Some("REGISTRY_PASSWORD"))
    );

    let bad = r#"
[apps.half]
platform = "docker"
repository = "127.0.0.1:5000/half"
[apps.half.docker]
registry_username = "ci"
[apps.half.processes.default]
port = 8080
[apps.pasted]
platform = "docker"
repository = "127.0.0.1:5000/pasted"
[apps.pasted.docker]
registry_username = "ci"
registry_password_env = "hunter2!"
[apps.pasted.processes.default]
port = 8080
[apps.local]
platform = "docker"
repository = "local"
[apps.local.docker]
registry_username = "ci"
registry_password_env = "REGISTRY_PASSWORD"
[apps.local.processes.default]
port = 8080
"#;
    let m = Config::parse(bad, Path::new("tapit.toml"))
        .unwrap_err()
        .to_string();
    for want in [
        "apps.half.docker.registry_password_env: is missing",
        "apps.pasted.docker.registry_password_env: is not an environment variable name",
        "not the password",
        "apps.local.docker.registry_username: the repository \"local\" names no registry",
    ] {
        assert!(m.contains(want), "missing {want:?} in:\n{m}");
    }
    assert!(
        !m.contains("hunter2"),
        "a pasted password is not repeated: {m}"
    );
}

#[test]
fn deregister_rolled_back_is_an_aws_boolean() {
    let bad = r#"
[apps.demo]
platform = "docker"
repository = "demo"
deregister_rolled_back = true
[apps.demo.processes.web]
port = 8080
[apps.prod]
platform = "aws"
deregister_rolled_back = "yes"
[apps.prod.processes.default]
cluster = "c"
service = "s"
"#;
    let m = Config::parse(bad, Path::new("tapit.toml"))
        .unwrap_err()
        .to_string();
    for want in [
        "apps.demo.deregister_rolled_back: only for platform = \"aws\"",
        "apps.prod.deregister_rolled_back: expected true or false, found a string",
    ] {
        assert!(m.contains(want), "missing {want:?} in:\n{m}");
    }
}
