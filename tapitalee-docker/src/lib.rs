//! A local Docker engine as a Tapitalee platform.
//!
//! [`DockerBackend`] implements [`Deployer`](tapitalee_core::Deployer) and
//! [`ImageRegistry`](tapitalee_core::ImageRegistry) over the Docker Engine API (bollard, API
//! 1.41, the engine `DOCKER_HOST` names: [`DockerHost`], `unix://` or `tcp://`), and [`DockerHealth`] is its
//! [`HealthProbe`](tapitalee_core::HealthProbe).
//!
//! - A **fleet** is a set of containers of one revision of one process, labelled with app,
//!   process, revision and fleet, plus one created-but-never-started marker container that
//!   says the fleet exists (so a fleet scaled to zero still exists). The process's **release**
//!   (its primary fleet) is another marker container. Everything is read back from the engine
//!   on every call: no state file, no in-memory map, so a fresh backend carries on after a
//!   crash.
//! - **Traffic** to the web process goes through a weighted reverse proxy per app (the
//!   `tapit-kit proxy` program in a `FROM scratch` image, published on 127.0.0.1), which keeps
//!   running when the deployer exits. The backend sets its exact weights per fleet and its
//!   backends; retiring or scaling down takes instances out of the proxy, waits for their
//!   in-flight requests (bounded), then stops them with SIGTERM and a stop timeout.
//! - **Images**: the engine's own image store is the registry; a tag resolves to the image id,
//!   which every instance then runs. [`builder`] is the workspace's one image builder (the
//!   docker CLI, buildx where installed), used by `tapit image build|deploy` and for the kit's
//!   images.
#![warn(missing_docs)]

mod backend;
pub mod builder;
mod config;
mod deployer;
mod error;
mod health;
mod host;
mod http;
mod kit;
mod labels;
mod logs;
mod proxy;
mod registry;
mod registry_api;

pub use backend::{DockerBackend, DockerBackendBuilder};
pub use config::{AppConfig, ProcessConfig};
pub use health::DockerHealth;
pub use host::{DEFAULT_DOCKER_HOST, DockerHost, InvalidHost};
pub use kit::{
    KIT_DOCKERFILE_DEMO, KIT_DOCKERFILE_PROXY, build_kit_binary, build_kit_image, demo_dockerfile,
};
pub use logs::ContainerLogLine;
