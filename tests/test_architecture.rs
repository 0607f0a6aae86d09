//! The import rules `docs/architecture.md` states, checked on the source: no import circle
//! between files of `src/`, command files as leaves, and the layer directions that keep a
//! stage replaceable (the transport below replay and record, the report model below its
//! computation). A reviewer's reading of `use` lines, made repeatable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module of the crate as its path from the root: `["analyze", "render", "issues"]`.
type Module = Vec<String>;

/// Every `.rs` file under `src/` (the `bin/` helpers are crates of their own) by module.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<Module, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                if path != src.join("bin") {
                    walk(&path, src, out);
                }
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .expect("under src")
                .with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().map(String::as_str) == Some("mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] {
                module.clear();
            }
            out.insert(module, path);
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The paths a file names through `crate::` or `super::` (braces expanded), before its
/// tests: `#[cfg(test)]` code may reach anywhere.
fn named_paths(text: &str, module: &Module) -> Vec<Module> {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    for (at, _) in text.match_indices("::") {
        let start = text[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let base: Module = match &text[start..at] {
            "crate" => Vec::new(),
            "super" if start < 2 || &bytes[start - 2..start] != b"::" => {
                module[..module.len().saturating_sub(1)].to_vec()
            }
            _ => continue,
        };
        expand(&text[at + 2..], base, &mut out);
    }
    out
}

/// Reads `a::b::{c, d::e}` from the start of `rest`, appending each full path to `out`.
fn expand(rest: &str, mut path: Module, out: &mut Vec<Module>) {
    let mut rest = rest;
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        rest = &rest[ident.len()..];
        match ident.as_str() {
            "self" => {}
            "super" => {
                path.pop();
            }
            _ => path.push(ident),
        }
        match rest.strip_prefix("::") {
            Some(more) => rest = more,
            None => break,
        }
    }
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(item.trim(), path.clone(), out);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        expand(item.trim(), path.clone(), out);
        return;
    }
    out.push(path);
}

/// The longest prefix of `path` that is a file of the crate.
fn resolve(path: &[String], files: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| files.contains_key(m))
}

/// Which file imports which: the crate's file-level import graph.
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    files
        .iter()
        .map(|(module, path)| {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let targets = named_paths(&text, module)
                .iter()
                .filter_map(|p| resolve(p, &files))
                .filter(|t| t != module && !t.is_empty())
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("/")
    }
}

/// Strongly connected sets of files (Tarjan), leaving out a parent module and its own
/// children re-exporting each other (a `mod.rs` naming what its files define is no circle).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        sets: Vec<Vec<Module>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: &Module) {
            let i = self.index.len();
            self.index.insert(v.clone(), i);
            self.low.insert(v.clone(), i);
            self.stack.push(v.clone());
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), low);
                } else if self.stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().position(|m| m == v).expect("on stack");
                let set = self.stack.split_off(at);
                if set.len() > 1 {
                    self.sets.push(set);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        sets: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.sets
        .into_iter()
        .filter(|set| {
            let is_parent = |c: &Module| set.iter().any(|d| d.len() > c.len() && d.starts_with(c));
            let rest = set.iter().filter(|c| !is_parent(c)).count();
            rest > 1 || (rest == 1 && set.iter().all(|c| !is_parent(c)))
        })
        .map(|set| {
            let mut names: Vec<_> = set.iter().map(name).collect();
            names.sort();
            names
        })
        .collect()
}

#[test]
fn no_import_circles_between_source_files() {
    let found = circles(&graph());
    assert!(found.is_empty(), "import circles: {found:?}");
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let m = |s: &str| -> Module { s.split('/').map(String::from).collect() };
    let mut g = BTreeMap::new();
    g.insert(m("a"), BTreeSet::from([m("b")]));
    g.insert(m("b"), BTreeSet::from([m("a")]));
    g.insert(m("c/d"), BTreeSet::from([m("c")]));
    g.insert(m("c"), BTreeSet::from([m("c/d")]));
    assert_eq!(circles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
}

#[test]
fn paths_are_read_through_braces_and_super() {
    let module: Module = vec!["analyze".into(), "render".into(), "issues".into()];
    let text = "use crate::capture::{results::{RunOptions, Row}, trace};\nuse super::model::X;\n\
                fn f() { crate::guard::check(); }\n#[cfg(test)]\nuse crate::replay::X;";
    let got: Vec<String> = named_paths(text, &module).iter().map(name).collect();
    assert_eq!(
        got,
        [
            "capture/results/RunOptions",
            "capture/results/Row",
            "capture/trace",
            "analyze/render/model/X",
            "guard/check",
        ]
    );
}

/// `(importer prefix, imported prefix)` pairs the layering forbids (docs/architecture.md).
const FORBIDDEN: &[(&str, &str)] = &[
    ("record", "replay"),
    ("transport", "replay"),
    ("transport", "record"),
    ("capture", "analyze"),
    ("capture", "replay"),
    ("replay", "ab"),
    ("analyze", "replay"),
    ("analyze/render", "analyze/measure"),
    // The capacity search sits above the stages it runs.
    ("ab", "capacity"),
    ("replay", "capacity"),
    ("analyze", "capacity"),
];

#[test]
fn layers_import_only_downwards() {
    let graph = graph();
    let starts =
        |m: &Module, prefix: &str| name(m) == prefix || name(m).starts_with(&format!("{prefix}/"));
    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            if let Some(first) = from.first() {
                if first == "cmd" && to.first().map(String::as_str) == Some("cmd") && to.len() > 1 {
                    wrong.push(format!(
                        "{} imports {} (command files are leaves)",
                        name(from),
                        name(to)
                    ));
                }
            }
            for (a, b) in FORBIDDEN {
                if starts(from, a) && starts(to, b) {
                    wrong.push(format!("{} imports {}", name(from), name(to)));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering: {wrong:#?}");
}

/// Issue #28: what the tests, benches and the example share is one crate
/// (`tests/support/`, `lt-testkit`), never a file included by `#[path]` into several.
#[test]
fn benches_and_examples_include_no_files_by_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    for dir in ["benches", "examples", "tests"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("a top-level folder") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                if text.lines().any(|l| l.trim_start().starts_with("#[path")) {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(offenders.is_empty(), "#[path] includes in {offenders:?}");
}
