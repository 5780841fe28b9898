//! Rules about where things are said, checked on the source text: each
//! rule of the service is stated in one place, so changing it is one edit.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its non-test code (up to the first
/// `#[cfg(test)]`), comments removed.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            (
                path.strip_prefix(root).unwrap().to_path_buf(),
                code.join("\n"),
            )
        })
        .collect()
}

/// The files whose code (not tests, not comments) contains any of `needles`.
fn saying(needles: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(_, code)| needles.iter().any(|n| code.contains(n)))
        .map(|(path, _)| path.display().to_string())
        .collect()
}

/// Which states a cancel may leave is said by the life cycle
/// (`PublishState::can_become`) and nowhere else: the adapters derive it.
#[test]
fn the_cancellable_states_are_listed_in_one_place() {
    assert_eq!(
        saying(&["PublishState::Queued", "Queued |", "Queued,", ":queued"]),
        ["src/domain/publish.rs"]
    );
}

/// The template routes to the function exactly the path table's routes,
/// each for exactly its methods (and everything else to its catch-all,
/// for the 404s and 405s): a route added to one is added to the other.
#[test]
fn the_template_routes_exactly_the_path_table() {
    use publish_cancel::api::route::{Segment, ROUTES};
    let out = std::process::Command::new("python3")
        .args([
            "tests/deploy/check_template.py",
            "template.yaml",
            "--routes",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 tests/deploy/check_template.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut template: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(template.remove("/{proxy+}"), Some(vec!["ANY".to_owned()]));
    let code: std::collections::BTreeMap<String, Vec<String>> = ROUTES
        .iter()
        .map(|route| {
            let segments: Vec<&str> = route
                .path
                .iter()
                .map(|s| match s {
                    Segment::Literal(text) => text,
                    Segment::Uid => "{uid}",
                    Segment::Aid => "{aid}",
                    Segment::Itid => "{itid}",
                    Segment::Pitid => "{pitid}",
                })
                .collect();
            let methods = route.methods.iter().map(|m| m.to_string()).collect();
            (format!("/api/{}", segments.join("/")), methods)
        })
        .collect();
    assert_eq!(template, code);
}

/// Which paths exist and which methods they answer is the path table's (api::route):
/// the 405's `Allow` and message, the status object's URIs and the local
/// server's example take it from there.
#[test]
fn the_routes_are_listed_in_one_place() {
    assert_eq!(saying(&["\"pimages\"", "pimages/"]), ["src/api/route.rs"]);
    assert_eq!(
        saying(&["Method::DELETE", "\"DELETE\"", "use DELETE"]),
        ["src/api/route.rs"]
    );
}

/// Configuration is read one way (`config::Env`: trimmed, blank is unset),
/// and the process environment only by the binaries' entry points (the
/// Lambda binaries' is `startup::run_lambda`), which pass it down:
/// everything below takes an `Env`, so a test can give it any.
#[test]
fn the_environment_is_read_in_one_place() {
    assert_eq!(
        saying(&["std::env::var", "env::var("]),
        ["src/config/mod.rs"]
    );
    assert_eq!(
        saying(&["Env::process()"]),
        [
            "src/bin/uforge-admin.rs",
            "src/bin/uforge-local.rs",
            "src/startup/lambda.rs"
        ]
    );
}

/// The Lambda binaries are listed once, in lambda-functions.txt: each is a
/// `[[bin]]` of Cargo.toml and a function of the template built by the
/// Makefile, and every function of the template is in it. (The Makefile,
/// scripts/build-arm64 and the tests read the manifest; none lists them.)
#[test]
fn the_lambda_binaries_are_listed_in_one_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
    let functions = crate::common::sample_events::lambda_functions();
    let cargo = read("Cargo.toml");
    let template = read("template.yaml");
    for (logical, binary) in &functions {
        assert!(
            root.join(format!("src/bin/{binary}.rs")).is_file()
                || cargo.contains(&format!("[[bin]]\nname = \"{binary}\""))
                || {
                    // A comment may sit between the header and the name.
                    cargo
                        .split("[[bin]]")
                        .any(|section| section.contains(&format!("\nname = \"{binary}\"")))
                },
            "{binary} is neither src/bin/{binary}.rs nor a [[bin]] of Cargo.toml"
        );
        let resource = template
            .split_once(&format!(
                "\n  {logical}:\n    Type: AWS::Serverless::Function\n"
            ))
            .map(|(_, rest)| rest.split("\n  Properties:").next().unwrap_or_default())
            .map(|head| head.split("\n    Properties:").next().unwrap_or_default());
        assert!(
            resource.is_some_and(|head| head.contains("BuildMethod: makefile")),
            "{logical} is not a function of template.yaml built by the Makefile"
        );
    }
    assert_eq!(
        template.matches("Type: AWS::Serverless::Function").count(),
        functions.len(),
        "a function of the template is missing from lambda-functions.txt"
    );
    for (logical, _, events) in crate::common::sample_events::manifest() {
        if let Some(folder) = events {
            let expected = root.join("events").join(&folder).join("expected.json");
            assert!(expected.is_file(), "{logical}: no {}", expected.display());
        }
    }
    for file in ["Makefile", "scripts/build-arm64", "scripts/test"] {
        let text = read(file);
        for (logical, binary) in &functions {
            assert!(
                !text.contains(logical.as_str()) && !text.contains(&format!(" {binary} ")),
                "{file} names {logical}/{binary}: read lambda-functions.txt instead"
            );
        }
    }
}

/// The production stores are built in the composition root only: every
/// binary and test that wants DynamoDB, SQS or Secrets Manager behind a
/// port gets them from `startup`, so none wires them its own way.
#[test]
fn the_aws_stores_are_composed_in_one_place() {
    assert_eq!(
        saying(&[
            "DynamoUsers::new",
            "DynamoPublishes::new",
            "SqsStopQueue::new",
            "SecretsManagerKeks::shared",
            "DynamoAdmin::new",
        ]),
        ["src/startup/mod.rs"]
    );
}

/// Issue 25: each function's `UpdateItem` grant names exactly the
/// attributes its code's writes name (`dynamodb:Attributes`), read from the
/// code: the publishes adapter's write functions (and the audit the
/// cancel stamps), plus the table's key. The rehearsal proves the grants
/// suffice under enforced IAM; this proves they grant nothing more.
#[test]
fn the_update_grants_name_exactly_the_attributes_the_code_writes() {
    use std::collections::{BTreeMap, BTreeSet};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    // attr::NAME -> its attribute name, from the one place that says it.
    let items = read("src/adapters/dynamodb/items.rs");
    let module = &items[items.find("pub mod attr {").unwrap()..];
    let module = &module[..module.find("\n}").unwrap()];
    let mut names = BTreeMap::new();
    for line in module.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub const ") {
            let (name, value) = rest.split_once(": &str = ").unwrap();
            names.insert(
                name.to_owned(),
                value.trim_end_matches(';').trim_matches('"').to_owned(),
            );
        }
    }
    // The attr:: constants a function's body names.
    let named_in = |source: &str, function: &str| -> BTreeSet<String> {
        let start = source
            .find(&format!("fn {function}("))
            .unwrap_or_else(|| panic!("no fn {function}"));
        // To the brace that closes the function's body.
        let body = &source[start..];
        let open = body.find('{').unwrap();
        let mut depth = 0;
        let end = body[open..]
            .char_indices()
            .find_map(|(i, c)| {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                (depth == 0).then_some(open + i)
            })
            .unwrap();
        let body = &body[..end];
        body.match_indices("attr::")
            .map(|(i, _)| {
                let rest = &body[i + 6..];
                let len = rest
                    .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..len]
            })
            // `attr::PENDING` is the mark's value, not an attribute.
            .filter(|name| *name != "PENDING")
            .map(|name| names[name].clone())
            .collect()
    };
    let publishes = read("src/adapters/dynamodb/publishes.rs");
    let keys: BTreeSet<String> = ["UID", "PUBLISH_KEY"]
        .iter()
        .map(|k| names[*k].clone())
        .collect();
    let stop_writes: BTreeSet<String> = ["claim_stop", "end_attempt"]
        .iter()
        .flat_map(|f| named_in(&publishes, f))
        .chain(keys.iter().cloned())
        .collect();
    let mut cancel_writes = stop_writes.clone();
    cancel_writes.extend(named_in(&publishes, "cancel"));
    cancel_writes.extend(named_in(&items, "audit_values"));
    let grants = crate::common::template::stack_py(&["attribute-grants"]);
    let granted = |role: &str, sid: &str| -> BTreeSet<String> {
        grants[role][sid]
            .as_array()
            .unwrap_or_else(|| {
                panic!("{role} has no {sid} narrowed by dynamodb:Attributes: {grants}")
            })
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    for role in ["CancelFunctionRole", "AutomationFunctionRole"] {
        assert_eq!(granted(role, "CancelPublishes"), cancel_writes, "{role}");
    }
    assert_eq!(
        granted("ReconcilerFunctionRole", "ClearPendingStops"),
        stop_writes,
        "the reconciler claims, clears and parks"
    );
}
