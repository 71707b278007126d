//! `tapit list images`, `tapit show image`, `tapit image login|build|deploy`.

use std::fmt::Write as _;
use std::path::PathBuf;

use tapitalee::{DockerTag, ImageInfo, Initiator};

use super::Ctx;
use super::deploy;
use crate::cli::{DeployArgs, ImageBuildArgs};
use crate::config::{AppConfig, Platform};
use crate::exit::CliError;
use crate::render::time;
use crate::words::Words;
use tapitalee::docker::builder::{self, Build, BuildError, Cache, DockerCli};

fn size(bytes: Option<u64>) -> String {
    match bytes {
        #[allow(clippy::cast_precision_loss)]
        Some(b) => format!("{:.1} MB", b as f64 / 1_000_000.0),
        None => "-".into(),
    }
}

fn image_json(i: &ImageInfo) -> serde_json::Value {
    serde_json::json!({
        "repository": i.repository,
        "digest": i.digest().map(ToString::to_string),
        "tags": i.tags.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "size_bytes": i.size_bytes,
        "pushed_at": i.pushed_at.map(time),
    })
}

/// `tapit list images`.
pub async fn list(ctx: &Ctx, words: &[String]) -> Result<(), CliError> {
    Words::parse("list images", &[], words)?;
    let (_, app) = ctx.app()?;
    let backend = ctx.backend(&app).await?;
    let mut images = backend.registry.list(&backend.app).await?;
    images.sort_by_key(|i| std::cmp::Reverse(i.pushed_at));
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::Value::Array(
            images.iter().map(image_json).collect(),
        ));
        return Ok(());
    }
    if images.is_empty() {
        ctx.out
            .note(&format!("the repository of app {} has no images", app.name));
        return Ok(());
    }
    let mut s = format!(
        "{:<30}  {:<19}  {:>9}  {}\n",
        "TAGS", "DIGEST", "SIZE", "PUSHED"
    );
    for i in &images {
        let tags: Vec<String> = i.tags.iter().map(ToString::to_string).collect();
        let digest = i
            .digest()
            .map(|d| d.to_string().chars().take(19).collect::<String>())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:<30}  {digest:<19}  {:>9}  {}",
            if tags.is_empty() {
                "<untagged>".to_owned()
            } else {
                tags.join(",")
            },
            size(i.size_bytes),
            i.pushed_at.map(time).unwrap_or_else(|| "-".into())
        );
    }
    ctx.out.result(s.trim_end());
    Ok(())
}

/// `tapit show image docker_tag=…`.
pub async fn show(ctx: &Ctx, words: &[String]) -> Result<(), CliError> {
    let words = Words::parse("show image", &["docker_tag"], words)?;
    let tag = words
        .parsed("docker_tag", |s: &str| DockerTag::new(s))?
        .ok_or_else(|| {
            CliError::usage("`tapit show image` needs docker_tag=TAG (see `tapit list images`)")
        })?;
    let (_, app) = ctx.app()?;
    let backend = ctx.backend(&app).await?;
    let i = backend.registry.describe(&backend.app, &tag).await?;
    if ctx.out.json() {
        ctx.out.json_value(&image_json(&i));
    } else {
        let tags: Vec<String> = i.tags.iter().map(ToString::to_string).collect();
        ctx.out.result(&format!(
            "image {}:{tag}\n  digest     {}\n  size       {}\n  pushed at  {}\n  tags       {}",
            i.repository,
            i.digest()
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".into()),
            size(i.size_bytes),
            i.pushed_at.map(time).unwrap_or_else(|| "-".into()),
            tags.join(", ")
        ));
    }
    Ok(())
}

/// Logs Docker in to the app's registry; returns the registry host.
async fn docker_login(ctx: &Ctx, app: &AppConfig, docker: &DockerCli) -> Result<String, CliError> {
    let backend = ctx.backend(app).await?;
    let creds = backend.registry.login(&backend.app).await?;
    let host = builder::registry_host(&creds.endpoint).to_owned();
    docker
        .login(&host, &creds.username, creds.password.expose())
        .map_err(build_error)?;
    Ok(host)
}

/// A push the registry refused for want of a login, with the fix added.
fn push_refused(e: BuildError, app: &AppConfig) -> BuildError {
    let name = &app.name;
    let BuildError::Failed(message) = e else {
        return e;
    };
    // Without the docker CLI's own output (it went to the terminal), the registry itself
    // says whether it wants a login (with credentials configured, `docker login` already
    // checked them).
    let refused = builder::is_auth_refusal(&message)
        || (app.docker.registry_username.is_none()
            && message.contains("docker push")
            && builder::repository_registry(&app.repository)
                .is_some_and(builder::registry_requires_login));
    match builder::repository_registry(&app.repository) {
        Some(host) if refused => {
            let fix = if app.docker.registry_username.is_some() {
                format!(
                    "the registry {host} refused the configured user {}: check the password in \
                     ${}",
                    app.docker.registry_username.as_deref().unwrap_or_default(),
                    app.docker
                        .registry_password_env
                        .as_deref()
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "the registry {host} requires a login: set registry_username and \
                     registry_password_env in [apps.{name}.docker] (or run `docker login {host}`)"
                )
            };
            BuildError::Failed(format!("{message}\n{fix}"))
        }
        _ => BuildError::Failed(message),
    }
}

/// A builder error: a usage error when the request cannot work with this Docker.
fn build_error(e: BuildError) -> CliError {
    match e {
        BuildError::Unsupported(why) => CliError::usage(why),
        other => CliError::Other(other.to_string()),
    }
}

/// `tapit image login`.
pub async fn login(ctx: &Ctx, words: &[String]) -> Result<(), CliError> {
    Words::parse("image login", &[], words)?;
    let (_, app) = ctx.app()?;
    let host = docker_login(ctx, &app, &DockerCli::new().show_output(true)).await?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::json!({ "registry": host }));
    } else {
        ctx.out.result(&format!("logged Docker in to {host}"));
    }
    Ok(())
}

const BUILD_KEYS: &[&str] = &[
    "tag",
    "docker_tag",
    "git_hash",
    "initiator",
    "dockerfile",
    "cache",
];

/// `tapit image build`; returns the pushed tag.
pub async fn build(ctx: &Ctx, args: &ImageBuildArgs) -> Result<String, CliError> {
    let words = Words::parse("image build", BUILD_KEYS, &args.words)?;
    build_words(ctx, &words, !args.no_push).await
}

async fn build_words(ctx: &Ctx, words: &Words, push: bool) -> Result<String, CliError> {
    let cache = match words.choice("cache", &["ecr", "gha"])? {
        Some("ecr") => Some(Cache::Registry),
        Some(_) => Some(Cache::Gha),
        None => None,
    };
    let tag = words.parsed("tag", |s: &str| DockerTag::new(s))?;
    let initiator = words.parsed("initiator", |s: &str| Initiator::new(s))?;
    let git_hash = words.parsed("git_hash", |h: &str| {
        if h.len() >= 4 && h.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(h.to_ascii_lowercase())
        } else {
            Err(format!("{h:?} is not a git commit hash (hex digits)"))
        }
    })?;
    let explicit = words.parsed("docker_tag", |s: &str| DockerTag::new(s))?;
    let dockerfile = PathBuf::from(words.get("dockerfile").unwrap_or("Dockerfile"));
    let (_, app) = ctx.app()?;
    let git_hash = git_hash.or_else(|| builder::git_short_hash(&ctx.cwd));
    let docker_tag = match (&explicit, &git_hash) {
        (Some(t), _) => t.to_string(),
        (None, Some(h)) => builder::default_tag(tag.as_ref().map(DockerTag::as_str), h),
        (None, None) => {
            return Err(CliError::usage(
                "cannot read the git hash here (not a git repository?); pass git_hash=HASH or \
                 docker_tag=TAG",
            ));
        }
    };
    DockerTag::new(&docker_tag)?;
    if !ctx.cwd.join(&dockerfile).is_file() {
        return Err(CliError::usage(format!(
            "no Dockerfile at {} (pass dockerfile=PATH)",
            ctx.cwd.join(&dockerfile).display()
        )));
    }
    let docker = DockerCli::new().show_output(true);
    docker.check_engine().map_err(build_error)?;
    let buildx = docker.has_buildx();
    if let Some(why) = builder::unsupported(cache, buildx) {
        return Err(CliError::usage(why));
    }
    // On Docker the repository names its registry, if it has one (`127.0.0.1:5000/demo`):
    // the image is pushed there with the docker CLI's own login, if the registry needs one;
    // without a registry it stays in the engine's store. Elsewhere the registry's host comes
    // from its login.
    let (repository, push) = if app.platform == Platform::Docker {
        let registry = builder::repository_registry(&app.repository);
        let push = push && registry.is_some();
        // Configured credentials log the docker CLI in first; without them its own login
        // (if any) is used.
        if push && app.docker.registry_username.is_some() {
            docker_login(ctx, &app, &docker).await?;
        }
        (app.repository.clone(), push)
    } else {
        let host = docker_login(ctx, &app, &docker).await?;
        (format!("{host}/{}", app.repository), push)
    };
    let mut labels = vec![(
        "org.opencontainers.image.version".to_owned(),
        docker_tag.clone(),
    )];
    if let Some(h) = &git_hash {
        labels.push(("org.opencontainers.image.revision".into(), h.clone()));
    }
    if let Some(i) = &initiator {
        labels.push(("dev.tapitalee.initiator".into(), i.to_string()));
    }
    let plan = Build {
        repository,
        docker_tag: docker_tag.clone(),
        dockerfile,
        context: PathBuf::from("."),
        cache,
        labels,
        push,
    };
    ctx.out.note(&format!(
        "building {} with {}",
        plan.reference(),
        if buildx {
            "docker buildx"
        } else {
            "docker build (buildx not installed)"
        }
    ));
    docker
        .build(&plan, &ctx.cwd)
        .map_err(|e| push_refused(e, &app))
        .map_err(build_error)?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::json!({
            "image": plan.reference(), "docker_tag": docker_tag, "pushed": push,
        }));
    } else {
        ctx.out.result(&docker_tag);
    }
    Ok(docker_tag)
}

/// `tapit image deploy`: build, push, then `create deploy` of the new tag.
pub async fn deploy(ctx: &Ctx, args: &DeployArgs) -> Result<(), CliError> {
    let mut keys = BUILD_KEYS.to_vec();
    keys.push("process");
    let words = Words::parse("image deploy", &keys, &args.words)?;
    // Refuse a bad process before building anything.
    let (config, app) = ctx.app()?;
    if let Some(p) = words.get("process") {
        app.resolve_process(p)?;
    }
    let docker_tag = build_words(ctx, &words, true).await?;
    let mut deploy_words = vec![format!("docker_tag={docker_tag}")];
    for k in ["initiator", "process"] {
        if let Some(v) = words.get(k) {
            deploy_words.push(format!("{k}={v}"));
        }
    }
    let dw = Words::parse("create deploy", deploy::KEYS, &deploy_words)?;
    let job = deploy::job_from_words(ctx, &config, &app, &dw)?;
    let app_flag = ctx.app_flag(&config, &app);
    if args.wait {
        deploy::run_and_wait(ctx, &app, &job, &app_flag).await
    } else {
        let id = deploy::spawn_detached(&job, &app).await?;
        deploy::announce_detached(&ctx.out, &id, &app_flag);
        Ok(())
    }
}
