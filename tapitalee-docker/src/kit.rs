//! Images of the kit (`tapit-kit`: proxy, demo app): `FROM scratch` around the statically
//! linked binary, built with the workspace's one image builder ([`crate::builder`]).

use std::path::Path;
use std::process::Command;

use tapitalee_core::{Error, Result};

use crate::builder::{Build, DockerCli};

/// The Dockerfile of the proxy image: the kit binary, run as `tapit-kit proxy`.
pub const KIT_DOCKERFILE_PROXY: &str = "FROM scratch\nCOPY tapit-kit /tapit-kit\nEXPOSE 80 81\nENTRYPOINT [\"/tapit-kit\"]\nCMD [\"proxy\"]\n";

/// The Dockerfile of the demo app, before its `ENV` lines: the kit binary run as
/// `tapit-kit demo`, with a Docker health check of its health path.
pub const KIT_DOCKERFILE_DEMO: &str = "FROM scratch\nCOPY tapit-kit /tapit-kit\nHEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD [\"/tapit-kit\", \"check\"]\nENTRYPOINT [\"/tapit-kit\"]\nCMD [\"demo\"]\n";

/// Builds `reference` (`repository[:tag]`, `latest` when untagged) from a Dockerfile's text
/// and a build context directory, with the workspace's one image builder
/// ([`DockerCli::build`]): buildx where installed, the classic builder otherwise. The CLI
/// reaches the engine `DOCKER_HOST` names. Returns the image id.
fn build_in(context: &Path, dockerfile: &str, reference: &str) -> Result<String> {
    std::fs::write(context.join("Dockerfile"), dockerfile)
        .map_err(|e| Error::platform("image build", format!("writing the Dockerfile: {e}")))?;
    let (repository, tag) = split_reference(reference);
    let cli = DockerCli::new();
    cli.build(&Build::new(repository, tag), context)?;
    Ok(cli.image_id(reference)?)
}

/// `repo:tag` → (`repo`, `tag`); a `:` before the last `/` is a registry port, not a tag.
fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
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
/// When the docker CLI is missing, no engine answers, or the build fails (with the CLI's
/// last output lines).
pub fn build_kit_image(binary: &Path, dockerfile: &str, tag: &str) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("tapit-kit-{}", ulid::Ulid::new()));
    let io =
        |e: std::io::Error| Error::platform("image build", format!("preparing the context: {e}"));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let result = std::fs::copy(binary, dir.join("tapit-kit"))
        .map_err(io)
        .and_then(|_| build_in(&dir, dockerfile, tag));
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

#[cfg(test)]
mod tests {
    #[test]
    fn references_split_at_the_tag_not_the_port() {
        use super::split_reference;
        assert_eq!(
            split_reference("tapitalee/proxy:latest"),
            ("tapitalee/proxy", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/demo"),
            ("127.0.0.1:5000/demo", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/demo:v2"),
            ("127.0.0.1:5000/demo", "v2")
        );
        assert_eq!(split_reference("demo"), ("demo", "latest"));
    }
}
