//! The module graph of every crate of the project has no cycle.
//!
//! For each module that has child modules (a directory under `src/`), the
//! children's references to each other (`crate::…`, `super::…`, `self::…`
//! paths, outside comments and test code) form a graph that must be acyclic:
//! a module may use what sits beside it only in one direction, so the layers
//! can be read from the folder names. A child using its parent's own items is
//! not an edge (that is what a parent module is for).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source roots checked, relative to the repository.
const CRATES: &[&str] = &["host/src", "host/http1/src", "policies/sdk/src"];

#[test]
fn no_module_uses_a_sibling_that_uses_it_back() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the repository");
    let mut cycles = Vec::new();
    for root in CRATES {
        let root = repo.join(root);
        assert!(root.is_dir(), "{} is not a directory", root.display());
        let graph = sibling_graph(&root);
        for (parent, edges) in &graph {
            for cycle in find_cycles(edges) {
                let parent = if parent.is_empty() {
                    "crate".to_string()
                } else {
                    parent.join("::")
                };
                cycles.push(format!(
                    "{}: in {parent}: {cycle}",
                    root.strip_prefix(repo).unwrap_or(&root).display(),
                ));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between sibling modules:\n  {}",
        cycles.join("\n  ")
    );
}

/// A module path: the segments below the crate root.
type ModPath = Vec<String>;

/// For each parent module, the edges between its children.
fn sibling_graph(root: &Path) -> BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> {
    let mut graph: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in rust_files(root) {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let module = module_path(root, &file);
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for target in referenced_paths(&module, &code_only(&text)) {
            // The deepest common parent whose two children differ is where the
            // edge lies: `proxy::upstream` using `proxy::io` is an edge in
            // `proxy`; `agent::x` using `store` is an edge `agent -> store` in
            // the crate root.
            for depth in 0..module.len() {
                if target.len() <= depth || target[..depth] != module[..depth] {
                    break;
                }
                let (from, to) = (&module[depth], &target[depth]);
                if from != to {
                    if is_module(root, &target[..=depth]) {
                        graph
                            .entry(module[..depth].to_vec())
                            .or_default()
                            .entry(from.clone())
                            .or_default()
                            .insert(to.clone());
                    }
                    break;
                }
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `src/proxy/upstream.rs` is `[proxy, upstream]`; `src/proxy/mod.rs` is
/// `[proxy]`; `src/lib.rs` and `src/main.rs` are the root.
fn module_path(root: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(root).expect("a file under the root");
    let mut segments: ModPath = relative
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        segments.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segments.pop();
    }
    segments
}

fn is_module(root: &Path, path: &[String]) -> bool {
    let dir = path.iter().fold(root.to_path_buf(), |p, s| p.join(s));
    dir.with_extension("rs").is_file() || dir.join("mod.rs").is_file()
}

/// The text without comments and without test code (everything from the
/// first `#[cfg(test)]`, where this project keeps its unit tests).
fn code_only(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every absolute module path named in `code`, resolving `super` and
/// `self` against `module` and expanding `use` groups (`crate::{a, b::c}`).
fn referenced_paths(module: &ModPath, code: &str) -> Vec<ModPath> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let start = ["crate::", "super::", "self::"]
            .iter()
            .filter_map(|k| rest.find(k).map(|i| (i, *k)))
            .min();
        let Some((offset, keyword)) = start else {
            break;
        };
        let begin = at + offset;
        at = begin + keyword.len();
        if begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_') {
            continue;
        }
        let mut base: ModPath = match keyword {
            "crate::" => Vec::new(),
            "self::" => module.clone(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        let mut tail = &code[at..];
        while let Some(after) = tail.strip_prefix("super::") {
            base.pop();
            tail = after;
        }
        expand(&base, tail, &mut found);
    }
    found
}

/// Expands the path (or `use` tree) at the start of `tail` below `base`.
fn expand(base: &ModPath, tail: &str, found: &mut Vec<ModPath>) {
    let tail = tail.trim_start();
    if let Some(group) = tail.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(base, &item, found);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        expand(base, &item, found);
        return;
    }
    let ident: String = tail
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() || ident == "self" {
        found.push(base.clone());
        return;
    }
    let mut path = base.clone();
    path.push(ident.clone());
    match tail[ident.len()..].strip_prefix("::") {
        Some(more) => expand(&path, more, found),
        None => found.push(path),
    }
}

/// Every group of modules that reach each other (a strongly connected
/// component of more than one module), each as `a -> b -> ... -> a`.
fn find_cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(node) = todo.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|node| (node, reach(node))).collect();
    let mut reported = BTreeSet::new();
    let mut cycles = Vec::new();
    for (node, reached) in &reaches {
        if reported.contains(*node) || !reached.contains(*node) {
            continue;
        }
        let group: Vec<&String> = reached
            .iter()
            .filter(|other| reaches.get(other).is_some_and(|r| r.contains(*node)))
            .collect();
        reported.extend(group.iter().map(|n| n.to_string()));
        let members: Vec<&str> = group.iter().map(|n| n.as_str()).collect();
        let edges_inside: Vec<String> = group
            .iter()
            .flat_map(|from| {
                edges[*from]
                    .iter()
                    .filter(|to| group.contains(to))
                    .map(move |to| format!("{from} -> {to}"))
            })
            .collect();
        cycles.push(format!(
            "{{{}}}: {}",
            members.join(", "),
            edges_inside.join(", ")
        ));
    }
    cycles
}

#[test]
fn the_checker_sees_paths_in_use_groups_and_cycles() {
    let module: ModPath = vec!["proxy".into(), "upstream".into()];
    let found = referenced_paths(
        &module,
        "use crate::{spec::{A, B}, model}; use super::io::Buf; x = self::y::z;",
    );
    let found: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "spec::A",
            "spec::B",
            "model",
            "proxy::io::Buf",
            "proxy::upstream::y::z"
        ]
    );
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        (
            "b".to_string(),
            BTreeSet::from(["a".to_string(), "c".to_string()]),
        ),
        ("c".to_string(), BTreeSet::new()),
    ]
    .into();
    assert_eq!(find_cycles(&edges), ["{a, b}: a -> b, b -> a"]);
}
