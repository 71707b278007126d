//! The labels that make a container part of a fleet, and the names the backend gives things.

use tapitalee_core::{AppName, FleetId};

pub(crate) const APP: &str = "tapit.app";
pub(crate) const PROCESS: &str = "tapit.process";
pub(crate) const FLEET: &str = "tapit.fleet";
pub(crate) const ROLE: &str = "tapit.role";
pub(crate) const REVISION: &str = "tapit.revision";
pub(crate) const REPOSITORY: &str = "tapit.image.repository";
pub(crate) const TAG: &str = "tapit.image.tag";
pub(crate) const DIGEST: &str = "tapit.image.digest";
pub(crate) const INDEX: &str = "tapit.index";
pub(crate) const SEQ: &str = "tapit.seq";
pub(crate) const DEPLOYMENT: &str = "tapit.deployment";
pub(crate) const INITIATOR: &str = "tapit.initiator";

/// What a labelled container is.
pub(crate) mod role {
    /// The marker saying a fleet exists (created, never started).
    pub(crate) const FLEET: &str = "fleet";
    /// One instance of a fleet.
    pub(crate) const INSTANCE: &str = "instance";
    /// The marker naming a process's primary fleet (created, never started); the newest wins.
    pub(crate) const RELEASE: &str = "release";
    /// The app's proxy.
    pub(crate) const PROXY: &str = "proxy";
}

/// The app's network: its proxy and its instances.
pub(crate) fn network(app: &AppName) -> String {
    format!("tapit-{app}")
}

/// The app's proxy container.
pub(crate) fn proxy(app: &AppName) -> String {
    format!("tapit-{app}-proxy")
}

/// A fleet's marker container.
pub(crate) fn fleet_marker(app: &AppName, fleet: &FleetId) -> String {
    format!("tapit-{app}-{fleet}")
}

/// An instance container.
pub(crate) fn instance(app: &AppName, fleet: &FleetId, index: u32) -> String {
    format!("tapit-{app}-{fleet}-{index}")
}
