//! The deploy files agree with the gateway: the Kubernetes config passes
//! `switchyard check` as the pod sees it, and the ports, probes, Service,
//! PodDisruptionBudget and ServiceMonitor all point at what it serves.
//! (The systemd unit is checked by `systemd-analyze verify` in `.ci/run`.)

mod support;

use serde_yaml::Value;

fn manifest(name: &str) -> Value {
    let path = format!("deploy/kubernetes/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn the_kubernetes_config_passes_check_and_the_manifests_agree_with_it() {
    let cm = manifest("configmap.yaml");
    let config_text = cm["data"]["switchyard.yaml"]
        .as_str()
        .expect("the ConfigMap holds switchyard.yaml");
    let dep = manifest("deployment.yaml");
    let pod = &dep["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // `switchyard check`, in the container's working directory with the
    // Secret mounted where the Deployment mounts it.
    let workdir = tempfile::tempdir().unwrap();
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let secrets = mounts.iter().find(|m| m["name"] == "secrets").unwrap();
    let wd = container["workingDir"].as_str().unwrap();
    let rel = secrets["mountPath"]
        .as_str()
        .unwrap()
        .strip_prefix(wd)
        .unwrap()
        .trim_start_matches('/');
    std::fs::create_dir_all(workdir.path().join(rel)).unwrap();
    std::fs::write(
        workdir.path().join(rel).join("admin-token"),
        "0123456789abcdef0123456789",
    )
    .unwrap();
    let cfg_path = workdir.path().join("switchyard.yaml");
    std::fs::write(&cfg_path, config_text).unwrap();
    let out = std::process::Command::new(support::raw::BIN)
        .arg("check")
        .arg(&cfg_path)
        .current_dir(workdir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the embedded config fails check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The config file the container is told to read is the ConfigMap's.
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_mount = mounts.iter().find(|m| m["name"] == "config").unwrap()["mountPath"]
        .as_str()
        .unwrap();
    assert!(
        args.contains(&format!("{config_mount}/switchyard.yaml").as_str()),
        "{args:?}"
    );

    let cfg: switchyard::config::Config = serde_yaml::from_str(config_text).unwrap();
    let ports = container["ports"].as_sequence().unwrap();
    let named = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(named("proxy"), port_of(&cfg.listen), "proxy port vs listen");
    assert_eq!(named("admin"), port_of(&cfg.admin.listen), "admin port vs admin.listen");
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "admin", "{probe} is on the admin listener");
        assert!(
            cfg.admin.open_paths.iter().any(|p| p == path),
            "{path} must be open without the token"
        );
    }
    // The pod outlives the shutdown delay and the drain.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let needed = cfg.server.shutdown_delay.get() + cfg.server.drain_timeout.get();
    assert!(
        grace > needed.as_secs(),
        "terminationGracePeriodSeconds {grace} < {needed:?}"
    );
    // Readiness fails within the shutdown delay, so the balancer stops first.
    let r = &container["readinessProbe"];
    let noticed = r["periodSeconds"].as_u64().unwrap() * r["failureThreshold"].as_u64().unwrap();
    assert!(
        noticed < cfg.server.shutdown_delay.get().as_secs(),
        "readiness notices in {noticed}s"
    );
    assert!(cfg.server.watch_config, "a ConfigMap update reaches the pods");
    assert!(cfg.rollout.store.is_some(), "the replicas share one rollout");
    let env: Vec<&str> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"SWITCHYARD_ADVERTISE") && env.contains(&"SWITCHYARD_INSTANCE"),
        "{env:?}"
    );
    assert_eq!(dep["spec"]["replicas"], 3);

    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&dep["spec"]["selector"]["matchLabels"], labels);
    let svc = manifest("service.yaml");
    assert_eq!(&svc["spec"]["selector"], labels);
    let targets: Vec<&str> = svc["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["targetPort"].as_str().unwrap())
        .collect();
    assert!(targets.contains(&"proxy") && targets.contains(&"admin"), "{targets:?}");
    let pdb = manifest("pdb.yaml");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    let sm = manifest("servicemonitor.yaml");
    assert_eq!(&sm["spec"]["selector"]["matchLabels"], &svc["metadata"]["labels"]);
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let kustomization = manifest("kustomization.yaml");
    let listed: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for f in [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
        "servicemonitor.yaml",
    ] {
        assert!(listed.contains(&f), "kustomization lists {f}");
    }
}

#[test]
fn the_dockerfile_builds_the_binary_and_runs_it_as_non_root() {
    let d = std::fs::read_to_string("Dockerfile").unwrap();
    assert!(d.matches("FROM ").count() >= 2, "multi-stage");
    assert!(d.contains("USER nonroot"), "runs as non-root");
    assert!(d.contains("cargo build --release --locked --bin switchyard"));
    // The build needs these, and nothing else from the repository.
    for needed in ["build.rs", "proto", "src", "bench"] {
        assert!(d.contains(needed), "COPY {needed}");
    }
}
