//! `tapit` with `history = "dynamodb:TABLE"` against moto server's DynamoDB on 127.0.0.1, on
//! the simulated platform: `tapit init history`, and two "machines" (two data directories:
//! nothing shared but the table) deploying the same app. The second deployer is refused with
//! exit code 5 naming the holder's id, initiator and start time, queues with `--lock-wait`,
//! and promotes and aborts the first machine's detached deployment through the table.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Project, SIMULATED, moto, process_status, status};

/// The simulated app `shop`, its history in `table` on moto.
fn project(table: &str) -> Project {
    let config = format!(
        "history = \"dynamodb:{table}\"\n{}",
        SIMULATED.replace(
            "[apps.shop]\nplatform = \"simulated\"\n",
            &format!(
                "[apps.shop]\nplatform = \"simulated\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
                moto::endpoint()
            ),
        )
    );
    assert!(config.contains("endpoint_url"), "{config}");
    Project::new(&config)
}

/// A table name no other test uses.
fn fresh_table(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tapit-cli-{label}-{nanos}")
}

/// `tapit ARGS` on "machine" `machine` (its own data directory), fake AWS credentials.
fn command(p: &Project, machine: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = p.std_command(args);
    cmd.env("TAPIT_DATA_DIR", p.path().join(machine))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_REGION")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

fn run(p: &Project, machine: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = assert_cmd::Command::from_std(command(p, machine, args));
    cmd.timeout(Duration::from_secs(120));
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A deployment's record as `machine` reads it from the table.
fn record(p: &Project, machine: &str, id: &str) -> serde_json::Value {
    let (code, out, err) = run(
        p,
        machine,
        &["--output", "json", "show", "deploy", &format!("id={id}")],
    );
    assert_eq!(code, 0, "show deploy on {machine}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn wait_for(
    p: &Project,
    machine: &str,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = record(p, machine, id);
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {id} never got there: {r:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn paused(r: &serde_json::Value) -> bool {
    r["processes"].as_array().unwrap().iter().any(|p| {
        p["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["message"].as_str().unwrap().contains("paused"))
    })
}

#[test]
fn init_history_creates_the_table_once() {
    let table = fresh_table("init");
    let p = project(&table);
    // Before the table exists: a clear error naming the table and the fix.
    let (code, _, err) = run(&p, "a", &["list", "deploys"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&table) && err.contains("tapit init history"),
        "{err}"
    );
    let (code, out, err) = run(&p, "a", &["init", "history"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("created the DynamoDB table {table:?}")),
        "{out}"
    );
    let (code, out, err) = run(&p, "b", &["init", "history"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exists already"), "{out}");
    let (code, out, err) = run(&p, "b", &["list", "deploys"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.is_empty() && err.contains("no deployments yet"),
        "{err}"
    );
    // A SQLite history: nothing to create, and says where it is.
    let local = Project::new(SIMULATED);
    let (code, out, err) = local.run(&["init", "history"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("SQLite file") && out.contains("history.db"),
        "{out}"
    );
    // Words are checked as everywhere.
    let (code, _, err) = run(&p, "a", &["init", "history", "table=x"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn two_machines_share_history_locks_and_control_through_dynamodb() {
    let table = fresh_table("race");
    let p = project(&table);
    assert_eq!(run(&p, "a", &["init", "history"]).0, 0);

    // Machine a: a detached canary of the worker, paused until promoted.
    let (code, out, err) = run(
        &p,
        "a",
        &[
            "create",
            "deploy",
            "docker_tag=v1.2.3",
            "strategy=canary",
            "process=worker",
            "initiator=alice",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let first = out.trim().to_owned();
    // Machine b sees it in the shared history.
    let r = wait_for(&p, "b", &first, paused);
    assert_eq!(r["initiator"], "alice");

    // Machine b deploys the same process: refused at once, exit 5, the holder named with its
    // initiator and start time, nothing changed.
    let (code, _, err) = run(
        &p,
        "b",
        &[
            "create",
            "deploy",
            "docker_tag=v1.2.2",
            "process=worker",
            "-w",
        ],
    );
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains(&format!(
            "locked by deployment {first}, started by alice at 20"
        )),
        "{err}"
    );
    assert!(err.contains("--lock-wait"), "{err}");
    // Other processes are free: machine b deploys the web process meanwhile (detached).
    let (code, out, err) = run(&p, "b", &["create", "deploy", "process=web"]);
    assert_eq!(code, 0, "another process is free: {err}");
    let web = out.trim().to_owned();

    // A bounded wait that runs out is refused the same way, after the wait.
    let asked = Instant::now();
    let (code, _, err) = run(
        &p,
        "b",
        &[
            "--lock-wait",
            "2s",
            "create",
            "deploy",
            "docker_tag=v1.2.2",
            "process=worker",
        ],
    );
    assert_eq!(code, 5, "{err}");
    assert!(asked.elapsed() >= Duration::from_secs(2), "it waited");
    assert!(
        err.contains(&format!(
            "locked by deployment {first}, started by alice at 20"
        )),
        "{err}"
    );

    // Machine b queues behind it with --lock-wait…
    let mut queued = command(
        &p,
        "b",
        &[
            "--lock-wait",
            "90s",
            "create",
            "deploy",
            "docker_tag=v1.2.2",
            "process=worker",
            "initiator=bob",
            "-w",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        queued.try_wait().unwrap().is_none(),
        "still waiting for the lock"
    );
    // …and promotes machine a's deployment through the table (b has no access to a's disk).
    let (code, out, err) = run(&p, "b", &["promote", "deploy", &format!("id={first}")]);
    assert_eq!(code, 0, "{out}\n{err}");
    let r = wait_for(&p, "b", &first, |r| status(r) != "Running");
    assert_eq!(status(&r), "Succeeded", "{r:#}");
    assert_eq!(process_status(&r, "worker"), "Succeeded");
    // The queued deployment takes the lock and deploys.
    let done = queued.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(0), "{stderr}");
    let (code, out, _) = run(&p, "a", &["--output", "json", "list", "deploys"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let newest = &list[0];
    assert_eq!(newest["initiator"], "bob", "{list:#}");
    assert_eq!(newest["status"], "Succeeded", "{list:#}");
    assert_eq!(
        status(&wait_for(&p, "a", &web, |r| status(r) != "Running")),
        "Succeeded"
    );

    // Machine a rolls the worker back to its previous release, as bob's deployment on
    // machine b recorded it in the shared history.
    let bobs = record(&p, "a", newest["id"].as_str().unwrap());
    let previous = bobs["processes"][0]["from"]["image"]["tag"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out, err) = run(&p, "a", &["rollback", "deploy", "process=worker", "-w"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!("rolling worker back to {previous}")),
        "{err}"
    );

    // Machine a starts another paused canary; machine b aborts it through the table.
    let (code, out, err) = run(
        &p,
        "a",
        &[
            "create",
            "deploy",
            "docker_tag=v1.2.3",
            "strategy=canary",
            "process=worker",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let second = out.trim().to_owned();
    wait_for(&p, "b", &second, paused);
    let (code, _, err) = run(&p, "b", &["abort", "deploy", "reason=from machine b"]);
    assert_eq!(code, 0, "{err}");
    let r = wait_for(&p, "a", &second, |r| status(r) != "Running");
    assert_eq!(status(&r), "Failed", "{r:#}");
    let text = r.to_string();
    assert!(text.contains("from machine b"), "{r:#}");
    // No control file on either machine: the requests went through the table.
    for machine in ["a", "b"] {
        assert!(
            !p.path().join(machine).join("control").exists(),
            "{machine}"
        );
    }
}

#[test]
fn a_deployment_whose_deployer_died_is_recovered_from_another_machine() {
    let table = fresh_table("recover");
    let p = project(&table);
    assert_eq!(run(&p, "a", &["init", "history"]).0, 0);
    let mut child = command(
        &p,
        "a",
        &[
            "create",
            "deploy",
            "docker_tag=v1.2.3",
            "strategy=canary",
            "process=default",
            "--wait",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let id = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, out, _) = run(&p, "b", &["--output", "json", "show", "deploy"]);
            if code == 0 {
                let r: serde_json::Value = serde_json::from_str(&out).unwrap();
                if paused(&r) {
                    break r["id"].as_str().unwrap().to_owned();
                }
            }
            assert!(Instant::now() < deadline, "never paused");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    // Machine a's deployer dies (kill -9) mid-canary; its locks lapse with their lease (1 s,
    // plus the 1 s skew margin).
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let (code, _, err) = run(&p, "b", &["promote", "deploy"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("its deployer is gone"), "{err}");
    // Machine b finds it in the shared history and rolls it back.
    let (code, out, err) = run(&p, "b", &["recover"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("recover action=rollback id={id}")),
        "{out}"
    );
    let (code, out, err) = run(&p, "b", &["recover", "action=rollback"]);
    assert_eq!(code, 3, "{out}\n{err}");
    let r = record(&p, "a", &id);
    assert_eq!(status(&r), "Failed", "{r:#}");
    assert_eq!(process_status(&r, "default"), "RolledBack", "{r:#}");
    // And the process can be deployed again, from either machine.
    let (code, out, err) = run(
        &p,
        "a",
        &[
            "create",
            "deploy",
            "process=default",
            "docker_tag=v1.2.3",
            "-w",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("v1.2.2 -> v1.2.3"), "{out}");
}
