//! The manifests under deploy/kubernetes, checked without a cluster (none installs
//! here): every document parses and names its apiVersion, kind and name; the
//! kustomizations list every file; the RBAC grants exactly what the operator and
//! gateways call; and the example offer fits the generated CRD's schema and is an
//! offer agora accepts.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every YAML document of `file`.
fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kustomization(dir: &Path) -> Value {
    documents(&dir.join("kustomization.yaml")).remove(0)
}

/// All documents the kustomization in `dir` lists.
fn resources(dir: &Path) -> Vec<Value> {
    kustomization(dir)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| documents(&dir.join(r.as_str().unwrap())))
        .collect()
}

fn find<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn every_manifest_parses_names_itself_and_is_listed_by_a_kustomization() {
    for dir in [deploy(), deploy().join("example")] {
        let listed: BTreeSet<String> = kustomization(&dir)["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        assert_eq!(listed, on_disk, "{}", dir.display());
        for doc in resources(&dir) {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].is_string(), "{field} missing in {doc}");
            }
            assert!(
                doc["metadata"]["name"].is_string(),
                "unnamed {}",
                doc["kind"]
            );
        }
    }
    let all = resources(&deploy());
    let kinds: BTreeSet<&str> = all.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "StatefulSet",
        "Service",
    ] {
        assert!(kinds.contains(kind), "no {kind}");
    }
    for deployment in all
        .iter()
        .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
    {
        let pod = &deployment["spec"]["template"];
        let account = pod["spec"]["serviceAccountName"].as_str().unwrap();
        find(&all, "ServiceAccount", account);
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"],
            pod["metadata"]["labels"]
        );
        let container = &pod["spec"]["containers"][0];
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"],
            false
        );
    }
}

/// `(apiGroup, resource, verb)` a ClusterRole grants.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    out.insert((
                        group.as_str().unwrap().into(),
                        resource.as_str().unwrap().into(),
                        verb.as_str().unwrap().into(),
                    ));
                }
            }
        }
    }
    out
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
}

#[test]
fn rbac_grants_exactly_the_calls_the_operator_and_gateways_make_and_no_secrets() {
    let all = resources(&deploy());
    assert_eq!(
        grants(find(&all, "ClusterRole", "agora-operator")),
        set(&[
            // the controller's watch, the finalizer's JSON patches
            ("obol.org", "serviceoffers", "get"),
            ("obol.org", "serviceoffers", "list"),
            ("obol.org", "serviceoffers", "watch"),
            ("obol.org", "serviceoffers", "patch"),
            // server-side apply of the status
            ("obol.org", "serviceoffers/status", "patch"),
            // the recorder: a new Event, or a series of a repeated one
            ("events.k8s.io", "events", "create"),
            ("events.k8s.io", "events", "patch"),
        ])
    );
    assert_eq!(
        grants(find(&all, "ClusterRole", "agora-gateway")),
        set(&[
            ("obol.org", "serviceoffers", "get"),
            ("obol.org", "serviceoffers", "list"),
            ("obol.org", "serviceoffers", "watch"),
            ("", "services", "get"),
            ("", "services", "list"),
            ("", "services", "watch"),
        ])
    );
    for binding in all.iter().filter(|d| d["kind"] == "ClusterRoleBinding") {
        let name = binding["roleRef"]["name"].as_str().unwrap();
        find(&all, "ClusterRole", name);
        assert_eq!(binding["subjects"][0]["name"], name);
    }
}

/// L11: the facilitator's key is a file (`--key-file`) copied from its Secret into a
/// memory-backed volume, never an environment variable every process of the pod
/// could read, nor a Secret read through the API.
#[test]
fn the_facilitator_key_is_a_mounted_file_not_an_environment_variable() {
    let all = resources(&deploy());
    let pod = &find(&all, "Deployment", "agora-facilitator")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let text = serde_json::to_string(pod).unwrap();
    assert!(!text.contains("AGORA_FACILITATOR_KEY"), "{text}");
    assert!(!text.contains("secretKeyRef"), "{text}");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--key-file").unwrap();
    let key_file = args[at + 1];
    let volumes = pod["volumes"].as_array().unwrap();
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| key_file.starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap();
    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert_eq!(volume["emptyDir"]["medium"], "Memory", "never on a disk");
    let init = &pod["initContainers"][0];
    assert_eq!(init["command"][0], "install");
    assert_eq!(init["command"][2], "0600");
    assert_eq!(init["command"][4], key_file);
    let secret = volumes
        .iter()
        .find(|v| v["secret"]["secretName"] == "agora-facilitator-key")
        .unwrap();
    assert!(
        init["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == secret["name"] && m["readOnly"] == true)
    );
}

/// M7: the gateway replicas' ledgers survive a pod move (a StatefulSet's volume per
/// replica, no emptyDir), and each replica forwards a payment to its home through
/// the headless Service, with a replica count that matches the StatefulSet's.
#[test]
fn gateway_ledgers_live_on_per_replica_volumes_and_replicas_know_each_other() {
    let all = resources(&deploy());
    assert!(
        !all.iter()
            .any(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "agora-gateway"),
        "a Deployment's replicas share no volume and lose an emptyDir on a move"
    );
    let set = find(&all, "StatefulSet", "agora-gateway");
    let pod = &set["spec"]["template"]["spec"];
    let mut ledgers = pod.clone();
    if let Some(volumes) = ledgers["volumes"].as_array_mut() {
        // The facilitator API key's memory volume (M6) holds no ledger.
        volumes.retain(|v| v["name"] != "facilitator-api-key");
    }
    assert!(
        !serde_json::to_string(&ledgers)
            .unwrap()
            .contains("emptyDir"),
        "no ledger on an emptyDir"
    );
    let claim = &set["spec"]["volumeClaimTemplates"][0];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let flag = |name: &str| args[args.iter().position(|a| *a == name).unwrap() + 1];
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == claim["metadata"]["name"])
        .unwrap();
    assert!(flag("--ledger").starts_with(mount["mountPath"].as_str().unwrap()));
    assert_eq!(flag("--replicas"), set["spec"]["replicas"].to_string());
    let headless = find(
        &all,
        "Service",
        set["spec"]["serviceName"].as_str().unwrap(),
    );
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert!(
        flag("--replica-url").starts_with(&format!(
            "http://agora-gateway-{{}}.{}.",
            set["spec"]["serviceName"].as_str().unwrap()
        )),
        "{}",
        flag("--replica-url")
    );
    let index = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "AGORA_REPLICA_INDEX")
        .unwrap();
    assert_eq!(
        index["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
}

/// Checks `value` against the structural schema `schema` at `at`: types, required
/// fields, enums, and no field the API server would prune.
fn conforms(value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
    let kind = schema["type"].as_str().unwrap_or("");
    let ok = match (kind, value) {
        (_, Value::Null) => schema["nullable"] == true,
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_)) => true,
        ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("number", Value::Number(_)) => true,
        ("", _) => true,
        _ => false,
    };
    if !ok {
        errors.push(format!("{at}: {value} is not {kind}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Object(fields) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                if !fields.contains_key(required.as_str().unwrap()) {
                    errors.push(format!(
                        "{at}: {} is required",
                        required.as_str().unwrap_or("?")
                    ));
                }
            }
            for (name, child) in fields {
                let here = format!("{at}.{name}");
                if let Some(property) = schema["properties"].get(name) {
                    conforms(child, property, &here, errors);
                } else if schema["additionalProperties"].is_object() {
                    conforms(child, &schema["additionalProperties"], &here, errors);
                } else if !at.is_empty()
                    || !["apiVersion", "kind", "metadata"].contains(&name.as_str())
                {
                    errors.push(format!(
                        "{here}: not in the schema (the API server would drop it)"
                    ));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                conforms(item, &schema["items"], &format!("{at}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

fn crd_schema() -> Value {
    let crd = resources(&deploy())
        .into_iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn the_example_offer_fits_the_crd_schema_and_agora_accepts_it() {
    let schema = crd_schema();
    let example = resources(&deploy().join("example")).remove(0);
    let mut errors = Vec::new();
    conforms(&example, &schema, "", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");

    let resource: operator::ServiceOffer = serde_json::from_value(example).unwrap();
    let tenancy = operator::policy::Policy {
        cluster_domain: "cluster.local".into(),
        allow_cross_namespace_upstreams: false,
    };
    assert_eq!(
        operator::policy::upstream_refusal(&resource, &tenancy),
        None,
        "the example sells a Service of its own namespace"
    );
    let offer = operator::store::to_offer(&resource, "cluster.local");
    let resolved = offers::validate::resolve(&offer).unwrap();
    assert_eq!(
        resolved.upstream.as_str(),
        "http://ollama.llm.svc.cluster.local:11434/"
    );
}

#[test]
fn the_schema_check_refuses_what_the_api_server_would() {
    let schema = crd_schema();
    let mut bad = resources(&deploy().join("example")).remove(0);
    bad["spec"]["type"] = "gpu".into();
    bad["spec"]["upstream"]["port"] = "11434".into();
    bad["spec"]["colour"] = "blue".into();
    bad["spec"].as_object_mut().unwrap().remove("payment");
    let mut errors = Vec::new();
    conforms(&bad, &schema, "", &mut errors);
    errors.sort();
    assert_eq!(
        errors,
        [
            ".spec.colour: not in the schema (the API server would drop it)",
            ".spec.type: \"gpu\" is not one of [String(\"inference\"), String(\"fine-tuning\"), String(\"http\"), String(\"agent\"), String(\"skill\")]",
            ".spec.upstream.port: \"11434\" is not integer",
            ".spec: payment is required",
        ]
    );
}

/// Kubernetes' own published schemas (PyPI `kubernetes-validate`, installed by
/// scripts/setup into tools/.venv) accept every built-in resource of the base, in
/// strict mode, and refuse a Deployment carrying a field Kubernetes does not have.
/// ServiceOffers have no published schema; the CRD checks above cover the example.
#[test]
fn kubernetes_own_schemas_accept_every_built_in_manifest_and_refuse_a_broken_one() {
    let tool =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/.venv/bin/kubernetes-validate");
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/setup (it installs kubernetes-validate from tools/python/requirements.txt)",
        tool.display()
    );
    let dir = deploy();
    let files: Vec<PathBuf> = kustomization(&dir)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| dir.join(r.as_str().unwrap()))
        .collect();
    let out = std::process::Command::new(&tool)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let passed = said.matches(" passed for resource ").count();
    let documents: usize = files.iter().map(|f| documents(f).len()).sum();
    assert_eq!(passed, documents, "every document was checked: {said}");

    let broken = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(dir.join("operator.yaml"))
        .unwrap()
        .replacen("spec:\n", "spec:\n  replicaz: 2\n", 1);
    let file = broken.path().join("operator.yaml");
    std::fs::write(&file, deployment).unwrap();
    let out = std::process::Command::new(&tool)
        .arg("--strict")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an unknown Deployment field is refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
