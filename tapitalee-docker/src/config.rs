//! An app's configuration: its image repository and its processes.

use tapitalee_core::{Error, ProcessName, Result};

/// One app: where its images live and what processes it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub(crate) repository: String,
    pub(crate) processes: Vec<ProcessConfig>,
    pub(crate) proxy_port: u16,
}

impl AppConfig {
    /// An app whose images are `repository:<tag>` in the engine's image store.
    pub fn new(repository: impl Into<String>) -> Self {
        AppConfig {
            repository: repository.into(),
            processes: Vec::new(),
            proxy_port: 0,
        }
    }

    /// Adds a process.
    #[must_use]
    pub fn process(mut self, process: ProcessConfig) -> Self {
        self.processes.push(process);
        self
    }

    /// The host port (on 127.0.0.1) the app's proxy publishes; 0 (the default) lets the
    /// engine pick one, which [`DockerBackend::proxy_address`](crate::DockerBackend::proxy_address)
    /// reports.
    #[must_use]
    pub fn proxy_port(mut self, port: u16) -> Self {
        self.proxy_port = port;
        self
    }

    /// The image repository.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The processes.
    pub fn processes(&self) -> &[ProcessConfig] {
        &self.processes
    }

    pub(crate) fn find(&self, name: &ProcessName) -> Option<&ProcessConfig> {
        self.processes.iter().find(|p| &p.name == name)
    }

    pub(crate) fn web(&self) -> Option<&ProcessConfig> {
        self.processes.iter().find(|p| p.web.is_some())
    }

    pub(crate) fn validate(&self, app: &str) -> Result<()> {
        tapitalee_core::ImageRef::new(self.repository.clone(), Default::default())?;
        if self.processes.is_empty() {
            return Err(Error::invalid(
                "app configuration",
                app,
                "has no process; add one with AppConfig::process",
            ));
        }
        let webs = self.processes.iter().filter(|p| p.web.is_some()).count();
        if webs > 1 {
            return Err(Error::invalid(
                "app configuration",
                app,
                format!("has {webs} web processes; the app's proxy fronts exactly one"),
            ));
        }
        for (i, p) in self.processes.iter().enumerate() {
            if self.processes[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::invalid(
                    "app configuration",
                    app,
                    format!("names process {:?} twice", p.name.as_str()),
                ));
            }
        }
        Ok(())
    }
}

/// One process of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub(crate) name: ProcessName,
    pub(crate) command: Vec<String>,
    pub(crate) instances: u32,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) web: Option<Web>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Web {
    pub(crate) port: u16,
    pub(crate) health_path: String,
}

impl ProcessConfig {
    /// A process running `instances` containers of the image's default command.
    pub fn new(name: ProcessName, instances: u32) -> Self {
        ProcessConfig {
            name,
            command: Vec::new(),
            instances,
            env: Vec::new(),
            web: None,
        }
    }

    /// The command (replaces the image's `CMD`).
    #[must_use]
    pub fn command<S: Into<String>>(mut self, command: impl IntoIterator<Item = S>) -> Self {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    /// An environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Makes this the web process: it listens on `port` in its container, answers 200 on
    /// `health_path` when healthy, and takes the app's traffic through the proxy.
    #[must_use]
    pub fn web(mut self, port: u16, health_path: impl Into<String>) -> Self {
        self.web = Some(Web {
            port,
            health_path: health_path.into(),
        });
        self
    }

    /// The process's name.
    pub fn name(&self) -> &ProcessName {
        &self.name
    }
}
