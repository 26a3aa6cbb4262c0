//! `switchyard check`: every config file validated, and for a good one a
//! summary of what it will do (listeners, certificates and their expiry,
//! backends, rollout, routes, modules).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use switchyard::config::{self, Config};

use super::config_path;

pub(super) fn check(mut files: Vec<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    if files.is_empty() {
        files.push(config_path(config));
    }
    let mut ok = true;
    for file in &files {
        match Config::load(file) {
            Ok(cfg) => print!("{}", summary(file, &cfg)),
            Err(errors) => {
                ok = false;
                eprintln!(
                    "{}: {} error{}",
                    file.display(),
                    errors.0.len(),
                    if errors.0.len() == 1 { "" } else { "s" }
                );
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn summary(file: &Path, c: &Config) -> String {
    let mut s = format!("{}: OK\n", file.display());
    s.push_str(&format!(
        "  listen        {}  (admin {}{})\n",
        c.listen,
        c.admin.listen,
        if c.admin_token().is_some() { ", token set" } else { "" }
    ));
    if let Some(tls) = &c.tls {
        s.push_str(&format!(
            "  tls           {} (TLS {} and up; h2, http/1.1)\n",
            tls.listen,
            match tls.min_version {
                switchyard::config::TlsVersion::V1_2 => "1.2",
                switchyard::config::TlsVersion::V1_3 => "1.3",
            }
        ));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for cert in switchyard::tls::terminate::load_all(tls).unwrap_or_default() {
            let days = (cert.not_after - now).div_euclid(86_400);
            s.push_str(&format!(
                "    certificate {} covers {}; expires {} ({})\n",
                cert.label,
                cert.names.join(", "),
                switchyard::calendar::date(cert.not_after),
                if days < 0 {
                    "EXPIRED".to_string()
                } else {
                    format!("in {days} days")
                }
            ));
        }
    }
    let backend = |name: &str, b: &switchyard::config::BackendConfig, note: &str| {
        let mut line = format!("  {name:<13} {}  ({}{note})\n", b.url, b.protocol().as_str());
        if let Some(t) = b.tls.as_ref().filter(|_| b.is_https()) {
            if t.insecure_skip_verify {
                line.push_str(&format!(
                    "  WARNING: backends.{name}.tls.insecure_skip_verify is on: any certificate is accepted, so anyone on the path can pose as this backend\n"
                ));
            }
            if t.client_cert_file.is_some() {
                line.push_str("                client certificate set (mTLS)\n");
            }
        }
        line
    };
    s.push_str(&backend("old", &c.backends.old, ""));
    s.push_str(&backend("new", &c.backends.new, ""));
    if let Some(t) = &c.backends.old_twin {
        s.push_str(&backend("old_twin", t, "; noise baseline"));
    }
    if let Some(path) = &c.diff.grpc.descriptor_set {
        if let Ok(schema) = switchyard::diff::grpc::GrpcSchema::load(path) {
            s.push_str(&format!(
                "  grpc          messages decoded for {}\n",
                schema.service_names().join(", ")
            ));
        }
    }
    s.push_str(&format!(
        "  rollout       {}% by {}; steps {:?}{}\n",
        c.rollout.percent,
        c.rollout.sticky,
        switchyard::config::percents(&c.rollout.steps),
        c.rollout.step_every.map_or(String::new(), |d| format!(" every {d}"))
    ));
    s.push_str(&format!(
        "  state file    {}\n",
        c.rollout
            .state_file
            .as_ref()
            .map_or("none (a restart forgets rollout changes)".into(), |p| p
                .display()
                .to_string())
    ));
    s.push_str(&format!(
        "  shadow        {}% of {}\n",
        c.shadow.percent,
        c.shadow.methods.join(",")
    ));
    s.push_str(&format!(
        "  guard         {}\n",
        if c.rollout.guard.enabled {
            let g = &c.rollout.guard;
            format!(
                "{} on failure, looking every {}, a test at most {}; false rollbacks held to {} per rollout; slower means ×{} and +{}",
                format!("{:?}", g.action).to_lowercase(),
                g.interval,
                g.window,
                g.false_alarm_rate,
                g.max_latency_ratio,
                g.min_latency_increase
            )
        } else {
            "off".into()
        }
    ));
    if !c.modules.is_empty() {
        s.push_str(&format!("  modules       {}\n", module_names(&c.modules)));
    }
    for r in &c.routes {
        let m = &r.matcher;
        let mut when = Vec::new();
        if let Some(h) = &m.host {
            when.push(format!("host {h}"));
        }
        if let Some(p) = &m.path_prefix {
            when.push(format!("path {p}*"));
        }
        if let Some(ms) = &m.methods {
            when.push(ms.join(","));
        }
        s.push_str(&format!(
            "  route {:<8} {} → {}{}\n",
            r.name,
            if when.is_empty() {
                "everything".into()
            } else {
                when.join(" ")
            },
            r.rollout.percent.map_or("global percent".into(), |p| format!("{p}%")),
            if r.modules.is_empty() {
                String::new()
            } else {
                format!("; modules {}", module_names(&r.modules))
            }
        ));
    }
    s
}

fn module_names(m: &[config::ModuleConfig]) -> String {
    m.iter()
        .map(|m| match m {
            config::ModuleConfig::RateLimit(r) => {
                format!("rate_limit({}/{} by {})", r.rate, r.per, r.key)
            }
            config::ModuleConfig::Rules(r) => format!("rules({})", r.len()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
