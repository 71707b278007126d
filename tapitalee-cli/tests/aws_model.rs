//! `tapit` end to end on the AWS backend against the ECS model in front of moto: the model
//! runs the rollouts, starts and stops tasks and reports target health as ECS and ELB do
//! (time runs 100× faster there), so a whole `create deploy` of a two-process app — the web
//! process on task sets behind a load balancer, the worker on an ECS-controller service —
//! succeeds with a good image and rolls back with a crash-looping one, saying why and what the
//! failed tasks logged last. Never real AWS.

mod support;

use std::time::{Duration, Instant};

use support::{Project, moto, process_status, status};
use tapitalee_ecs_model::{Behavior, EcsModel, ModelConfig, testbed};

/// The model (served from a runtime of its own) and the app created in it.
struct Env {
    model: EcsModel,
    json: serde_json::Value,
    _runtime: tokio::runtime::Runtime,
}

impl Env {
    fn start(prefix: &str) -> Env {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let model = runtime
            .block_on(EcsModel::start(ModelConfig::new(moto::endpoint())))
            .expect("start the ECS model");
        let spec = serde_json::json!({
            "prefix": prefix,
            "services": [
                { "app": "web", "controller": "EXTERNAL", "desired": 2 },
                { "app": "worker", "controller": "ECS", "desired": 2 },
            ],
        });
        let json = testbed::run_fixture(
            &testbed::model_fixture(),
            &[&model.endpoint(), &spec.to_string()],
        );
        let env = Env {
            model,
            json,
            _runtime: runtime,
        };
        env.model.script(&env.digest("crash"), Behavior::CrashLoop);
        for app in ["web", "worker"] {
            assert!(env.settled(app), "{app} never became steady");
        }
        env
    }

    fn digest(&self, tag: &str) -> String {
        self.json["digests"][tag].as_str().unwrap().to_owned()
    }

    fn s(&self, path: &[&str]) -> String {
        let mut v = &self.json;
        for k in path {
            v = &v[*k];
        }
        v.as_str()
            .unwrap_or_else(|| panic!("fixture has no {path:?}"))
            .to_owned()
    }

    fn list(&self, v: &serde_json::Value) -> String {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| format!("{x}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn settled(&self, app: &str) -> bool {
        let (cluster, service) = (self.s(&["cluster"]), self.s(&["apps", app, "service"]));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.model.steady(&cluster, &service) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The task definitions the app's running tasks use.
    fn running(&self, app: &str) -> Vec<String> {
        self.model
            .running_task_definitions(&self.s(&["cluster"]), &self.s(&["apps", app, "service"]))
    }

    /// tapit.toml: one app, `default` on the EXTERNAL service, `worker` on the ECS one; the
    /// product's default gate (10 s healthy, 5 s polls, 10 min deadline) on the model's clock.
    fn config(&self, app: &str) -> String {
        format!(
            r#"
[apps.{app}]
platform = "aws"
repository = "{repo}"
region = "us-east-1"
[apps.{app}.gate]
min_healthy_time = "100ms"
poll_interval = "50ms"
progress_deadline = "6s"
[apps.{app}.processes.default]
cluster = "{cluster}"
service = "{web}"
container = "app"
subnets = [{subnets}]
security_groups = [{sgs}]
load_balancer = {{ listener = "{listener}", target_groups = [{tgs}], container = "app", port = 8080 }}
[apps.{app}.processes.worker]
cluster = "{cluster}"
service = "{worker}"
container = "app"
"#,
            repo = self.s(&["repository"]),
            cluster = self.s(&["cluster"]),
            web = self.s(&["apps", "web", "service"]),
            worker = self.s(&["apps", "worker", "service"]),
            listener = self.s(&["apps", "web", "listener"]),
            tgs = self.list(&self.json["apps"]["web"]["target_groups"]),
            subnets = self.list(&self.json["subnets"]),
            sgs = self.list(&self.json["security_groups"]),
        )
    }

    fn run(&self, p: &Project, args: &[&str]) -> (i32, String, String) {
        let endpoint = self.model.endpoint();
        let mut all = vec!["--endpoint-url", endpoint.as_str()];
        all.extend_from_slice(args);
        let out = p
            .tapit(&all)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn create_deploy_rolls_out_a_good_image_and_rolls_back_a_crash_loop() {
    let env = Env::start("climodel");
    let p = Project::new(&env.config("shop"));
    let before_web = env.running("web");
    assert_eq!(before_web.len(), 2, "{before_web:?}");

    // A good image: both processes roll to it (the web process through task sets and the
    // listener's weights, the worker by ECS's own rolling deployment).
    let (code, out, err) = env.run(
        &p,
        &[
            "create",
            "deploy",
            "docker_tag=good",
            "initiator=ci",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let (_, shown, _) = env.run(&p, &["--output", "json", "show", "deploy"]);
    let r: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(status(&r), "Succeeded", "{r:#}");
    assert_eq!(process_status(&r, "default"), "Succeeded", "{r:#}");
    assert_eq!(process_status(&r, "worker"), "Succeeded", "{r:#}");
    assert!(env.settled("web") && env.settled("worker"));
    let good_web = env.running("web");
    let good_worker = env.running("worker");
    assert_eq!(good_web.len(), 2, "{good_web:?}");
    assert!(
        good_web.iter().all(|td| !before_web.contains(td)),
        "the web process runs the new revision: {good_web:?} (was {before_web:?})"
    );

    // A crash-looping image: each process fails its own health gate and rolls back alone,
    // with the stopped tasks' reason and exit code in its reason: exit code 3.
    let (code, out, err) = env.run(&p, &["create", "deploy", "docker_tag=crash", "--wait"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(out.contains("why:") && out.contains("exit code 1"), "{out}");
    // And what the failed tasks said last, from their CloudWatch Logs streams.
    for process in ["default", "worker"] {
        assert!(
            out.contains(&format!(
                "last log lines of {process} (tapit show logs process={process})"
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("fatal: app cannot start: database unreachable; exiting with code 1"),
        "{out}"
    );
    let (_, shown, _) = env.run(&p, &["--output", "json", "show", "deploy"]);
    let r: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(status(&r), "Failed", "{r:#}");
    assert_eq!(process_status(&r, "default"), "RolledBack", "{r:#}");
    assert_eq!(process_status(&r, "worker"), "RolledBack", "{r:#}");
    // Both back on the good release, at full size.
    assert!(env.settled("web") && env.settled("worker"));
    let mut web = env.running("web");
    let mut worker = env.running("worker");
    web.sort();
    worker.sort();
    let (mut good_web, mut good_worker) = (good_web, good_worker);
    good_web.sort();
    good_worker.sort();
    assert_eq!(web, good_web, "web is back on the good release");
    assert_eq!(worker, good_worker, "worker is back on the good release");

    // The history lists both, newest first.
    let (code, out, _) = env.run(&p, &["list", "deploys"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(
        rows[0].contains("failed") && rows[0].contains("crash"),
        "{out}"
    );
    assert!(
        rows[1].contains("succeeded") && rows[1].contains("good"),
        "{out}"
    );
}
