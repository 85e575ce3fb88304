//! The generated CRD against the reference's: every field a reference manifest may
//! set must exist with the same type, so a manifest written for the reference
//! applies unchanged; what agora adds is listed in a reviewed file.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixture("reference-serviceoffer-crd.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn generated() -> Value {
    serde_norway::from_str(&operator::crd_yaml().unwrap()).unwrap()
}

/// Every schema path (`spec.payment.price.perRequest`, `spec.registration.skills[]`,
/// `spec.provenance{}`) with its type.
fn paths(schema: &Value, at: &str, out: &mut BTreeMap<String, String>) {
    let kind = schema["type"].as_str().unwrap_or("<untyped>").to_string();
    if !at.is_empty() {
        out.insert(at.to_string(), kind);
    }
    let join = |name: &str| {
        if at.is_empty() {
            name.to_string()
        } else {
            format!("{at}.{name}")
        }
    };
    if let Some(properties) = schema["properties"].as_object() {
        for (name, child) in properties {
            paths(child, &join(name), out);
        }
    }
    if schema["items"].is_object() {
        paths(&schema["items"], &format!("{at}[]"), out);
    }
    if schema["additionalProperties"].is_object() {
        paths(&schema["additionalProperties"], &format!("{at}{{}}"), out);
    }
}

fn schema_paths(crd: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    paths(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        "",
        &mut out,
    );
    out
}

#[test]
fn generated_schema_has_every_reference_field_with_its_type() {
    let reference = schema_paths(&reference());
    let mut generated = schema_paths(&generated());
    // The API server serves these three on every resource; kube's derive leaves them
    // out of the schema, controller-gen writes them in.
    for (path, kind) in [
        ("apiVersion", "string"),
        ("kind", "string"),
        ("metadata", "object"),
    ] {
        assert!(generated.insert(path.into(), kind.into()).is_none());
    }
    let missing: Vec<&String> = reference
        .keys()
        .filter(|p| !generated.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "fields the reference has and agora's CRD lacks: {missing:?}"
    );
    let changed: Vec<String> = reference
        .iter()
        .filter(|(p, kind)| generated[*p] != **kind)
        .map(|(p, kind)| format!("{p}: reference {kind}, agora {}", generated[p]))
        .collect();
    assert!(changed.is_empty(), "type changes: {changed:?}");
    assert!(
        reference.len() > 80,
        "the walk found only {} reference paths",
        reference.len()
    );

    let additions: String = generated
        .iter()
        .filter(|(p, _)| !reference.contains_key(*p))
        .map(|(p, kind)| format!("{p}: {kind}\n"))
        .collect();
    println!("fields agora adds to the reference CRD:\n{additions}");
    let file = fixture("crd-additions.txt");
    if std::env::var_os("AGORA_UPDATE_FIXTURES").is_some() {
        std::fs::write(&file, &additions).unwrap();
    }
    let kept = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        kept, additions,
        "the generated CRD's additions changed; review them and run AGORA_UPDATE_FIXTURES=1 cargo test -p operator --test it crd::"
    );
}

#[test]
fn names_scope_subresource_and_printer_columns_match_the_reference() {
    let (reference, generated) = (reference(), generated());
    assert_eq!(generated["metadata"]["name"], "serviceoffers.obol.org");
    for key in ["group", "scope"] {
        assert_eq!(generated["spec"][key], reference["spec"][key], "{key}");
    }
    for key in ["kind", "plural", "singular", "shortNames"] {
        assert_eq!(
            generated["spec"]["names"][key], reference["spec"]["names"][key],
            "names.{key}"
        );
    }
    let (r, g) = (
        &reference["spec"]["versions"][0],
        &generated["spec"]["versions"][0],
    );
    for key in [
        "name",
        "served",
        "storage",
        "subresources",
        "additionalPrinterColumns",
    ] {
        assert_eq!(g[key], r[key], "versions[0].{key}");
    }
}

#[test]
fn the_checked_in_crd_is_what_agora_crd_prints() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes/crd.yaml");
    let printed = operator::crd_yaml().unwrap();
    if std::env::var_os("AGORA_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &printed).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == printed,
        "deploy/kubernetes/crd.yaml is stale; run `agora crd > deploy/kubernetes/crd.yaml`"
    );
}
