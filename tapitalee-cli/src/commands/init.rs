//! `tapit init [app=NAME]`: writes a commented `tapit.toml` in the current directory.

use super::Ctx;
use crate::config::FILE_NAME;
use crate::exit::CliError;
use crate::store;
use crate::words::Words;

/// The commented file for an app called `app`: a simulated staging environment to try tapit
/// out, an AWS production environment to fill in, and a Docker one, commented out.
pub fn template(app: &str) -> String {
    format!(
        r#"# tapit.toml: the apps (environments) `tapit` deploys. Select one with `tapit -a NAME`
# (or TAPIT_APP); without it, default_app is used.
default_app = "{app}-staging"

# Where the deployment history and the deploy locks live: "sqlite" (a file in your data
# directory, shared by every tapit on this machine), a path to a SQLite file (relative to
# this file), or "dynamodb:TABLE" (a DynamoDB table shared by a team's machines and CI
# runners; create it once with `tapit init history`). An app can set its own.
history = "sqlite"

# A simulated environment: the in-memory platform, for trying tapit out. Every process runs
# `initial` before its first deployment; each image behaves as listed.
[apps.{app}-staging]
platform = "simulated"
strategy = "rolling"        # rolling | blue-green | canary (create deploy strategy=… overrides)
rollback = "per-process"    # per-process | all (any failure rolls every process back)

[apps.{app}-staging.gate]
min_healthy_time = "2s"     # a fleet must stay healthy this long
poll_interval = "500ms"
progress_deadline = "1m"    # fail when a fleet stops getting healthier for this long

[apps.{app}-staging.canary]      # strategy=canary: weights, pauses ("pause" waits for `tapit promote deploy`)
steps = ["25%", "pause 10s", "50%", "pause 10s"]
[apps.{app}-staging.blue_green]  # strategy=blue-green
auto_promote = true
scale_down_delay = "5s"     # how long the old fleet stays up after the switch

[apps.{app}-staging.processes.default]   # the web server (process=web names it too)
instances = 2
load_balanced = true
[apps.{app}-staging.processes.worker]
instances = 1
[apps.{app}-staging.processes.scheduler]
instances = 1

[apps.{app}-staging.simulated]
initial = "v1.2.2"
start_delay = "500ms"
# How long each platform call takes (a real platform's API round trip). Default 0.
latency = "50ms"
# good | crash-loop | never-healthy | lb-unhealthy, for every process or per process.
images = {{ "latest" = "good", "v1.2.2" = "good", "v1.2.3" = "good", "v1.2.4" = {{ all = "good", worker = "crash-loop" }} }}

# Production on AWS ECS Fargate. Credentials and region come from the standard AWS chain
# (--profile, --region, AWS_* variables); --endpoint-url points at an emulator.
[apps.{app}-prod]
platform = "aws"
repository = "{app}"        # the ECR repository
# region = "us-east-1"
# role_arn = "arn:aws:iam::123456789012:role/deployer"   # make every AWS call as this role
# registry_id = "210987654321"   # the account of a central ECR registry holding the repository
# deregister_rolled_back = true   # a rolled-back release's task definition revision becomes INACTIVE

[apps.{app}-prod.processes.default]
cluster = "prod"
service = "{app}-web"
# log_group = "/ecs/{app}"  # informational: logs are read from the task definition's awslogs
# The load balancer for weighted traffic (EXTERNAL deployment controller).
# load_balancer = {{ listener = "arn:aws:elasticloadbalancing:…:listener/…", target_groups = ["arn:…/blue/…", "arn:…/green/…"], port = 8080 }}
# subnets = ["subnet-…"]
# security_groups = ["sg-…"]

[apps.{app}-prod.processes.worker]
cluster = "prod"
service = "{app}-worker"

# On a local Docker engine (DOCKER_HOST as the docker CLI reads it): real containers behind
# a weighted proxy on 127.0.0.1, images from the engine's store or the registry the
# repository names (`tapit image build` pushes there).
# [apps.{app}-local]
# platform = "docker"
# repository = "{app}"       # or "127.0.0.1:5000/{app}" to push to and pull from a registry
# [apps.{app}-local.docker]
# proxy_port = 8080          # where the app's traffic goes in
# [apps.{app}-local.processes.default]
# instances = 2
# port = 8080                # the web process: its port and health path
# health_path = "/health"
# [apps.{app}-local.processes.worker]
# instances = 1
# command = ["worker"]
"#
    )
}

/// `tapit init`.
pub fn run(ctx: &Ctx, words: &[String]) -> Result<(), CliError> {
    let words = Words::parse("init", &["app"], words)?;
    let dir_name = ctx
        .cwd
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>()
        })
        .filter(|n| tapitalee::AppName::new(n).is_ok())
        .unwrap_or_else(|| "myapp".to_owned());
    let app = words
        .parsed("app", |s: &str| tapitalee::AppName::new(s))?
        .map_or(dir_name, |a| a.to_string());
    let path = ctx.cwd.join(FILE_NAME);
    if path.exists() {
        return Err(CliError::usage(format!(
            "{} already exists; edit it, or remove it to start again",
            path.display()
        )));
    }
    std::fs::write(&path, template(&app))
        .map_err(|e| CliError::other(format!("cannot write {}: {e}", path.display())))?;
    ctx.out.result(&path.display().to_string());
    ctx.out.note(&format!(
        "wrote {}: apps {app}-staging (simulated; try `tapit create deploy docker_tag=v1.2.3 --wait`) and {app}-prod (aws; fill in its ECS names)",
        path.display()
    ));
    Ok(())
}

/// `tapit init history`: creates the app's history store. A DynamoDB table is created with
/// the documented key schema and waited for; one that exists with that schema is left as it
/// is (a table of that name with another schema is refused). A SQLite history is created on
/// first use: this only opens it.
pub async fn history(ctx: &Ctx, words: &[String]) -> Result<(), CliError> {
    Words::parse("init history", &[], words)?;
    let (_, app) = ctx.app()?;
    let opened = store::open(&app, &ctx.global).await?;
    let (created, message) = match &opened.table {
        Some(table) => {
            let name = table.table();
            if table.create_table().await? {
                (
                    true,
                    format!(
                        "created the DynamoDB table {name:?} (keys pk and sk, on-demand billing) \
                         for app {}'s history and locks",
                        app.name
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "the DynamoDB table {name:?} exists already with Tapitalee's key schema; \
                         nothing to do"
                    ),
                )
            }
        }
        None => {
            let path = app.history_path()?.unwrap_or_default();
            (
                false,
                format!(
                    "app {}'s history is the SQLite file {} (ready: it is created on first use; \
                     for a history shared between machines set history = \"dynamodb:TABLE\")",
                    app.name,
                    path.display()
                ),
            )
        }
    };
    if ctx.out.json() {
        ctx.out
            .json_value(&serde_json::json!({ "created": created, "message": message }));
    } else {
        ctx.out.result(&message);
    }
    Ok(())
}
