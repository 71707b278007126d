//! Every command's parsing and bad inputs, driven as a user does; the messages people read
//! are snapshots. Nothing here changes anything: every refusal is exit code 2 (usage or
//! configuration) before any deployment starts.

mod support;

use support::{Project, SIMULATED, redact};

/// Runs `tapit ARGS` in `project` and returns "exit N\n<stderr>" for a snapshot.
fn refused(project: &Project, args: &[&str]) -> String {
    let (code, out, err) = project.run(args);
    assert_eq!(
        code, 2,
        "tapit {args:?} should be refused with 2:\n{out}\n{err}"
    );
    // Nothing reached the history.
    assert!(
        !project.data_dir().join("control").exists(),
        "a refused command must not start anything"
    );
    format!("exit {code}\n{}", redact(&err, project))
}

#[test]
fn help_documents_exit_codes() {
    let p = Project::new(SIMULATED);
    let (code, out, _) = p.run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Exit codes:"), "{out}");
    for c in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130"] {
        assert!(
            out.contains(&format!("  {c}")),
            "exit code {c} missing from --help"
        );
    }
    let (code, out, _) = p.run(&["create", "deploy", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("docker_tag=TAG"), "{out}");
}

#[test]
fn create_deploy_bad_words() {
    let p = Project::new(SIMULATED);
    insta::assert_snapshot!(
        "unknown_key",
        refused(&p, &["create", "deploy", "dockr_tag=v1"])
    );
    insta::assert_snapshot!(
        "malformed_word",
        refused(&p, &["create", "deploy", "v1.2.3"])
    );
    insta::assert_snapshot!(
        "bad_tag",
        refused(&p, &["create", "deploy", "docker_tag=v1:2"])
    );
    insta::assert_snapshot!(
        "unknown_process",
        refused(&p, &["create", "deploy", "process=wrker"])
    );
    insta::assert_snapshot!(
        "bad_strategy",
        refused(&p, &["create", "deploy", "strategy=canery"])
    );
    insta::assert_snapshot!(
        "bad_rollback",
        refused(&p, &["create", "deploy", "rollback=some"])
    );
    insta::assert_snapshot!(
        "repeated_key",
        refused(
            &p,
            &["create", "deploy", "process=worker", "process=default"]
        )
    );
    insta::assert_snapshot!(
        "bad_initiator",
        refused(&p, &["create", "deploy", "initiator=a\tb"])
    );
}

#[test]
fn flags_refused() {
    let p = Project::new(SIMULATED);
    let (code, _, err) = p.run(&["--output", "yaml", "show", "deploy"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'yaml'"), "{err}");
    let (code, _, err) = p.run(&["--lock-wait", "soon", "create", "deploy"]);
    assert_eq!(code, 2);
    assert!(err.contains("--lock-wait"), "{err}");
    let (code, _, err) = p.run(&["show", "deploy", "--wait"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = p.run(&["create", "deploy", "--wait", "--wait"]);
    assert_eq!(code, 2, "a flag given twice conflicts: {err}");
    let (code, _, _) = p.run(&["deploy"]);
    assert_eq!(code, 2);
}

#[test]
fn other_commands_bad_words() {
    let p = Project::new(SIMULATED);
    insta::assert_snapshot!(
        "show_deploy_bad_id",
        refused(&p, &["show", "deploy", "id=42"])
    );
    insta::assert_snapshot!(
        "list_deploys_bad_limit",
        refused(&p, &["list", "deploys", "limit=0"])
    );
    insta::assert_snapshot!(
        "list_deploys_typo",
        refused(&p, &["list", "deploys", "proces=worker"])
    );
    insta::assert_snapshot!("show_image_needs_tag", refused(&p, &["show", "image"]));
    insta::assert_snapshot!(
        "show_logs_bad_since",
        refused(&p, &["show", "logs", "since=yesterday"])
    );
    insta::assert_snapshot!("show_logs_simulated", refused(&p, &["show", "logs"]));
    insta::assert_snapshot!(
        "image_build_bad_cache",
        refused(&p, &["image", "build", "cache=s3"])
    );
    insta::assert_snapshot!(
        "image_build_bad_hash",
        refused(&p, &["image", "build", "git_hash=xyz!"])
    );
    insta::assert_snapshot!(
        "image_deploy_unknown_process",
        refused(&p, &["image", "deploy", "process=wrker", "docker_tag=v1"])
    );
    insta::assert_snapshot!(
        "recover_bad_action",
        refused(&p, &["recover", "action=undo"])
    );
    insta::assert_snapshot!(
        "promote_unknown_key",
        refused(&p, &["promote", "deploy", "full=yes"])
    );
    insta::assert_snapshot!(
        "abort_unknown_key",
        refused(&p, &["abort", "deploy", "because=x"])
    );
    insta::assert_snapshot!(
        "rollback_unknown_process",
        refused(&p, &["rollback", "deploy", "process=db"])
    );
    insta::assert_snapshot!(
        "list_images_takes_no_words",
        refused(&p, &["list", "images", "all=1"])
    );
    insta::assert_snapshot!(
        "image_login_takes_no_words",
        refused(&p, &["image", "login", "registry=x"])
    );
}

#[test]
fn apps_and_configuration() {
    let p = Project::new(SIMULATED);
    insta::assert_snapshot!("unknown_app", refused(&p, &["-a", "shp", "show", "deploy"]));
    let none = Project::empty();
    insta::assert_snapshot!("missing_config", refused(&none, &["show", "deploy"]));
    let bad = Project::new(
        r#"
default_app = "shop"
[apps.shop]
platform = "awz"
rollback = "everything"
[apps.shop.gate]
poll_interval = "0s"
progress_deadline = "soon"
[apps.shop.processes.default]
instanses = 2
[apps.shop-prod]
platform = "aws"
[apps.shop-prod.processes.web]
cluster = "prod"
load_balancer = { listener = "arn:l", target_groups = ["arn:a"], port = 80 }
"#,
    );
    insta::assert_snapshot!("invalid_config", refused(&bad, &["show", "deploy"]));
    // History stores: a bad DynamoDB table name, and values that are no store.
    let bad_history = Project::new(&format!(
        "history = \"dynamodb:my table\"\n{}",
        SIMULATED.replace(
            "[apps.shop]\nplatform = \"simulated\"\n",
            "[apps.shop]\nplatform = \"simulated\"\nhistory = \"dynamo:tapit-history\"\n"
        )
    ));
    insta::assert_snapshot!(
        "invalid_history",
        refused(&bad_history, &["init", "history"])
    );
    let two = Project::new(&format!(
        "{}\n{}",
        SIMULATED,
        SIMULATED.replace("[apps.shop", "[apps.shop-two")
    ));
    insta::assert_snapshot!("ambiguous_app", refused(&two, &["show", "deploy"]));
    // TAPIT_APP selects, --config points elsewhere.
    let (code, _, err) = two
        .tapit(&["show", "deploy"])
        .env("TAPIT_APP", "shop-two")
        .output()
        .map(|o| {
            (
                o.status.code().unwrap(),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(
        code, 1,
        "no deployments yet is an error outside a deployment: {err}"
    );
    assert!(err.contains("app shop-two has no deployments yet"), "{err}");
    let (code, _, err) = none.run(&[
        "--config",
        &two.path().join("tapit.toml").display().to_string(),
        "-a",
        "shop",
        "list",
        "deploys",
    ]);
    assert_eq!(code, 0, "{err}");
    // A syntax error names the file and line.
    let broken = Project::new("[apps.shop\nplatform = 1");
    let (code, _, err) = broken.run(&["show", "deploy"]);
    assert_eq!(code, 2);
    assert!(err.contains("tapit.toml"), "{err}");
}

#[test]
fn init_writes_a_valid_commented_file_once() {
    let p = Project::empty();
    let (code, out, _) = p.run(&["init", "app=shop"]);
    assert_eq!(code, 0);
    assert!(out.trim().ends_with("tapit.toml"));
    let text = std::fs::read_to_string(p.path().join("tapit.toml")).unwrap();
    assert!(text.contains("# tapit.toml"));
    // The written file loads: the staging app has no history yet.
    let (code, _, err) = p.run(&["list", "deploys"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("init_twice", refused(&p, &["init"]));
    insta::assert_snapshot!(
        "init_bad_app",
        refused(&Project::empty(), &["init", "app=Shop_App"])
    );
}
