//! The facilitator's exposure in the Kubernetes base (issue 21, M6), checked without
//! a cluster: a NetworkPolicy admits only gateway and operator pods to it, it
//! requires its API key (`--api-key-file`, from a Secret copied to a private file on
//! a memory volume), and every gateway replica sends that key.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Every document the base's kustomization lists.
fn base() -> Vec<Value> {
    let dir = deploy();
    let kustomization = documents(&dir.join("kustomization.yaml")).remove(0);
    kustomization["resources"]
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

fn args(pod: &Value) -> Vec<String> {
    pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The file given to `flag`, and the init container that writes it 0600 on a memory
/// volume the main container mounts read-only.
fn key_file_on_memory(pod: &Value, flag: &str) {
    let args = args(pod);
    let at = args.iter().position(|a| a == flag).unwrap();
    let file = &args[at + 1];
    let init = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"].as_array().unwrap().last().unwrap() == file)
        .unwrap_or_else(|| panic!("no init container writes {file}"));
    assert_eq!(init["command"][0], "install");
    assert_eq!(init["command"][2], "0600");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| file.starts_with(m["mountPath"].as_str().unwrap()))
        .unwrap();
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["emptyDir"]["medium"], "Memory", "never on a disk");
    let secret = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "agora-facilitator-api-key")
        .unwrap();
    assert!(
        init["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == secret["name"])
    );
}

#[test]
fn only_gateway_and_operator_pods_reach_the_facilitator_and_they_need_its_key() {
    let all = base();
    let policy = find(&all, "NetworkPolicy", "agora-facilitator");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "agora-facilitator"})
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "one rule, no open one");
    let admitted: Vec<&Value> = rules[0]["from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|peer| {
            assert!(peer["namespaceSelector"].is_null() && peer["ipBlock"].is_null());
            &peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        })
        .collect();
    assert_eq!(
        admitted,
        [&json!("agora-gateway"), &json!("agora-operator")]
    );
    // The selectors match the pods the base runs.
    for (kind, name) in [
        ("StatefulSet", "agora-gateway"),
        ("Deployment", "agora-operator"),
        ("Deployment", "agora-facilitator"),
    ] {
        let labels = &find(&all, kind, name)["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], name);
    }

    let facilitator = &find(&all, "Deployment", "agora-facilitator")["spec"]["template"]["spec"];
    key_file_on_memory(facilitator, "--api-key-file");
    assert!(
        !args(facilitator).iter().any(|a| a == "--no-auth"),
        "the key is required"
    );
    let gateway = &find(&all, "StatefulSet", "agora-gateway")["spec"]["template"]["spec"];
    key_file_on_memory(gateway, "--facilitator-api-key-file");
}
