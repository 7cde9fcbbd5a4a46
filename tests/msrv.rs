//! `rust-version` is true: every package inherits the workspace's, and it equals the highest `rust-version`
//! (or edition minimum) declared in the dependency tree that the packages build with (every feature, this
//! platform; dev-dependencies left out, as cargo does for a crate's users). A dependency update that needs a
//! newer Rust fails here instead of on a user's older toolchain, and a declared version higher than needed
//! fails too.
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// `"1.95"` / `"1.82.0"` → `[1, 95, 0]`.
fn parse_version(s: &str) -> Vec<u64> {
    let mut v: Vec<u64> = s.split('.').map(|p| p.parse().unwrap_or_else(|_| panic!("rust-version {s:?}"))).collect();
    v.resize(3, 0);
    v
}

/// The Rust a package needs by its own declaration: its `rust-version`, at least its edition's first release.
fn needs(pkg: &Value) -> Vec<u64> {
    let edition = match pkg["edition"].as_str() {
        Some("2024") => vec![1, 85, 0],
        Some("2021") => vec![1, 56, 0],
        Some("2018") => vec![1, 31, 0],
        _ => vec![1, 0, 0],
    };
    pkg["rust_version"].as_str().map(parse_version).map_or(edition.clone(), |v| v.max(edition))
}

fn host() -> String {
    let out = Command::new("rustc").arg("-vV").output().expect("rustc -vV runs");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc -vV names the host").to_string()
}

#[test]
fn declared_rust_version_is_the_dependency_trees_maximum() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--all-features", "--filter-platform", &host()])
        .args(["--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let packages: BTreeMap<&str, &Value> =
        meta["packages"].as_array().unwrap().iter().map(|p| (p["id"].as_str().unwrap(), p)).collect();
    let nodes: BTreeMap<&str, &Value> =
        meta["resolve"]["nodes"].as_array().unwrap().iter().map(|n| (n["id"].as_str().unwrap(), n)).collect();
    let members: Vec<&str> =
        meta["workspace_members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();

    let declared: BTreeSet<Option<&str>> = members.iter().map(|m| packages[m]["rust_version"].as_str()).collect();
    assert_eq!(declared.len(), 1, "every package inherits the workspace's rust-version: {declared:?}");
    let ours = parse_version(declared.into_iter().next().unwrap().expect("a rust-version is declared"));

    let mut overall = (vec![0, 0, 0], String::new());
    for member in &members {
        let name = packages[member]["name"].as_str().unwrap();
        let (mut seen, mut stack) = (BTreeSet::new(), vec![*member]);
        while let Some(id) = stack.pop() {
            for dep in nodes[id]["deps"].as_array().unwrap() {
                let kinds = dep["dep_kinds"].as_array().unwrap();
                if kinds.iter().all(|k| k["kind"].as_str() == Some("dev")) {
                    continue;
                }
                let pkg = dep["pkg"].as_str().unwrap();
                if seen.insert(pkg) {
                    stack.push(pkg);
                }
            }
        }
        let (need, by) = seen
            .iter()
            .map(|id| {
                let pkg = packages[id];
                (needs(pkg), format!("{} {}", pkg["name"].as_str().unwrap(), pkg["version"].as_str().unwrap()))
            })
            .max()
            .unwrap_or((vec![0, 0, 0], "nothing".into()));
        println!("{name}: declares {ours:?}, its dependencies need {need:?} ({by})");
        assert!(need <= ours, "{name} declares rust-version {ours:?} but {by} needs {need:?}");
        overall = overall.max((need, by));
    }
    assert_eq!(
        overall.0, ours,
        "the workspace's rust-version {ours:?} is above what the dependencies need ({:?}, {}): lower it",
        overall.0, overall.1
    );
}
