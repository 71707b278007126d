//! Images of the kit (`tapit-kit`: proxy, demo app): `FROM scratch` around the statically
//! linked binary, built with the docker CLI (the workspace's one image builder).

use std::path::Path;
use std::process::Command;

use tapitalee_core::{Error, Result};

/// The Dockerfile of the proxy image: the kit binary, run as `tapit-kit proxy`.
pub const KIT_DOCKERFILE_PROXY: &str = "FROM scratch\nCOPY tapit-kit /tapit-kit\nEXPOSE 80 81\nENTRYPOINT [\"/tapit-kit\"]\nCMD [\"proxy\"]\n";

/// The Dockerfile of the demo app, before its `ENV` lines: the kit binary run as
/// `tapit-kit demo`, with a Docker health check of its health path.
pub const KIT_DOCKERFILE_DEMO: &str = "FROM scratch\nCOPY tapit-kit /tapit-kit\nHEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD [\"/tapit-kit\", \"check\"]\nENTRYPOINT [\"/tapit-kit\"]\nCMD [\"demo\"]\n";

/// Builds `tag` from a Dockerfile's text and a build context directory with the docker CLI
/// (BuildKit when the engine has it, the classic builder otherwise). The CLI reaches the
/// engine `DOCKER_HOST` names. Returns the image id.
///
/// # Errors
/// When the CLI is missing or the build fails (with the CLI's output).
pub fn build_image(context: &Path, dockerfile: &str, tag: &str) -> Result<String> {
    std::fs::write(context.join("Dockerfile"), dockerfile)
        .map_err(|e| Error::platform("image build", format!("writing the Dockerfile: {e}")))?;
    let buildx = Command::new("docker")
        .args(["buildx", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", if buildx { "1" } else { "0" })
        .args(["build", "-q", "-t", tag])
        .arg(context)
        .output()
        .map_err(|e| {
            Error::platform(
                "image build",
                format!("running the docker CLI: {e}; install it (Debian: docker.io)"),
            )
        })?;
    if !out.status.success() {
        return Err(Error::platform(
            "image build",
            format!(
                "docker build -t {tag} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds the kit binary (`tapit-kit`) statically linked for `x86_64-unknown-linux-gnu`, with
/// a separate cargo run in its own target directory (`<target_dir>/static`), so it never waits
/// on the lock of a cargo run that started the caller. Returns the binary's path. For the
/// tests, the examples and the demo: it needs the workspace's sources and cargo.
///
/// # Errors
/// When cargo fails (with its output).
pub fn build_kit_binary(workspace: &Path, target_dir: &Path) -> Result<std::path::PathBuf> {
    let target = target_dir.join("static");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--release",
            "-p",
            "tapitalee-docker-kit",
            "--target",
            triple,
        ])
        .output()
        .map_err(|e| Error::platform("build the kit", format!("running cargo: {e}")))?;
    if !out.status.success() {
        return Err(Error::platform(
            "build the kit",
            format!(
                "cargo failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(target.join(triple).join("release").join("tapit-kit"))
}

/// Builds an image around the kit binary: `dockerfile` (e.g. [`KIT_DOCKERFILE_PROXY`], or
/// [`KIT_DOCKERFILE_DEMO`] with `ENV` lines appended) in a temporary context holding the
/// binary. Returns the image id.
///
/// # Errors
/// As [`build_image`].
pub fn build_kit_image(binary: &Path, dockerfile: &str, tag: &str) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("tapit-kit-{}", ulid::Ulid::new()));
    let io =
        |e: std::io::Error| Error::platform("image build", format!("preparing the context: {e}"));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let result = std::fs::copy(binary, dir.join("tapit-kit"))
        .map_err(io)
        .and_then(|_| build_image(&dir, dockerfile, tag));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The demo app's Dockerfile for one version: [`KIT_DOCKERFILE_DEMO`] with `DEMO_VERSION` and
/// the given `ENV` lines (`DEMO_CRASH_AT_START=1`, `DEMO_CRASH_AFTER=<s>`, `DEMO_UNHEALTHY=1`,
/// `DEMO_ONLY_PROCESS=<process>`).
pub fn demo_dockerfile(version: &str, env: &[(&str, &str)]) -> String {
    let mut dockerfile = KIT_DOCKERFILE_DEMO.to_owned();
    dockerfile.push_str(&format!("ENV DEMO_VERSION={version}\n"));
    for (k, v) in env {
        dockerfile.push_str(&format!("ENV {k}={v}\n"));
    }
    dockerfile
}
