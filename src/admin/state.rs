//! What the admin API works on: the running gateway's parts, and the
//! reloader that SIGHUP and `POST /reload` share.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::compare::Analysis;
use crate::config::{Config, ConfigErrors};
use crate::metrics::Metrics;
use crate::report::gather::Sources;
use crate::rollout::controller::Controller;
use crate::rollout::guard::GuardReport;

/// Re-reads the config file and applies it (SIGHUP and `POST /reload`).
#[derive(Clone)]
pub struct Reloader {
    path: Option<PathBuf>,
    controller: Arc<Controller>,
    analysis: Analysis,
    metrics: Metrics,
    /// The TLS listener's certificates, re-read on every reload.
    tls: Option<Arc<crate::tls::Terminator>>,
}

impl Reloader {
    pub fn new(path: Option<PathBuf>, controller: Arc<Controller>, analysis: Analysis, metrics: Metrics) -> Self {
        Self {
            path,
            controller,
            analysis,
            metrics,
            tls: None,
        }
    }

    /// The config file reloads read.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Whether the running config asks to reload when its file changes.
    pub fn watching(&self) -> bool {
        self.controller.snapshot().config.server.watch_config
    }

    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::Terminator>>) -> Self {
        self.tls = tls;
        self
    }

    /// Re-reads the certificates first: a reload whose certificates cannot
    /// be used changes nothing.
    fn reload_certificates(&self, config: &Config) -> Result<(), String> {
        match (&self.tls, &config.tls) {
            (Some(terminator), Some(tls)) => terminator.reload(tls),
            (None, None) => Ok(()),
            (None, Some(_)) => Err("tls: a TLS listener cannot be added by a reload; restart the gateway".into()),
            (Some(_), None) => Err("tls: the TLS listener cannot be removed by a reload; restart the gateway".into()),
        }
    }

    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let fail = |errors: ConfigErrors| {
            self.metrics
                .upkeep
                .config_reloads
                .with_label_values(&["rejected"])
                .inc();
            for e in &errors.0 {
                tracing::error!(error = %e, "reload rejected; the running config stays in force");
            }
            Err(errors)
        };
        let Some(path) = &self.path else {
            return fail(ConfigErrors(vec![crate::config::ConfigError {
                source: "<reload>".into(),
                line: None,
                path: String::new(),
                message: "this gateway was not started from a config file".into(),
            }]));
        };
        let config = match Config::load(path) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let report_config = config.clone();
        if let Err(e) = self.reload_certificates(&config) {
            return fail(ConfigErrors(vec![crate::config::ConfigError {
                source: path.display().to_string(),
                line: None,
                path: String::new(),
                message: e,
            }]));
        }
        if let Err(e) = self.controller.reload(config) {
            return fail(ConfigErrors(vec![crate::config::ConfigError {
                source: path.display().to_string(),
                line: None,
                path: String::new(),
                message: e,
            }]));
        }
        self.analysis
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reconfigure(&report_config);
        self.metrics.upkeep.config_reloads.with_label_values(&["applied"]).inc();
        Ok(())
    }
}

pub struct AdminState {
    pub controller: Arc<Controller>,
    pub metrics: Metrics,
    pub analysis: Analysis,
    pub guard: Arc<Mutex<GuardReport>>,
    /// The fleet, with a fleet store.
    pub fleet: Option<Arc<crate::rollout::fleet::Context>>,
    pub ready: Arc<AtomicBool>,
    pub reloader: Reloader,
}

impl AdminState {
    pub fn report_sources(&self) -> Sources<'_> {
        Sources {
            controller: &self.controller,
            metrics: &self.metrics,
            analysis: &self.analysis,
            guard: &self.guard,
        }
    }
}
