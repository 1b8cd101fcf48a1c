//! The deployment files in `deploy/` are read the way their tools would read them: the
//! Kubernetes manifests must reference only objects that exist, probe the port the
//! configuration listens on, and carry a configuration the real loader accepts; the
//! Grafana dashboard must query only metrics a running server exports; the compose file
//! and the HAProxy configuration must name the same nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::battery;
use crate::support::{Backend, TestApp};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every YAML document of every manifest listed by the kustomization, in order.
fn k8s_objects() -> Vec<Value> {
    let dir = deploy_dir().join("k8s");
    let kustomization: Value =
        serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let files: Vec<String> = kustomization["resources"]
        .as_sequence()
        .expect("kustomization lists resources")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        files.iter().cloned().collect::<BTreeSet<_>>(),
        on_disk,
        "kustomization.yaml must list every manifest in deploy/k8s"
    );
    let mut objects = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(dir.join(&f)).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{f}: {e}"));
            if !v.is_null() {
                assert!(v["apiVersion"].is_string(), "{f}: apiVersion missing");
                assert!(
                    v["metadata"]["name"].is_string(),
                    "{f}: metadata.name missing"
                );
                objects.push(v);
            }
        }
    }
    objects
}

use serde::Deserialize;

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/k8s"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some(kind))
        .collect()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().unwrap().to_string(),
                        v.as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, pod_labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn kubernetes_manifests_are_consistent_and_carry_a_loadable_configuration() {
    let objects = k8s_objects();
    for kind in [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
    ] {
        assert!(
            !of_kind(&objects, kind).is_empty(),
            "no {kind} in deploy/k8s"
        );
    }
    let deployments = of_kind(&objects, "Deployment");
    assert_eq!(deployments.len(), 1);
    let dep = deployments[0];
    let pod = &dep["spec"]["template"];
    let pod_labels = labels(&pod["metadata"]["labels"]);
    assert!(
        selects(
            &labels(&dep["spec"]["selector"]["matchLabels"]),
            &pod_labels
        ),
        "the Deployment's selector must match its pod template"
    );
    let replicas = dep["spec"]["replicas"].as_u64().unwrap();
    assert!(replicas >= 2, "several nodes: replicas = {replicas}");

    // Volumes: every mounted volume is declared, every ConfigMap/Secret/PVC exists.
    let volumes: BTreeMap<String, &Value> = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v))
        .collect();
    for v in volumes.values() {
        if let Some(name) = v["configMap"]["name"].as_str() {
            find(&objects, "ConfigMap", name);
        }
        if let Some(name) = v["persistentVolumeClaim"]["claimName"].as_str() {
            let pvc = find(&objects, "PersistentVolumeClaim", name);
            let modes = pvc["spec"]["accessModes"].as_sequence().unwrap();
            assert!(
                modes.iter().any(|m| m.as_str() == Some("ReadWriteMany")),
                "the file store is shared by every pod: {name} must be ReadWriteMany"
            );
        }
    }

    // The configuration the pods get: the ConfigMap's file and the Secret's variables,
    // through the real loader.
    let containers: Vec<&Value> = pod["spec"]["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(
            pod["spec"]["initContainers"]
                .as_sequence()
                .into_iter()
                .flatten(),
        )
        .collect();
    let main = pod["spec"]["containers"][0].clone();
    let mut config_path = None;
    for c in &containers {
        let args: Vec<&str> = c["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let i = args.iter().position(|a| *a == "--config").unwrap();
        config_path = Some(args[i + 1].to_string());
        for m in c["volumeMounts"].as_sequence().unwrap() {
            let name = m["name"].as_str().unwrap();
            assert!(volumes.contains_key(name), "volume {name} is not declared");
        }
        for e in c["envFrom"].as_sequence().into_iter().flatten() {
            if let Some(name) = e["secretRef"]["name"].as_str() {
                find(&objects, "Secret", name);
            }
        }
    }
    let config_path = PathBuf::from(config_path.unwrap());
    let mount = main["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == config_path.parent().unwrap())
        .expect("the --config file is on a mounted volume");
    let cm_name = volumes[mount["name"].as_str().unwrap()]["configMap"]["name"]
        .as_str()
        .unwrap();
    let cm = find(&objects, "ConfigMap", cm_name);
    let toml = cm["data"][config_path.file_name().unwrap().to_str().unwrap()]
        .as_str()
        .expect("the ConfigMap holds the file --config names");
    let secret_name = main["envFrom"][0]["secretRef"]["name"].as_str().unwrap();
    let secret = find(&objects, "Secret", secret_name);
    let env: Vec<(String, String)> = secret["stringData"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let k = k.as_str().unwrap().to_string();
            assert!(k.starts_with("FERROACS_"), "{k} is not a ferroacs variable");
            (k, v.as_str().unwrap().to_string())
        })
        .collect();
    let cfg = ferroacs::config::Config::from_toml_and_env("configmap", toml, env)
        .unwrap_or_else(|e| panic!("the ConfigMap's configuration does not load: {e}"));
    assert!(
        cfg.database.url.starts_with("postgres://"),
        "several pods need PostgreSQL"
    );

    // Ports: the container ports are the ones the configuration listens on; the readiness
    // probe asks /healthz on the admin listener; Services route to named container ports.
    let ports: BTreeMap<String, u64> = main["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports["cwmp"], port_of(&cfg.cwmp.listen));
    assert_eq!(ports["admin"], port_of(&cfg.api.listen));
    assert!(
        cfg.api.listen.starts_with("0.0.0.0:"),
        "the probe reaches the admin listener from outside the pod"
    );
    let probe = &main["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"].as_str(), Some("/healthz"));
    assert_eq!(probe["port"].as_str(), Some("admin"));
    for svc in of_kind(&objects, "Service") {
        assert!(selects(&labels(&svc["spec"]["selector"]), &pod_labels));
        for p in svc["spec"]["ports"].as_sequence().unwrap() {
            let target = p["targetPort"].as_str().unwrap();
            assert!(ports.contains_key(target), "Service port {target} unknown");
        }
    }
    for pdb in of_kind(&objects, "PodDisruptionBudget") {
        assert!(selects(
            &labels(&pdb["spec"]["selector"]["matchLabels"]),
            &pod_labels
        ));
        let min = pdb["spec"]["minAvailable"].as_u64().unwrap();
        assert!(min < replicas, "minAvailable {min} would block every drain");
    }
}

#[test]
fn compose_and_haproxy_name_the_same_nodes() {
    let compose: Value = serde_norway::from_str(
        &std::fs::read_to_string(deploy_dir().join("compose.yaml")).unwrap(),
    )
    .unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let nodes: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| s["environment"]["FERROACS_DATABASE_URL"].is_string())
        .map(|(k, _)| k.as_str().unwrap().to_string())
        .collect();
    assert!(nodes.len() >= 2, "{nodes:?}");
    let keys: BTreeSet<&str> = nodes
        .iter()
        .map(|n| {
            services[n.as_str()]["environment"]["FERROACS_SECRETS_KEY"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(keys.len(), 1, "every node needs the same secrets key");
    let cfg = std::fs::read_to_string(deploy_dir().join("haproxy.cfg")).unwrap();
    for backend in ["\nbackend cwmp_nodes", "\nbackend admin_nodes"] {
        let body: String = cfg
            .split(backend)
            .nth(1)
            .unwrap_or_else(|| panic!("{backend} missing"))
            .lines()
            .take_while(|l| !l.starts_with("frontend") && !l.starts_with("backend"))
            .collect::<Vec<_>>()
            .join("\n");
        let servers: BTreeSet<String> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(servers, nodes, "{backend}");
        assert!(body.contains("balance roundrobin"), "{backend}");
    }
}

battery!(grafana_dashboard_queries_only_exported_metrics);

async fn grafana_dashboard_queries_only_exported_metrics(b: Backend) {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy_dir().join("grafana/ferroacs.json")).unwrap(),
    )
    .unwrap();
    let mut used = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        assert!(panel["title"].is_string());
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("ferroacs_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                used.insert(name);
            }
        }
    }
    assert!(used.len() >= 8, "{used:?}");
    let app = TestApp::spawn(b, |_| {}).await;
    let text = app.metrics_text().await;
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the server does not export: {missing:?}"
    );
}
