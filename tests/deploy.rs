//! The deployment files agree with weft itself: the Kubernetes manifests (deploy/kubernetes),
//! the Helm chart (deploy/helm/weft, rendered for every mode) and the Dockerfile.
//!
//! Rust-only checks read the manifests with weft's own YAML reader and compare them with
//! what weft serves: probe paths answer on the admin router, probe and container ports
//! equal the ports in the embedded weft configs, the grace period outlasts
//! `service.shutdown_timeout`, and every embedded config passes weft's validation.
//! `chart_and_manifests_validate_against_kubernetes_schemas` runs
//! tests/support/k8s_validate.sh (pinned `kubernetes-validate --strict` and
//! `helm-python-sdk` in a virtualenv under the target directory; PyPI is needed on first
//! use only), then applies the same checks to the rendered chart.

#[path = "support/deploy_checks.rs"]
mod checks;

use std::path::PathBuf;

use checks::Manifest;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_manifest_parses_with_a_known_kind_and_namespace() {
    let manifests = checks::load_dir(&repo().join("deploy/kubernetes"));
    assert!(
        manifests.len() >= 12,
        "found only {} objects",
        manifests.len()
    );
    for m in &manifests {
        let kind = m.kind();
        assert!(
            [
                "Namespace",
                "ServiceAccount",
                "ConfigMap",
                "DaemonSet",
                "Deployment",
                "Service",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget",
                "Kustomization",
            ]
            .contains(&kind),
            "{}: unexpected kind {kind}",
            m.file
        );
        if !["Namespace", "Kustomization"].contains(&kind) {
            assert!(
                m.doc["metadata"]["namespace"].is_string(),
                "{}: {kind} without a namespace",
                m.file
            );
        }
    }
}

#[test]
fn no_rbac_objects_because_weft_calls_no_kubernetes_api() {
    let manifests = checks::load_dir(&repo().join("deploy/kubernetes"));
    for m in &manifests {
        assert!(
            !m.kind().contains("Role"),
            "{}: {} is not needed",
            m.file,
            m.kind()
        );
        if m.kind() == "ServiceAccount" {
            assert_eq!(m.doc["automountServiceAccountToken"], false, "{}", m.file);
        }
    }
}

#[test]
fn kustomizations_list_existing_files() {
    for dir in ["deploy/kubernetes", "deploy/kubernetes/sidecar"] {
        let k = &checks::load_file(&repo().join(dir).join("kustomization.yaml"))[0];
        let listed = k.doc["resources"].as_array().into_iter().flatten();
        let patches = k.doc["patches"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| &p["path"]);
        for entry in listed.chain(patches) {
            let rel = entry.as_str().expect("a file name");
            assert!(
                repo().join(dir).join(rel).is_file(),
                "{dir}/kustomization.yaml lists missing {rel}"
            );
        }
    }
}

#[test]
fn the_admin_router_serves_the_probe_paths() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = weft::admin::Telemetry::new();
        assert_eq!(checks::get(&t, "/health/live").await, 200);
        assert_eq!(
            checks::get(&t, "/health/ready").await,
            503,
            "ready before start"
        );
        t.health.set_started();
        assert_eq!(checks::get(&t, "/health/ready").await, 200);
        assert_eq!(checks::get(&t, "/metrics").await, 200);
        t.health.set_shutting_down();
        assert_eq!(
            checks::get(&t, "/health/ready").await,
            503,
            "ready while draining"
        );
        assert_eq!(
            checks::get(&t, "/health/live").await,
            200,
            "live while draining"
        );
    });
    // The manifests probe exactly these paths (checked per workload below).
    assert_eq!(checks::LIVENESS_PATH, "/health/live");
    assert_eq!(checks::READINESS_PATH, "/health/ready");
}

#[test]
fn embedded_weft_configs_are_valid() {
    let manifests = checks::load_dir(&repo().join("deploy/kubernetes"));
    let configs: Vec<_> = manifests
        .iter()
        .filter(|m| m.kind() == "ConfigMap")
        .collect();
    assert_eq!(configs.len(), 3, "agent, gateway and sidecar ConfigMaps");
    for m in configs {
        checks::validate_configmap(m);
    }
}

#[test]
fn workloads_probe_weft_admin_port_and_outlast_its_shutdown() {
    let manifests = checks::load_dir(&repo().join("deploy/kubernetes"));
    let with_weft: Vec<_> = manifests
        .iter()
        .filter(|m| {
            checks::is_workload(m)
                && checks::all_containers(&m.doc)
                    .iter()
                    .any(|c| c["name"] == "weft")
        })
        .collect();
    assert_eq!(with_weft.len(), 2, "agent DaemonSet and gateway Deployment");
    for w in with_weft {
        assert!(!checks::check_workload(w, &manifests, false));
    }
    // The sidecar patch on its own too (it is what users apply to their Deployment).
    let patch =
        &checks::load_file(&repo().join("deploy/kubernetes/sidecar/weft-sidecar-patch.yaml"))[0];
    let app = checks::load_file(&repo().join("deploy/kubernetes/sidecar/example-app.yaml"));
    let patched = checks::strategic_merge(&app[0].doc, &patch.doc);
    let patched = Manifest {
        file: patch.file.clone(),
        doc: patched,
    };
    let native = checks::check_workload(&patched, &manifests, true);
    assert!(
        native,
        "the example uses a native sidecar (init container, restartPolicy Always)"
    );
}

#[test]
fn services_select_the_pods_and_name_their_ports() {
    let manifests = checks::load_dir(&repo().join("deploy/kubernetes"));
    checks::check_services(&manifests);
    let agent_svc = checks::find(&manifests, "Service", "weft-agent");
    assert_eq!(agent_svc.doc["spec"]["internalTrafficPolicy"], "Local");
    let headless = checks::find(&manifests, "Service", "weft-gateway-headless");
    assert_eq!(headless.doc["spec"]["clusterIP"], "None");
    let hpa = checks::find(&manifests, "HorizontalPodAutoscaler", "weft-gateway");
    assert_eq!(hpa.doc["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa.doc["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa.doc["spec"]["scaleTargetRef"]["name"], "weft-gateway");
    checks::find(&manifests, "PodDisruptionBudget", "weft-gateway");
}

#[test]
fn the_agent_balances_over_the_gateway_headless_service() {
    let manifests = checks::load_dir(&repo().join("deploy/kubernetes"));
    let agent = checks::weft_config_json(checks::find(&manifests, "ConfigMap", "weft-agent"));
    let lb = &agent["exporters"]["loadbalancing"];
    assert_eq!(lb["routing_key"], "traceID");
    let headless = checks::find(&manifests, "Service", "weft-gateway-headless");
    let want = format!(
        "{}.{}.svc.cluster.local",
        headless.doc["metadata"]["name"].as_str().unwrap(),
        headless.doc["metadata"]["namespace"].as_str().unwrap()
    );
    assert_eq!(lb["resolver"]["dns"]["hostname"], want.as_str());
    let port = lb["resolver"]["dns"]["port"].as_u64().unwrap();
    let ports: Vec<u64> = headless.doc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert!(
        ports.contains(&port),
        "the headless Service has no port {port}"
    );
    // The gateway's own OTLP gRPC receiver listens on that port.
    let gateway = checks::weft_config_json(checks::find(&manifests, "ConfigMap", "weft-gateway"));
    let grpc = gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap();
    assert_eq!(checks::port_of(grpc), port as u16);
}

#[test]
fn image_tags_and_chart_version_follow_the_crate() {
    let version = env!("CARGO_PKG_VERSION");
    let manifests = checks::load_dir(&repo().join("deploy/kubernetes"));
    let patch =
        checks::load_file(&repo().join("deploy/kubernetes/sidecar/weft-sidecar-patch.yaml"));
    for m in manifests.iter().chain(patch.iter()) {
        for c in checks::all_containers(&m.doc) {
            if c["name"] == "weft" {
                assert_eq!(c["image"], format!("weft:{version}").as_str(), "{}", m.file);
            }
        }
    }
    let chart = &checks::load_file(&repo().join("deploy/helm/weft/Chart.yaml"))[0];
    assert_eq!(chart.doc["appVersion"], version);
}

#[test]
fn dockerfile_exposes_weft_ports_and_runs_as_non_root() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let expose = lines
        .iter()
        .find(|l| l.starts_with("EXPOSE"))
        .expect("EXPOSE");
    let mut ports: Vec<&str> = expose.split_whitespace().skip(1).collect();
    ports.sort();
    assert_eq!(ports, ["13133", "4317", "4318"]);
    assert!(lines.contains(&"USER 65532:65532"), "non-root USER");
    assert!(lines.contains(&r#"ENTRYPOINT ["/usr/local/bin/weft"]"#));
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "multi-stage"
    );
    // Every file copied from the build context exists.
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = l.split_whitespace().nth(1).unwrap();
        if src != "." {
            assert!(repo().join(src).exists(), "Dockerfile copies missing {src}");
        }
    }
    // The image's default config is the embedded default, listening on all interfaces.
    let image_cfg = std::fs::read_to_string(repo().join("deploy/docker/weft.yaml")).unwrap();
    let cmd = lines.iter().find(|l| l.starts_with("CMD")).expect("CMD");
    assert!(cmd.contains("/usr/share/weft/weft.yaml"), "{cmd}");
    let image = checks::validate_text("deploy/docker/weft.yaml", &image_cfg);
    let default = checks::validate_text("default", weft::config::DEFAULT_CONFIG);
    assert_eq!(image.shutdown_timeout, default.shutdown_timeout);
    let (mut a, mut b) = (image.resolved.clone(), default.resolved.clone());
    for tree in [&mut a, &mut b] {
        tree["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = Value::Null;
        tree["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = Value::Null;
        tree["extensions"]["health_check"]["endpoint"] = Value::Null;
    }
    assert_eq!(
        a, b,
        "deploy/docker/weft.yaml drifted from config/default.yaml"
    );
    for ep in [
        &image.resolved["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        &image.resolved["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        &image.resolved["extensions"]["health_check"]["endpoint"],
    ] {
        assert!(ep.as_str().unwrap().starts_with("0.0.0.0:"), "{ep}");
    }
}

#[test]
fn every_helm_value_is_documented() {
    let path = repo().join("deploy/helm/weft/values.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let undocumented = checks::undocumented_keys(&text);
    assert!(
        undocumented.is_empty(),
        "values.yaml keys without a comment above: {undocumented:?}"
    );
}

#[test]
fn chart_and_manifests_validate_against_kubernetes_schemas() {
    let out = tempfile::tempdir().unwrap();
    let script = repo().join("tests/support/k8s_validate.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(out.path())
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "{} failed (its output is above)",
        script.display()
    );

    // The rendered chart must satisfy the same checks as the plain manifests.
    let helm = out.path().join("helm");
    for (variant, sidecar) in [
        ("daemonset", false),
        ("deployment", false),
        ("deployment-fixed-replicas", false),
        ("sidecar", true),
        ("sidecar-plain-container", true),
    ] {
        let rendered = checks::load_dir(&helm.join(variant));
        let configs: Vec<_> = rendered
            .iter()
            .filter(|m| m.kind() == "ConfigMap")
            .collect();
        assert_eq!(configs.len(), 1, "{variant}");
        checks::validate_configmap(configs[0]);
        let workloads: Vec<_> = rendered.iter().filter(|m| checks::is_workload(m)).collect();
        assert_eq!(workloads.len(), 1, "{variant}: one workload");
        let native = checks::check_workload(workloads[0], &rendered, sidecar);
        assert_eq!(native, variant == "sidecar", "{variant}");
        if !sidecar {
            checks::check_services(&rendered);
        }
        check_preset(variant, &checks::weft_config_json(configs[0]));
    }
}

/// The chart's resourcedetection preset: node name only on the agent, the pod's identity in
/// a sidecar, nothing on a gateway.
fn check_preset(variant: &str, config: &Value) {
    let rd = &config["processors"]["resourcedetection/k8s"];
    let in_traces = config["service"]["pipelines"]["traces"]["processors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "resourcedetection/k8s");
    if variant.starts_with("deployment") {
        assert!(
            rd.is_null() && !in_traces,
            "{variant}: a gateway must not stamp its own location"
        );
        return;
    }
    assert!(in_traces, "{variant}");
    assert_eq!(rd["override"], false, "{variant}");
    let allow: Vec<&str> = rd["env"]["allow_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if variant == "daemonset" {
        assert_eq!(allow, ["k8s.node.name"]);
    } else {
        assert!(allow.contains(&"k8s.pod.name"), "{variant}");
    }
}
