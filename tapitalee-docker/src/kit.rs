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
