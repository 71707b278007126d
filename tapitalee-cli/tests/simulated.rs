//! `tapit` end to end on the simulated platform: the product document's flows, each exit
//! code, detached deployments followed from another process, manual gates, abort, rollback,
//! recover, Ctrl-C, JSON and GitHub Actions output.

mod support;

use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use support::{Project, SIMULATED, process_status, redact, status};

/// The mixed-state part of an output (from "The app now runs mixed versions").
fn mixed_part(stdout: &str) -> String {
    let at = stdout
        .find("The app now runs mixed versions")
        .unwrap_or_else(|| panic!("no mixed state help in:\n{stdout}"));
    stdout[at..].to_owned()
}

#[test]
fn the_documents_multi_process_flow_with_the_worker_failing() {
    let p = Project::new(SIMULATED);
    // tapit create deploy docker_tag=v1.2.3 --wait: every process moves.
    let (code, out, err) = p.run(&[
        "create",
        "deploy",
        "docker_tag=v1.2.3",
        "initiator=john.doe",
        "--wait",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("succeeded"), "{out}");
    // Off a terminal, progress is one timestamped plain line per event, on stderr.
    assert!(
        err.lines().any(|l| l.starts_with("20")
            && l.contains("worker")
            && l.contains("rolling deployment from")),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "no escape sequences off a terminal");

    // v1.2.4: the worker crash-loops and rolls back alone; the others stay: exit 4.
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v1.2.4", "--wait"]);
    assert_eq!(code, 4, "{out}\n{err}");
    // Why, per process.
    assert!(out.contains("process worker     rolled-back"), "{out}");
    assert!(
        out.contains("why: health check failed for process \"worker\""),
        "{out}"
    );
    assert!(
        out.contains("exit code 1"),
        "the stopped tasks' exit code is shown: {out}"
    );
    // The mixed state and the exact commands that line processes up again.
    insta::assert_snapshot!("mixed_state", mixed_part(&out));

    // `tapit show deploy` from another process says the same, with the steps.
    let (code, shown, _) = p.run(&["show", "deploy"]);
    assert_eq!(code, 0);
    assert!(shown.contains("partial"));
    assert!(shown.contains("rolling back"), "steps are shown: {shown}");
    assert_eq!(mixed_part(&shown), mixed_part(&out));

    // Option 1 of the document: redeploy the worker (here: to the version that works for it,
    // v1.2.3, since v1.2.4 still crash-loops), process by process.
    let (code, _, err) = p.run(&[
        "create",
        "deploy",
        "process=worker",
        "docker_tag=v1.2.4",
        "--wait",
    ]);
    assert_eq!(code, 3, "the worker alone fails again: exit 3: {err}");
    // Option 2: roll the successful ones back to the worker's version.
    for process in ["default", "scheduler"] {
        let (code, _, err) = p.run(&[
            "create",
            "deploy",
            &format!("process={process}"),
            "docker_tag=v1.2.3",
            "--wait",
        ]);
        assert_eq!(code, 0, "{err}");
    }
    // process=web names the default process.
    let (code, out, err) = p.run(&[
        "--output",
        "json",
        "create",
        "deploy",
        "process=web",
        "docker_tag=v1.2.3",
        "--wait",
    ]);
    assert_eq!(code, 0, "{err}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["deployment"]["only_process"], "default");

    // The history, newest first, filtered by process, limited.
    let (code, out, _) = p.run(&["list", "deploys", "process=worker", "limit=2"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].contains("failed") && rows[0].contains("v1.2.4"),
        "{out}"
    );
    assert!(rows[1].contains("partial"), "{out}");
    let (_, json, _) = p.run(&["--output", "json", "list", "deploys"]);
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 6);
}

#[test]
fn exit_codes_3_and_0_and_rollback_all() {
    let p = Project::new(SIMULATED);
    // Every process crash-loops on v9: all rolled back, exit 3.
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v9", "--wait"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.contains("failed"));
    assert!(
        !out.contains("mixed versions"),
        "nothing is mixed when everything rolled back"
    );
    // rollback=all: the worker's failure rolls the others back too: failed, not partial.
    let (code, out, err) = p.run(&[
        "create",
        "deploy",
        "docker_tag=v1.2.4",
        "rollback=all",
        "--wait",
    ]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.contains("all-or-nothing"), "{out}");
    // Plain latest by default.
    let (code, out, err) = p.run(&["create", "deploy", "-w"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(":latest@sha256:"), "{out}");
}

#[test]
fn a_detached_deployment_is_followed_gated_and_locks_others_out() {
    let p = Project::new(SIMULATED);
    // Without --wait: the id on stdout at once, exit 0; a canary paused until promoted.
    let started = Instant::now();
    let (code, out, err) = p.run(&[
        "create",
        "deploy",
        "docker_tag=v1.2.3",
        "strategy=canary",
        "process=web",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let id = out.trim().to_owned();
    assert!(id.starts_with("dep-"), "{out}");
    assert!(err.contains(&format!("tapit show deploy id={id}")), "{err}");
    // Another tapit follows it through the shared history.
    let r = p.wait_for_step(&id, "paused");
    assert_eq!(status(&r), "Running");
    let (code, shown, _) = p.run(&["show", "deploy", &format!("id={id}")]);
    assert_eq!(code, 0);
    assert!(shown.contains("running"), "{shown}");

    // Exit code 5: the process is locked by the running deployment, which is named.
    let (code, _, err) = p.run(&[
        "create",
        "deploy",
        "process=default",
        "docker_tag=v1.2.3",
        "--wait",
    ]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains(&id), "the holder is named: {err}");
    insta::assert_snapshot!("locked", redact(&err, &p));
    // Other processes are free.
    let (code, _, err) = p.run(&[
        "create",
        "deploy",
        "process=worker",
        "docker_tag=v1.2.3",
        "--wait",
    ]);
    assert_eq!(code, 0, "{err}");

    // --lock-wait queues behind it while another terminal promotes it.
    let mut queued = p.std_command(&[
        "--lock-wait",
        "60s",
        "create",
        "deploy",
        "process=default",
        "docker_tag=v1.2.2",
        "--wait",
    ]);
    let queued = queued
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (code, out, err) = p.run(&["promote", "deploy", "--full"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let r = p.wait_for(&id, |r| status(r) != "Running");
    assert_eq!(status(&r), "Succeeded", "{r:#}");
    let queued = queued.wait_with_output().unwrap();
    assert_eq!(
        queued.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    // It starts from what the deployment it queued behind left: v1.2.3.
    let stdout = String::from_utf8_lossy(&queued.stdout);
    assert!(stdout.contains("v1.2.3 -> v1.2.2"), "{stdout}");
}

#[test]
fn abort_rolls_a_detached_deployment_back() {
    let p = Project::new(SIMULATED);
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v1.2.3", "strategy=canary"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    p.wait_for_step(&id, "paused");
    let (code, out, err) = p.run(&["abort", "deploy", "reason=wrong tag"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("abort"), "{out}");
    let r = p.wait_for(&id, |r| status(r) != "Running");
    assert_eq!(status(&r), "Failed", "{r:#}");
    for process in ["default", "worker", "scheduler"] {
        assert_eq!(
            process_status(&r, process),
            "RolledBack",
            "{process}: {r:#}"
        );
    }
    let (_, shown, _) = p.run(&["show", "deploy"]);
    assert!(shown.contains("aborted: wrong tag"), "{shown}");
    // Nothing left to steer.
    let (code, _, err) = p.run(&["promote", "deploy"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no running deployment"), "{err}");
    assert!(
        !p.data_dir().join("control").join(&id).exists(),
        "the control file is removed"
    );
}

#[test]
fn rollback_deploy_returns_to_the_previous_release() {
    let p = Project::new(SIMULATED);
    let (code, _, _) = p.run(&["rollback", "deploy", "--wait"]);
    assert_eq!(code, 1, "no history, nothing to roll back to");
    assert_eq!(p.run(&["create", "deploy", "docker_tag=v1.2.3", "-w"]).0, 0);
    assert_eq!(p.run(&["create", "deploy", "docker_tag=v1.2.4", "-w"]).0, 4);
    // default and scheduler run v1.2.4 (previous v1.2.3); the worker v1.2.3 (previous v1.2.2).
    let (code, out, err) = p.run(&["rollback", "deploy", "--wait", "initiator=oncall"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("rolling default back to v1.2.3"), "{err}");
    assert!(err.contains("rolling worker back to v1.2.2"), "{err}");
    let (_, list, _) = p.run(&["--output", "json", "list", "deploys", "limit=3"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let tags: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["image"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(list[0]["initiator"], "oncall", "{tags:?}");
}

#[test]
fn json_output_is_ndjson_events_then_the_result() {
    let p = Project::new(SIMULATED);
    let (code, out, _) = p.run(&[
        "--output",
        "json",
        "create",
        "deploy",
        "docker_tag=v1.2.3",
        "--wait",
    ]);
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 5);
    assert_eq!(lines[0]["type"], "event");
    assert!(
        lines[0]["event"]["kind"]["Started"].is_object(),
        "{}",
        lines[0]
    );
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "result");
    assert_eq!(last["deployment"]["status"], "Succeeded");
    // Errors are JSON too, with the exit code.
    let (code, out, _) = p.run(&["--output", "json", "create", "deploy", "process=nope"]);
    assert_eq!(code, 2);
    let e: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(e["exit_code"], 2);
    // Without --wait: the id as JSON.
    let (code, out, _) = p.run(&[
        "--output",
        "json",
        "create",
        "deploy",
        "docker_tag=v1.2.3",
        "process=worker",
    ]);
    assert_eq!(code, 0);
    let started: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    p.wait_for(&id, |r| status(r) == "Succeeded");
}

#[test]
fn github_actions_annotations_and_step_summary() {
    let p = Project::new(SIMULATED);
    let summary = p.path().join("summary.md");
    assert_eq!(p.run(&["create", "deploy", "docker_tag=v1.2.3", "-w"]).0, 0);
    let out = p
        .tapit(&[
            "create",
            "deploy",
            "docker_tag=v1.2.4",
            "initiator=github-actions",
            "--wait",
        ])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("::error"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one annotation per failed process: {stdout}"
    );
    assert!(
        errors[0].contains("process worker rolled-back"),
        "{}",
        errors[0]
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("| worker | rolled-back | v1.2.3 | v1.2.4 |"),
        "{md}"
    );
    assert!(
        md.contains("tapit create deploy process=worker docker_tag=v1.2.4"),
        "{md}"
    );
}

#[test]
fn ctrl_c_aborts_and_rolls_back_cleanly() {
    let p = Project::new(SIMULATED);
    let child = p
        .std_command(&[
            "create",
            "deploy",
            "docker_tag=v1.2.3",
            "strategy=canary",
            "--wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(p.path().join("deployer.log")).unwrap())
        .spawn()
        .unwrap();
    // Wait until the canary is paused, then Ctrl-C (SIGINT) once.
    wait_until_paused(&p);
    let pid = child.id().to_string();
    assert!(
        Command::new("sh")
            .args(["-c", &format!("kill -INT {pid}")])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let stderr = std::fs::read_to_string(p.path().join("deployer.log")).unwrap();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("aborting: every process rolls back"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rolled-back"),
        "what it did is reported: {stdout}"
    );
    let (_, shown, _) = p.run(&["--output", "json", "show", "deploy"]);
    let r: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(status(&r), "Failed");
}

#[test]
fn recover_rolls_back_a_deployment_whose_deployer_died() {
    let p = Project::new(SIMULATED);
    let mut child = p
        .std_command(&[
            "create",
            "deploy",
            "docker_tag=v1.2.3",
            "strategy=canary",
            "process=default",
            "--wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(p.path().join("deployer.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until_paused(&p);
    // The deployer dies (kill -9): nothing is cleaned up.
    child.kill().unwrap();
    child.wait().unwrap();
    // Its locks expire with their lease (1 s in this config).
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _, err) = p.run(&["promote", "deploy"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("its deployer is gone") && err.contains("recover"),
        "{err}"
    );
    let (code, out, err) = p.run(&["recover"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("was interrupted"), "{err}");
    assert!(
        out.contains("recover action=rollback id="),
        "the choice is offered: {out}"
    );
    // Rolled back: the process runs what it ran before; the deployment failed (exit 3).
    let (code, out, err) = p.run(&["recover", "action=rollback"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        out.contains("why: interrupted; rolled back on request"),
        "{out}"
    );
    let (_, shown, _) = p.run(&["--output", "json", "show", "deploy"]);
    let r: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(status(&r), "Failed", "{r:#}");
    assert_eq!(process_status(&r, "default"), "RolledBack", "{r:#}");
    // The next deployment starts from v1.2.2 again.
    let (code, out, _) = p.run(&[
        "create",
        "deploy",
        "process=default",
        "docker_tag=v1.2.3",
        "-w",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("v1.2.2 -> v1.2.3"), "{out}");
    let (code, out, _) = p.run(&["recover"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to recover"), "{out}");
}

#[test]
fn images_of_the_simulated_registry() {
    let p = Project::new(SIMULATED);
    let (code, out, err) = p.run(&["list", "images"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("v1.2.4") && out.contains("latest"), "{out}");
    let (code, out, _) = p.run(&["show", "image", "docker_tag=v1.2.3"]);
    assert_eq!(code, 0);
    assert!(out.contains("digest     sha256:"), "{out}");
    let (code, _, err) = p.run(&["show", "image", "docker_tag=v7"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("v7"), "{err}");
}

/// Waits until the app's latest deployment is paused (a canary waiting for promotion); on
/// timeout, shows what `show deploy` and the deployer (logging to deployer.log) said.
fn wait_until_paused(p: &Project) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, err) = p.run(&["show", "deploy"]);
        if out.contains("paused") {
            return;
        }
        let deployer = std::fs::read_to_string(p.path().join("deployer.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "never paused:\n{out}\nshow deploy: {err}\ndeployer: {deployer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn recover_resumes_a_deployment_whose_deployer_died() {
    let p = Project::new(SIMULATED);
    let mut child = p
        .std_command(&[
            "create",
            "deploy",
            "docker_tag=v1.2.3",
            "strategy=canary",
            "process=default",
            "initiator=alice",
            "--wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(p.path().join("deployer.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until_paused(&p);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Resumed under a new deployment that names the interrupted one; same image, initiator.
    let (code, out, err) = p.run(&["recover", "action=resume", "--wait"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("resumes"), "{err}");
    assert!(out.contains("resumes    dep-"), "{out}");
    assert!(out.contains("initiator  alice"), "{out}");
    assert!(
        out.contains("process default    succeeded    v1.2.2 -> v1.2.3"),
        "{out}"
    );
    let (_, list, _) = p.run(&["list", "deploys"]);
    assert!(
        list.contains("interrupted") || list.contains("rolled-back"),
        "{list}"
    );
}

#[test]
fn strategies_from_the_command_line_and_the_config() {
    let p = Project::new(&SIMULATED.replace(
        "[apps.shop.processes.worker]",
        "[apps.shop.processes.worker]\nstrategy = \"canary\"",
    ));
    // blue-green everywhere (the scheduler has no load balancer: a fleet switch).
    let (code, out, err) = p.run(&[
        "create",
        "deploy",
        "docker_tag=v1.2.3",
        "strategy=blue-green",
        "-w",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.matches("(blue-green,").count(), 3, "{out}");
    // The worker's own strategy from the config: canary, split by instances (no load
    // balancer), paused until promoted by another tapit.
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v1.2.2", "process=worker"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    p.wait_for_step(&id, "paused");
    let (code, _, err) = p.run(&["promote", "deploy", &format!("id={id}")]);
    assert_eq!(code, 0, "{err}");
    let r = p.wait_for(&id, |r| status(r) != "Running");
    assert_eq!(status(&r), "Succeeded", "{r:#}");
    assert_eq!(r["processes"][0]["strategy"], "canary");
}

#[test]
fn a_detached_rollback_deploy() {
    let p = Project::new(SIMULATED);
    assert_eq!(p.run(&["create", "deploy", "docker_tag=v1.2.3", "-w"]).0, 0);
    let (code, out, err) = p.run(&["rollback", "deploy", "process=worker"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("rolling worker back to v1.2.2"), "{err}");
    let id = out.trim().to_owned();
    let r = p.wait_for(&id, |r| status(r) != "Running");
    assert_eq!(status(&r), "Succeeded", "{r:#}");
    assert_eq!(r["image"]["tag"], "v1.2.2", "{r:#}");
    assert_eq!(r["only_process"], "worker");
}

#[test]
fn a_detached_deployer_relays_refusals_with_their_exit_codes() {
    let p = Project::new(SIMULATED);
    // The image does not exist: refused by the background deployer before any change.
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v404"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("v404"), "{err}");
    assert!(out.is_empty(), "no id when nothing started: {out}");
    // Locked: exit 5 from the background deployer too.
    let (code, out, err) = p.run(&[
        "create",
        "deploy",
        "docker_tag=v1.2.3",
        "strategy=canary",
        "process=worker",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    p.wait_for_step(&id, "paused");
    let (code, _, err) = p.run(&["create", "deploy", "docker_tag=v1.2.3", "process=worker"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains(&id), "{err}");
    let (code, _, _) = p.run(&["abort", "deploy", &format!("id={id}")]);
    assert_eq!(code, 0);
    p.wait_for(&id, |r| status(r) != "Running");
}

#[test]
fn show_deploy_follows_a_detached_deployment_to_its_outcome() {
    let p = Project::new(SIMULATED);
    assert_eq!(p.run(&["create", "deploy", "docker_tag=v1.2.3", "-w"]).0, 0);
    // CI can start detached and follow from a later step: the outcome is the exit code.
    let (code, out, err) = p.run(&["create", "deploy", "docker_tag=v1.2.4"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    let (code, out, err) = p.run(&["show", "deploy", &format!("id={id}"), "-f"]);
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("worker") && l.contains("rolling back")),
        "{err}"
    );
    assert!(out.contains("The app now runs mixed versions"), "{out}");
    // A finished deployment: shown at once, exit 0 (it is a look, not a wait).
    let (code, _, _) = p.run(&["show", "deploy", "-f"]);
    assert_eq!(code, 0);
    // NDJSON steps with --output json.
    let (code, out, _) = p.run(&["create", "deploy", "docker_tag=v1.2.3", "process=worker"]);
    assert_eq!(code, 0);
    let id = out.trim().to_owned();
    let (code, out, _) = p.run(&[
        "--output",
        "json",
        "show",
        "deploy",
        &format!("id={id}"),
        "--follow",
    ]);
    assert_eq!(code, 0, "{out}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["deployment"]["status"], "Succeeded");
    assert!(
        out.lines().any(|l| l.contains("\"type\":\"step\"")),
        "{out}"
    );
}

/// A deployment whose rollback takes seconds: `default` rolls 4 instances in batches, and
/// every platform call takes 400 ms, so restoring the old fleet (scale, route, make primary,
/// retire the new fleet) takes over 1.5 s.
fn slow_rollback_config() -> String {
    SIMULATED
        .replace(
            "[apps.shop.processes.default]\ninstances = 2",
            "[apps.shop.processes.default]\ninstances = 4",
        )
        .replace(
            "start_delay = \"100ms\"",
            "start_delay = \"100ms\"\nlatency = \"400ms\"",
        )
}

/// Waits until `show deploy` contains `text`.
fn wait_until_shown(p: &Project, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = p.run(&["show", "deploy"]);
        if out.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "never showed {text:?}:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_second_ctrl_c_leaves_at_once_and_recover_finishes_the_rollback() {
    let config = slow_rollback_config();
    assert!(config.contains("instances = 4") && config.contains("latency = \"400ms\""));
    let p = Project::new(&config);
    let log = p.path().join("waiting.log");
    let child = p
        .std_command(&[
            "create",
            "deploy",
            "process=default",
            "docker_tag=v1.2.3",
            "strategy=rolling",
            "--wait",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // In the second batch the old fleet is down to 2 of 4: rolling back scales it up again,
    // routes, and retires the new fleet, each call taking 400 ms.
    wait_until_shown(&p, "scaled new fleet from 1 to 3");
    let pid = child.id().to_string();
    let interrupt = || {
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    interrupt();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("aborting: every process rolls back")
    {
        assert!(Instant::now() < deadline, "the first Ctrl-C was not taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = Instant::now();
    interrupt();
    let out = child.wait_with_output().unwrap();
    let left_after = second.elapsed();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        left_after < Duration::from_secs(1),
        "a second Ctrl-C leaves at once, not after the rollback: {left_after:?}"
    );
    assert!(
        stderr.contains("as it is; `tapit recover` resumes or rolls it back"),
        "{stderr}"
    );
    // Left mid-rollback: the record still says running; nothing claims an outcome.
    let (_, shown, _) = p.run(&["--output", "json", "show", "deploy"]);
    let r: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(status(&r), "Running", "{r:#}");
    // Once the lock's lease (1 s) has expired, `tapit recover` finishes the rollback.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, out, err) = p.run(&["recover", "action=rollback"]);
    assert_eq!(code, 3, "{out}\n{err}");
    let (_, shown, _) = p.run(&["--output", "json", "show", "deploy"]);
    let r: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(status(&r), "Failed", "{r:#}");
    assert_eq!(process_status(&r, "default"), "RolledBack", "{r:#}");
    // The old version serves again: the next deployment starts from it.
    let (code, out, _) = p.run(&["create", "deploy", "process=default", "docker_tag=v1.2.3"]);
    assert_eq!(code, 0, "{out}");
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("dep-"))
        .unwrap()
        .to_owned();
    let r = p.wait_for(&id, |r| status(r) != "Running");
    assert_eq!(status(&r), "Succeeded", "{r:#}");
    assert!(
        r["processes"][0]["from"]["id"]
            .as_str()
            .is_some_and(|from| !from.is_empty()),
        "{r:#}"
    );
}

#[test]
fn on_a_terminal_the_progress_is_a_live_view_per_process() {
    let p = Project::new(SIMULATED);
    // A pseudo-terminal, as an interactive shell gives: util-linux `script` runs tapit on one
    // and copies what it draws to stdout.
    let tapit = assert_cmd::cargo::cargo_bin("tapit");
    let mut cmd = p.std_command(&[]);
    cmd.env("COLUMNS", "100");
    let out = Command::new("script")
        .args(["-q", "-e", "-f", "-c"])
        .arg(format!(
            "{} create deploy docker_tag=v1.2.3 --wait",
            tapit.display()
        ))
        .arg("/dev/null")
        .current_dir(p.path())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("COLUMNS", "100")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    // Redrawn in place: each frame moves back up over the three process lines and clears
    // each line before drawing it.
    assert!(screen.contains("\x1b[3A"), "{screen:?}");
    assert!(screen.matches("\x1b[2K").count() >= 6, "{screen:?}");
    // A line per process: elapsed time, healthy/desired, the traffic split, the step.
    let frames: Vec<&str> = screen.split("\x1b[2K").collect();
    assert!(
        frames
            .iter()
            .any(|l| l.starts_with("default") && l.contains("new 2/2 ok")),
        "{screen:?}"
    );
    assert!(
        frames
            .iter()
            .any(|l| l.starts_with("default") && l.contains("traffic 100% new")),
        "{screen:?}"
    );
    assert!(
        frames
            .iter()
            .any(|l| l.starts_with("worker") && l.contains("succeeded")),
        "{screen:?}"
    );
    // No line-per-event log on a terminal, and every frame line fits the terminal's width.
    assert!(!screen.contains("Z default    "), "{screen:?}");
    for line in frames.iter().flat_map(|f| f.split("\r\n").next()) {
        let visible = line.split("\x1b[").next().unwrap_or_default();
        assert!(visible.chars().count() <= 100, "{line:?}");
    }
    // The outcome follows the view.
    assert!(screen.contains("deployment dep-"), "{screen:?}");
}

#[test]
fn rolling_watches_the_new_fleet_after_its_last_batch_when_configured() {
    let config = SIMULATED.replace(
        "[apps.shop.canary]",
        "[apps.shop.rolling]\nwatch = \"1s\"\n[apps.shop.canary]",
    );
    let p = Project::new(&config);
    let (code, out, err) = p.run(&[
        "create",
        "deploy",
        "process=worker",
        "docker_tag=v1.2.3",
        "--wait",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, shown, err) = p.run(&["show", "deploy"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("watch the new fleet for 1s, 1 old instance(s) on standby"),
        "{shown}"
    );
    // Without the setting, no watch.
    let p = Project::new(SIMULATED);
    let (code, _, err) = p.run(&[
        "create",
        "deploy",
        "process=worker",
        "docker_tag=v1.2.3",
        "--wait",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, shown, _) = p.run(&["show", "deploy"]);
    assert!(!shown.contains("watch the new fleet"), "{shown}");
}
