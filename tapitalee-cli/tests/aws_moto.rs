//! `tapit` on the AWS backend against moto server (ECR, ECS, ELBv2, CloudWatch Logs): list
//! and show images, image login, show logs, and create deploy of an ECS-controller service.
//! Never real AWS: fake credentials, every call to the local endpoint via --endpoint-url.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{Project, moto, process_status, status};

/// A project for the fixture app `prefix`, and `tapit` pointed at moto.
struct Aws {
    project: Project,
    fixture: serde_json::Value,
}

impl Aws {
    fn new(prefix: &str) -> Aws {
        let fixture = moto::fixture(prefix);
        Aws {
            project: Project::new(&moto::config(prefix, &fixture)),
            fixture,
        }
    }

    fn cmd(&self, args: &[&str]) -> assert_cmd::Command {
        let mut all = vec!["--endpoint-url", moto::endpoint()];
        all.extend_from_slice(args);
        let mut cmd = self.project.tapit(&all);
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn list_and_show_images() {
    let a = Aws::new("cliimg");
    let (code, out, err) = a.run(&["list", "images"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].contains("latest") && rows[0].contains("v2"),
        "newest first: {out}"
    );
    assert!(rows[1].starts_with("v1 "), "{out}");
    let (code, out, err) = a.run(&["show", "image", "docker_tag=v2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("digest     sha256:"), "{out}");
    assert!(out.contains("tags       "), "{out}");
    assert!(out.contains("latest") && out.contains("v2"), "{out}");
    let (code, json, _) = a.run(&["--output", "json", "show", "image", "docker_tag=v1"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1"]));
    assert!(v["size_bytes"].as_u64().is_some(), "{v}");
    assert!(v["pushed_at"].as_str().is_some(), "{v}");
    // An unknown tag: said with the repository, exit 1.
    let (code, _, err) = a.run(&["show", "image", "docker_tag=v9"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("v9"), "{err}");
}

#[test]
fn image_login_hands_the_ecr_token_to_docker_on_stdin() {
    let a = Aws::new("clilogin");
    let bin = a.project.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = a.project.path().join("docker.log");
    std::fs::write(
        bin.join("docker"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\ncat > {log}.stdin\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("docker"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = a
        .cmd(&["image", "login"])
        .env("PATH", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let argv = std::fs::read_to_string(&log).unwrap();
    assert!(
        argv.starts_with("login --username AWS --password-stdin "),
        "{argv}"
    );
    assert!(argv.contains(".dkr.ecr.us-east-1.amazonaws.com"), "{argv}");
    let token = std::fs::read_to_string(log.with_extension("log.stdin")).unwrap();
    assert!(!token.is_empty());
    assert!(
        !argv.contains(&token),
        "the token never reaches a command line"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token));
    assert!(!stderr.contains(&token));
}

#[test]
fn show_logs_of_the_web_process() {
    let a = Aws::new("clilogs");
    let (code, out, err) = a.run(&["show", "logs", "process=web", "since=10m"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with("INFO booting"), "{out}");
    assert!(lines[1].ends_with("ERROR database unreachable"), "{out}");
    let (code, json, _) = a.run(&["--output", "json", "show", "logs"]);
    assert_eq!(code, 0);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(
        first["stream"]
            .as_str()
            .unwrap()
            .starts_with("clilogs-web/app/"),
        "{first}"
    );
    // -f keeps printing until interrupted; here it is stopped by the test's timeout.
    let out = a
        .cmd(&["show", "logs", "-f"])
        .timeout(std::time::Duration::from_secs(4))
        .output()
        .unwrap();
    let followed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        followed.lines().count(),
        3,
        "each line once while following: {followed}"
    );
}

#[test]
fn create_deploy_on_the_aws_backend() {
    let a = Aws::new("clideploy");
    let (code, out, err) = a.run(&[
        "create",
        "deploy",
        "process=worker",
        "docker_tag=v2",
        "initiator=ci",
        "--wait",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("succeeded"), "{out}");
    let (_, json, _) = a.run(&["--output", "json", "show", "deploy"]);
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status(&r), "Succeeded");
    assert_eq!(process_status(&r, "worker"), "Succeeded");
    let to = r["processes"][0]["to"]["id"].as_str().unwrap();
    assert!(
        to.contains(":task-definition/clideploy-worker:"),
        "a new task definition: {to}"
    );
    // Detached on AWS too: the id at once, the outcome in the history.
    let (code, out, err) = a.run(&["create", "deploy", "process=worker", "docker_tag=v1"]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim();
    let r = a
        .project
        .wait_for_with(id, |args| a.run(args), |r| status(r) != "Running");
    assert_eq!(status(&r), "Succeeded", "{r:#}");
    // A tag the repository lacks is refused before any change.
    let (code, _, err) = a.run(&["create", "deploy", "docker_tag=nope", "--wait"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nope"), "{err}");
    let _ = &a.fixture;
}

#[test]
fn profile_selects_credentials_from_the_shared_files() {
    let a = Aws::new("cliprofile");
    let aws_dir = a.project.path().join("aws");
    std::fs::create_dir_all(&aws_dir).unwrap();
    std::fs::write(
        aws_dir.join("config"),
        "[profile moto]\nregion = us-east-1\n",
    )
    .unwrap();
    std::fs::write(
        aws_dir.join("credentials"),
        "[moto]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = a.cmd(args);
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_REGION")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", aws_dir.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", aws_dir.join("credentials"));
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Without the profile there are no credentials: an error outside any deployment.
    let (code, err) = run(&["list", "images"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("hint: the platform could not be reached"),
        "{err}"
    );
    // --profile moto finds them.
    let (code, err) = run(&["--profile", "moto", "list", "images"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn an_assumed_role_and_a_named_registry_from_the_config() {
    let prefix = "clirole";
    let fixture = moto::fixture(prefix);
    let config = moto::config(prefix, &fixture).replace(
        "region = \"us-east-1\"\n",
        "region = \"us-east-1\"\nregistry_id = \"123456789012\"\n\
         role_arn = \"arn:aws:iam::123456789012:role/deployer\"\n",
    );
    assert!(config.contains("role_arn"));
    let a = Aws {
        project: Project::new(&config),
        fixture,
    };
    // Every call, STS's AssumeRole first, goes to moto: the images of the named registry.
    let (code, out, err) = a.run(&["list", "images"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().skip(1).count(), 2, "{out}");
    let (code, out, err) = a.run(&["show", "image", "docker_tag=v1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("digest     sha256:"), "{out}");
    assert!(
        out.contains(a.fixture["repository_uri"].as_str().unwrap()),
        "{out}"
    );

    // Bad values: refused on load, each with its key path, before any call.
    let bad = moto::config(prefix, &a.fixture).replace(
        "region = \"us-east-1\"\n",
        "region = \"us-east-1\"\nregistry_id = \"12345\"\nrole_arn = \"deployer\"\n",
    );
    let p = Project::new(&bad);
    let (code, _, err) = p.run(&["list", "images"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "apps.{prefix}.registry_id: \"12345\" is not an AWS account id"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "apps.{prefix}.role_arn: \"deployer\" is not an IAM role ARN"
        )),
        "{err}"
    );
}

/// An image pushed to ECR without a tag: listed as `<untagged>` (never as `latest`), with no
/// tags in JSON; deploying it by its digest is refused with the fix, before any change.
#[test]
fn an_untagged_image_is_listed_as_untagged_and_not_deployable_by_digest() {
    let a = Aws::new("cliuntag");
    let repo = a.fixture["repository_uri"].as_str().unwrap();
    let name = repo.rsplit('/').next().unwrap();
    let script = format!(
        "import boto3, json\n\
         ecr = boto3.client('ecr', endpoint_url='{}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         m = json.dumps({{'schemaVersion': 2, \
         'mediaType': 'application/vnd.docker.distribution.manifest.v2+json', \
         'config': {{'mediaType': 'application/vnd.docker.container.image.v1+json', \
         'size': 77, 'digest': 'sha256:' + 'e' * 64}}, 'layers': []}})\n\
         print(ecr.put_image(repositoryName='{name}', imageManifest=m)\
         ['image']['imageId']['imageDigest'])\n",
        moto::endpoint()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");

    let (code, out, err) = a.run(&["list", "images"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{out}");
    let untagged: Vec<&&str> = rows
        .iter()
        .filter(|r| r.starts_with("<untagged>"))
        .collect();
    assert_eq!(untagged.len(), 1, "{out}");
    assert!(untagged[0].contains(&digest[..19]), "{out}");
    assert_eq!(
        rows.iter().filter(|r| r.contains("latest")).count(),
        1,
        "only v2 is latest: {out}"
    );
    let (code, json, err) = a.run(&["--output", "json", "list", "images"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed = v
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["digest"] == digest.as_str())
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(listed["tags"], serde_json::json!([]), "{listed}");

    let (code, _, err) = a.run(&["create", "deploy", &format!("docker_tag={digest}")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&digest) && err.contains("not a tag") && err.contains("tag it first"),
        "{err}"
    );
}
