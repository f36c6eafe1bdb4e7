//! Checks shared by tests/deploy.rs for hand-written manifests and the rendered Helm chart:
//! YAML loading with weft's own reader, a strategic merge (for the sidecar patch), and
//! the per-workload comparison with what weft serves and how it is configured.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use weft::config::{self, Source};

pub const LIVENESS_PATH: &str = "/health/live";
pub const READINESS_PATH: &str = "/health/ready";

/// One Kubernetes object (or kustomization) from a file.
pub struct Manifest {
    pub file: String,
    pub doc: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }
}

/// Every YAML document of a file (documents split at `---` lines), parsed by weft's reader.
pub fn load_file(path: &Path) -> Vec<Manifest> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = path.display().to_string();
    let mut out = Vec::new();
    let mut chunk = String::new();
    let mut flush = |chunk: &mut String| {
        let node = config::yaml::parse(&file, chunk).unwrap_or_else(|e| panic!("{e}"));
        let doc = node.to_json();
        if !doc.is_null() {
            out.push(Manifest {
                file: file.clone(),
                doc,
            });
        }
        chunk.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut chunk);
        } else {
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    flush(&mut chunk);
    out
}

/// Every object under `dir` (recursively), patches (`*-patch.yaml`) aside.
pub fn load_dir(dir: &Path) -> Vec<Manifest> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml")
                && !p.to_string_lossy().ends_with("-patch.yaml")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    files.iter().flat_map(|f| load_file(f)).collect()
}

pub fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

pub fn is_workload(m: &Manifest) -> bool {
    matches!(m.kind(), "DaemonSet" | "Deployment")
}

/// Containers and init containers of a workload.
pub fn all_containers(doc: &Value) -> Vec<&Value> {
    let spec = &doc["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// The parts of a validated weft config the checks need.
pub struct Checked {
    pub shutdown_timeout: Duration,
    pub resolved: Value,
}

/// Validates a weft config with weft's own validator (every section, the agent's
/// `loadbalancing` exporter included).
pub fn validate_text(name: &str, text: &str) -> Checked {
    let no_env = |_: &str| None;
    let sources = [Source {
        name: name.to_string(),
        text: text.to_string(),
    }];
    match config::load_and_validate(&sources, &no_env) {
        Ok(v) => Checked {
            shutdown_timeout: v.shutdown_timeout,
            resolved: v.resolved,
        },
        Err(errs) => panic!("{name} is not a valid weft config:\n{errs}"),
    }
}

fn configmap_text<'a>(m: &'a Manifest, key: &str) -> &'a str {
    m.doc["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{}: ConfigMap {} has no key {key}", m.file, m.name()))
}

pub fn validate_configmap(m: &Manifest) -> Checked {
    validate_text(
        &format!("{} ({})", m.file, m.name()),
        configmap_text(m, "weft.yaml"),
    )
}

pub fn weft_config_json(m: &Manifest) -> Value {
    validate_configmap(m).resolved
}

pub fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("endpoint {endpoint:?} has no port"))
}

fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint.rsplit_once(':').map_or("", |(h, _)| h);
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "")
}

/// Bytes in a Kubernetes memory quantity ("512Mi", "2Gi", "1G", "1048576").
fn quantity_bytes(q: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().expect("integer quantity") * mult;
        }
    }
    q.parse().expect("memory quantity")
}

fn resolve_port(port: &Value, container: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("port name or number");
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("probe port {name} is not declared on the container"))
}

fn env_field_ref<'a>(container: &'a Value, var: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)?["valueFrom"]["fieldRef"]["fieldPath"]
        .as_str()
}

/// Checks one workload's weft container against its config. Returns whether weft runs as a
/// native sidecar (init container with `restartPolicy: Always`).
pub fn check_workload(w: &Manifest, manifests: &[Manifest], sidecar: bool) -> bool {
    let at = format!("{} ({} {})", w.file, w.kind(), w.name());
    let pod = &w.doc["spec"]["template"]["spec"];
    let inits = pod["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let in_init = inits.iter().find(|c| c["name"] == "weft");
    let native = in_init.is_some();
    let c = match in_init {
        Some(c) => {
            assert_eq!(
                c["restartPolicy"], "Always",
                "{at}: weft as an init container must be a native sidecar"
            );
            c.clone()
        }
        None => all_containers(&w.doc)
            .into_iter()
            .find(|c| c["name"] == "weft")
            .unwrap_or_else(|| panic!("{at}: no container named weft"))
            .clone(),
    };

    // The config file weft is started with comes from a ConfigMap in the same namespace.
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.len() >= 2 && args[0] == "--config",
        "{at}: args {args:?}"
    );
    let (dir, key) = args[1].rsplit_once('/').expect("an absolute config path");
    let mount = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"] == dir)
        .unwrap_or_else(|| panic!("{at}: nothing mounted at {dir}"));
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{at}: no volume {}", mount["name"]));
    let cm_name = volume["configMap"]["name"]
        .as_str()
        .expect("a ConfigMap volume");
    let ns = w.doc["metadata"]["namespace"].as_str();
    let cm = manifests
        .iter()
        .find(|m| {
            m.kind() == "ConfigMap"
                && m.name() == cm_name
                && m.doc["metadata"]["namespace"].as_str() == ns
        })
        .unwrap_or_else(|| panic!("{at}: ConfigMap {cm_name} not found in its namespace"));
    let cfg = validate_text(&format!("{} ({cm_name})", cm.file), configmap_text(cm, key));
    let r = &cfg.resolved;

    // Probes hit weft's admin server on the port its config binds, on the paths it serves.
    let admin = r["extensions"]["health_check"]["endpoint"]
        .as_str()
        .expect("health_check.endpoint");
    assert!(
        !is_loopback(admin),
        "{at}: the kubelet cannot reach an admin server on {admin}"
    );
    let admin_port = u64::from(port_of(admin));
    for (probe, paths) in [
        ("livenessProbe", &[LIVENESS_PATH][..]),
        ("readinessProbe", &[READINESS_PATH][..]),
        ("startupProbe", &[LIVENESS_PATH, READINESS_PATH][..]),
    ] {
        let get = &c[probe]["httpGet"];
        assert!(get.is_object(), "{at}: no {probe}");
        let path = get["path"].as_str().unwrap_or("");
        assert!(paths.contains(&path), "{at}: {probe} path {path}");
        assert_eq!(
            resolve_port(&get["port"], &c),
            admin_port,
            "{at}: {probe} port"
        );
    }

    // Declared OTLP ports are the ones the receivers bind, on a reachable address.
    for (port_name, proto) in [("otlp-grpc", "grpc"), ("otlp-http", "http")] {
        let endpoint = r["receivers"]["otlp"]["protocols"][proto]["endpoint"]
            .as_str()
            .expect("endpoint");
        match c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == port_name)
        {
            Some(p) => {
                assert_eq!(
                    p["containerPort"].as_u64(),
                    Some(u64::from(port_of(endpoint))),
                    "{at}: {port_name}"
                );
                assert!(
                    !is_loopback(endpoint),
                    "{at}: {proto} receiver on {endpoint} is unreachable"
                );
            }
            None => assert!(sidecar, "{at}: port {port_name} not declared"),
        }
    }

    // weft drains within shutdown_timeout after SIGTERM, which comes after the preStop pause.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        Duration::from_secs(grace) > cfg.shutdown_timeout + Duration::from_secs(pre_stop),
        "{at}: grace {grace}s <= shutdown_timeout {:?} + preStop {pre_stop}s",
        cfg.shutdown_timeout
    );

    // Locked down: non-root, read-only root, no capabilities, default seccomp.
    let (sc, psc) = (&c["securityContext"], &pod["securityContext"]);
    let either = |k: &str| if sc[k].is_null() { &psc[k] } else { &sc[k] };
    assert_eq!(either("runAsNonRoot"), true, "{at}: runAsNonRoot");
    assert_ne!(either("runAsUser").as_u64(), Some(0), "{at}: runs as root");
    assert_eq!(
        either("seccompProfile")["type"],
        "RuntimeDefault",
        "{at}: seccomp"
    );
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}");
    assert!(
        sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL")),
        "{at}: capabilities not dropped"
    );

    // The downward-API variables the `env` detector reads.
    for (var, field) in [
        ("K8S_NODE_NAME", "spec.nodeName"),
        ("K8S_POD_NAME", "metadata.name"),
        ("K8S_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(env_field_ref(&c, var), Some(field), "{at}: env {var}");
    }

    // Requests and limits, with memory_limiter's hard limit below the container's.
    let res = &c["resources"];
    for k in ["requests.cpu", "requests.memory", "limits.memory"] {
        let (a, b) = k.split_once('.').unwrap();
        assert!(res[a][b].is_string(), "{at}: resources.{k} missing");
    }
    let limit = quantity_bytes(res["limits"]["memory"].as_str().unwrap());
    for (id, p) in r["processors"].as_object().into_iter().flatten() {
        if let (true, Some(mib)) = (id.starts_with("memory_limiter"), p["limit_mib"].as_u64()) {
            assert!(
                mib << 20 < limit,
                "{at}: {id}.limit_mib {mib} >= container limit"
            );
        }
    }

    if sidecar {
        // The application sends to the sidecar over localhost.
        let grpc = port_of(
            r["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
                .as_str()
                .unwrap(),
        );
        let app_has_endpoint = all_containers(&w.doc)
            .iter()
            .filter(|x| x["name"] != "weft")
            .any(|x| {
                x["env"].as_array().into_iter().flatten().any(|e| {
                    e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"
                        && e["value"] == format!("http://localhost:{grpc}").as_str()
                })
            });
        assert!(
            app_has_endpoint,
            "{at}: the application is not pointed at the sidecar"
        );
    } else {
        assert!(
            pod["serviceAccountName"].is_string(),
            "{at}: serviceAccountName"
        );
        assert_eq!(
            pod["automountServiceAccountToken"], false,
            "{at}: API token mounted"
        );
    }
    native
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

/// Services, the HPA and the PDB select existing pods and name ports those pods declare.
pub fn check_services(manifests: &[Manifest]) {
    let workloads: Vec<&Manifest> = manifests.iter().filter(|m| is_workload(m)).collect();
    let pods_for = |selector: &Value| -> Vec<&Manifest> {
        workloads
            .iter()
            .copied()
            .filter(|w| labels_match(selector, &w.doc["spec"]["template"]["metadata"]["labels"]))
            .collect()
    };
    for s in manifests.iter().filter(|m| m.kind() == "Service") {
        let at = format!("{} (Service {})", s.file, s.name());
        let targets = pods_for(&s.doc["spec"]["selector"]);
        assert_eq!(
            targets.len(),
            1,
            "{at}: selects {} workloads",
            targets.len()
        );
        let weft = all_containers(&targets[0].doc)
            .into_iter()
            .find(|c| c["name"] == "weft")
            .expect("weft");
        for p in s.doc["spec"]["ports"].as_array().expect("ports") {
            let target = if p["targetPort"].is_null() {
                &p["port"]
            } else {
                &p["targetPort"]
            };
            let container_port = resolve_port(target, weft);
            assert!(
                [4317, 4318].contains(&container_port),
                "{at}: targets port {container_port}, not an OTLP port"
            );
        }
    }
    for m in manifests
        .iter()
        .filter(|m| m.kind() == "PodDisruptionBudget")
    {
        assert_eq!(
            pods_for(&m.doc["spec"]["selector"]["matchLabels"]).len(),
            1,
            "{}: PDB selector",
            m.file
        );
    }
    for m in manifests
        .iter()
        .filter(|m| m.kind() == "HorizontalPodAutoscaler")
    {
        let target = &m.doc["spec"]["scaleTargetRef"];
        find(
            manifests,
            target["kind"].as_str().unwrap(),
            target["name"].as_str().unwrap(),
        );
    }
    for w in &workloads {
        let sel = &w.doc["spec"]["selector"]["matchLabels"];
        assert!(
            labels_match(sel, &w.doc["spec"]["template"]["metadata"]["labels"]),
            "{}: selector",
            w.file
        );
    }
}

/// Kubernetes' strategic merge as far as weft's patches use it: maps merge, lists of
/// named objects merge by name, other lists are replaced.
pub fn strategic_merge(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            let mut out = b.clone();
            for (k, v) in p {
                let merged = match out.get(k) {
                    Some(existing) => strategic_merge(existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(b), Value::Array(p)) if b.iter().chain(p).all(|i| i["name"].is_string()) => {
            let mut out = b.clone();
            for item in p {
                match out.iter_mut().find(|e| e["name"] == item["name"]) {
                    Some(existing) => *existing = strategic_merge(existing, item),
                    None => out.push(item.clone()),
                }
            }
            Value::Array(out)
        }
        _ => patch.clone(),
    }
}

/// Keys in a values.yaml whose preceding non-blank line is not a comment.
pub fn undocumented_keys(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prev = "";
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let is_key = !t.starts_with('#')
            && !t.starts_with('-')
            && t.split_once(':').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_-./".contains(ch))
            });
        if is_key && !prev.starts_with('#') {
            out.push(t.to_string());
        }
        prev = t;
    }
    out
}

/// Status of GET `path` on weft's admin router.
pub async fn get(t: &weft::admin::Telemetry, path: &str) -> u16 {
    use tower::ServiceExt;
    let req = http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = weft::admin::server::router(t.clone())
        .oneshot(req)
        .await
        .unwrap();
    resp.status().as_u16()
}
