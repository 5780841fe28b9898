//! Docs drift is a defect: every file, Rust item and `uforge-admin`
//! command that the project's texts name must exist. The texts: the
//! README, docs/, comments and docs of src/, tests/, benches/ and
//! scripts/, Cargo.toml, template.yaml, the Makefile, lambda-functions.txt
//! and events/expected.json.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every text of the project that may name a file, an item or a command.
fn texts() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "scripts", "docs", "examples"] {
        walk(&root().join(dir), &mut files);
    }
    for file in [
        "README.md",
        "Cargo.toml",
        "template.yaml",
        "Makefile",
        "lambda-functions.txt",
        "events/expected.json",
        "events/automation/expected.json",
        ".ci/run",
    ] {
        files.push(root().join(file));
    }
    files
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            !name.contains("/fixtures/")
                && !name.contains("proptest-regressions")
                && !name.contains("/target/")
        })
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            Some((p.strip_prefix(root()).unwrap().display().to_string(), text))
        })
        .collect()
}

/// The project's top-level folders a path may start with.
const FOLDERS: &[&str] = &[
    "src/",
    "tests/",
    "benches/",
    "scripts/",
    "docs/",
    "events/",
    "examples/",
    "seed/",
    "fuzz/",
    ".ci/",
];

/// A path-like word: a project folder, then path characters, ending in a
/// file name or a folder.
fn paths_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.char_indices() {
        let rest = &text[i..];
        let Some(folder) = FOLDERS.iter().find(|f| rest.starts_with(**f)) else {
            continue;
        };
        // Only at the start of a word (not inside `target/src/…`).
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || "/_.-".contains(c)) {
            continue;
        }
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || "/_.-*{}$<>".contains(c)))
            .unwrap_or(rest.len());
        let path = rest[..len].trim_end_matches(['.', '-']);
        if path.len() > folder.len() {
            out.push(path.to_owned());
        }
    }
    out
}

/// The files and folders the texts name exist (patterns and placeholders
/// aside: `*`, `{…}`, `<…>`, `$…`).
#[test]
fn every_file_named_exists() {
    let mut missing = BTreeSet::new();
    for (file, text) in texts() {
        for path in paths_in(&text) {
            // Patterns, placeholders and build outputs are not files of the project.
            if path.contains(['*', '{', '<', '$']) || path.contains("/target/") {
                continue;
            }
            // A binary or example named without its `.rs`.
            let named = root().join(&path);
            if !named.exists() && !named.with_extension("rs").exists() {
                missing.insert(format!("{file}: {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not there:\n{}",
        Vec::from_iter(missing).join("\n")
    );
}

/// `a::b::c` in backquotes, in the docs.
fn items_in(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains("::")
                && s.split("::").all(|seg| {
                    !seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || c == '_')
                })
        })
        .map(str::to_owned)
        .collect()
}

/// Where the item `path` (`module::…::name`, or `suite::module::test`)
/// would be defined, and the name to find there; `None` for items of other
/// crates.
fn locate(path: &str) -> Option<(PathBuf, String)> {
    let segments: Vec<&str> = path.split("::").collect();
    let name = segments.last()?.to_string();
    if segments[0] == "suite" {
        let file = root()
            .join("tests/suite")
            .join(format!("{}.rs", segments.get(1)?));
        let name = if segments.len() > 2 {
            name
        } else {
            String::new()
        };
        return Some((file, name));
    }
    // The longest prefix that is a module of src/.
    let mut found = None;
    for n in 1..=segments.len() {
        let module = segments[..n].join("/");
        for candidate in [format!("src/{module}.rs"), format!("src/{module}/mod.rs")] {
            if root().join(&candidate).is_file() {
                found = Some((root().join(candidate), n));
            }
        }
    }
    let (file, depth) = found?;
    if depth == segments.len() {
        return Some((file, String::new()));
    }
    Some((file, name))
}

/// The Rust items the docs name (`api::route`, `cancel::Canceller`,
/// `suite::emulator::json_representations`) are where they say: the module
/// exists, and the item's name is defined in it.
#[test]
fn every_rust_item_named_in_the_docs_exists() {
    let mut missing = BTreeSet::new();
    for (file, text) in texts() {
        if !file.ends_with(".md") {
            continue;
        }
        for item in items_in(&text) {
            let Some((module, name)) = locate(&item) else {
                // Not ours (std, a crate), or a module that does not exist.
                let first = item.split("::").next().unwrap_or_default();
                let ours = root().join("src").join(first).exists()
                    || root().join(format!("src/{first}.rs")).exists()
                    || first == "suite";
                if ours {
                    missing.insert(format!("{file}: {item}"));
                }
                continue;
            };
            let Ok(source) = std::fs::read_to_string(&module) else {
                missing.insert(format!("{file}: {item} ({} missing)", module.display()));
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let defined = [
                "fn ", "struct ", "enum ", "trait ", "type ", "const ", "static ", "mod ",
            ]
            .iter()
            .any(|kind| source.contains(&format!("{kind}{name}")))
                || source.contains(&format!("    {name},"))
                || source.contains(&format!("    {name}("))
                || source.contains(&format!("    {name} {{"));
            if !defined {
                missing.insert(format!("{file}: {item}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not defined:\n{}",
        Vec::from_iter(missing).join("\n")
    );
}

/// Every `uforge-admin <command> <subcommand>` the texts show is one the
/// CLI takes.
#[test]
fn every_uforge_admin_command_named_exists() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_uforge-admin"));
    let mut commands = BTreeSet::new();
    for (file, text) in texts() {
        if file.ends_with("references.rs") {
            continue;
        }
        for (i, _) in text.match_indices("uforge-admin ") {
            // A command as typed: in backquotes, or first on its line
            // (after a prompt or a comment's `#`), not in prose.
            let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
            let lead = text[line_start..i].trim_start();
            let typed =
                text[..i].ends_with('`') || ["", "$", "#", "//", "///"].contains(&lead.trim_end());
            if !typed {
                continue;
            }
            let words: Vec<&str> = text[i + "uforge-admin ".len()..]
                .split_whitespace()
                .take(2)
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-'))
                .take_while(|w| !w.is_empty() && !w.starts_with('-'))
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .collect();
            if !words.is_empty() {
                commands.insert(words.join(" "));
            }
        }
    }
    let mut unknown = Vec::new();
    for command in &commands {
        let mut args: Vec<&str> = command.split(' ').collect();
        // A second word may be an argument, not a subcommand: try both.
        let full = std::process::Command::new(&binary)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        if full.status.success() {
            continue;
        }
        args.truncate(1);
        let first = std::process::Command::new(&binary)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        let takes_arguments = String::from_utf8_lossy(&first.stdout).contains("Usage:")
            && !String::from_utf8_lossy(&first.stdout).contains("Commands:");
        if !(first.status.success() && takes_arguments) {
            unknown.push(command.clone());
        }
    }
    assert!(
        unknown.is_empty(),
        "uforge-admin does not take: {unknown:?}"
    );
}

/// Every test the guarantees and the contract cite by its function name
/// (`snake_case_words`) exists, in Rust or in a Python check: a renamed or
/// deleted test is not left cited as a proof. Names cut short with `…`
/// match by their beginning.
#[test]
fn every_test_named_in_the_docs_exists() {
    let mut functions = String::new();
    for (file, text) in texts() {
        if file.ends_with(".rs") || file.ends_with(".py") {
            functions.push_str(&text);
        }
    }
    let mut missing = BTreeSet::new();
    for (file, text) in texts() {
        if !["docs/guarantees.md", "docs/CONTRACT.md"].contains(&file.as_str()) {
            continue;
        }
        for word in text.split('`').skip(1).step_by(2) {
            let name = word.trim_end_matches('…');
            let looks_like_a_test = name.matches('_').count() >= 3
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let defined = functions.contains(&format!("fn {name}"))
                || functions.contains(&format!("def {name}"));
            if looks_like_a_test && !defined {
                missing.insert(format!("{file}: {word}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "tests named but not there:\n{}",
        Vec::from_iter(missing).join("\n")
    );
}

/// The text of `file` from `heading` (a `## ` line) to the next heading of
/// the same level.
fn section(file: &str, heading: &str) -> String {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("{file}: no {heading:?}"));
    let rest = &text[start + heading.len() + 2..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// The first cell of each row of the markdown tables in `text`, unquoted.
fn first_cells(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| {
            cell.split(',')
                .map(|c| c.trim().trim_matches('`').to_owned())
        })
        .collect()
}

/// docs/operating.md lists exactly the template's alarms.
#[test]
fn the_alarm_table_lists_exactly_the_template_s_alarms() {
    let documented = first_cells(&section("docs/operating.md", "## Alarms"));
    let template: BTreeSet<String> = crate::common::template::alarms()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alarm"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(documented, template, "docs/operating.md, \"Alarms\"");
}

/// The README names every output of the template, and no other.
#[test]
fn the_readme_names_every_output() {
    let params = crate::common::template::stack_py(&["parameters"]);
    let outputs: BTreeSet<String> = params["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_owned())
        .collect();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("Outputs: ").expect("the README's outputs");
    let sentence = &readme[start..start + readme[start..].find(". ").unwrap()];
    let named: BTreeSet<String> = sentence
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.chars().next().is_some_and(char::is_uppercase))
        .map(str::to_owned)
        .collect();
    assert_eq!(named, outputs, "README, Outputs");
}

/// Every default the docs state for a template parameter, as
/// "`Parameter` (value…)", is the template's.
#[test]
fn every_parameter_default_stated_is_the_template_s() {
    let params = crate::common::template::stack_py(&["parameters"]);
    let defaults = params["defaults"].as_object().unwrap();
    let mut checked = 0;
    for (file, text) in texts().iter().filter(|(f, _)| f.ends_with(".md")) {
        for (name, default) in defaults {
            let quoted = format!("`{name}` (");
            for (at, _) in text.match_indices(&quoted) {
                let stated: String = text[at + quoted.len()..]
                    .chars()
                    .take_while(|c| !matches!(c, ')' | ':' | ' ' | ','))
                    .collect();
                let want = match default {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let stated_value = match stated.strip_suffix('%') {
                    Some(pct) => pct.parse::<f64>().ok().map(|p| p / 100.0),
                    None => stated.parse::<f64>().ok(),
                };
                let Some(stated_value) = stated_value else {
                    continue; // prose, not a value
                };
                checked += 1;
                assert_eq!(
                    Some(stated_value),
                    want.parse::<f64>().ok(),
                    "{file}: `{name}` ({stated}), the template's default is {want}"
                );
            }
        }
    }
    assert!(checked >= 8, "only {checked} stated defaults found");
}

/// Every `UForge.*` error type the docs name is one the code raises, and
/// every one the code raises is documented; a Step Functions example
/// retries every retryable one.
#[test]
fn error_types_in_the_docs_are_the_code_s() {
    let words = |text: &str| -> BTreeSet<String> {
        text.match_indices("UForge.")
            .map(|(i, _)| {
                text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                    .collect::<String>()
                    .trim_end_matches('.')
                    .to_owned()
            })
            .filter(|w| w.len() > "UForge.".len())
            .collect()
    };
    let (mut code, mut docs) = (BTreeSet::new(), BTreeSet::new());
    for (file, text) in texts() {
        if file.starts_with("src/") {
            code.extend(words(&text));
        } else if file.ends_with(".md") {
            docs.extend(words(&text));
        }
    }
    let unknown: Vec<_> = docs.difference(&code).collect();
    assert!(unknown.is_empty(), "documented, never raised: {unknown:?}");
    let undocumented: Vec<_> = code.difference(&docs).collect();
    assert!(
        undocumented.is_empty(),
        "raised, not documented: {undocumented:?}"
    );
    let automation = std::fs::read_to_string(root().join("docs/automation.md")).unwrap();
    let retry = &automation[automation.find("\"Retry\"").expect("a Retry example")..];
    let retry = &retry[..retry.find(']').unwrap()];
    for row in automation.lines().filter(|l| l.starts_with("| `UForge.")) {
        let name = row.split('`').nth(1).unwrap();
        if row.trim_end().ends_with("| yes |") {
            assert!(
                retry.contains(name),
                "the Retry example does not retry {name}"
            );
        }
    }
}
