//! The top-level modules depend on one another one way only (issue 13): a request's journey reads
//! down the stages, and no stage reaches back. This reads `src/` as text, so a cycle fails here
//! before anyone has to untangle it.
//!
//! An edge is any `crate::X` (also inside `use crate::{X, Y::z}`) in a module's files, outside
//! comments and before its first `#[cfg(test)]`: unit tests may reach anywhere, so a module's
//! `tests.rs` (its `#[cfg(test)] mod tests;`) is not read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level module a file under `src/` belongs to; None for the crate roots.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_owned())
}

/// The code of a file that counts: before `#[cfg(test)]`, without `//` comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|line| match line.find("//") {
            // `"http://..."` in a string is cut too; it names no module either way.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module `code` names after `crate::`, with `crate::{a, b::c}` read as `a` and `b`.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        found.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn graph(files: &[(String, String)]) -> Graph {
    let mut graph = Graph::new();
    for (module, text) in files {
        graph.entry(module.clone()).or_default();
        let refs = references(&code(text));
        graph.get_mut(module).unwrap().extend(refs);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (module, refs) in &mut graph {
        refs.retain(|r| r != module && modules.contains(r));
    }
    graph
}

/// A cycle, as the modules along it, if there is one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        graph: &Graph,
        module: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(module) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = path.iter().position(|m| m == module).unwrap();
                let mut found = path[from..].to_vec();
                found.push(module.to_owned());
                return Some(found);
            }
            None => {}
        }
        marks.insert(module.to_owned(), Mark::Open);
        path.push(module.to_owned());
        for next in &graph[module] {
            if let Some(found) = visit(graph, next, marks, path) {
                return Some(found);
            }
        }
        path.pop();
        marks.insert(module.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|m| visit(graph, m, &mut marks, &mut Vec::new()))
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_stem().is_some_and(|s| s != "tests")
        {
            if let Some(module) = top_module(path.strip_prefix(root).unwrap()) {
                out.push((module, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

#[test]
fn no_top_level_module_reaches_back_to_one_that_uses_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let graph = graph(&files);
    assert!(graph.len() > 20, "src/ was read: {:?}", graph.keys());
    assert!(
        graph["gateway"].contains("judge"),
        "edges were found: {graph:?}"
    );
    if let Some(found) = cycle(&graph) {
        panic!("import cycle: {}", found.join(" -> "));
    }
}

#[test]
fn the_check_sees_a_cycle_in_either_form_and_ignores_tests_and_comments() {
    let file = |m: &str, text: &str| (m.to_owned(), text.to_owned());
    let files = [
        file("a", "use crate::b::Thing;\n"),
        file(
            "b",
            "use crate::{\n    c::{self, X},\n    d,\n};\n// crate::a in a comment\n",
        ),
        file("c", "fn f() { crate::a::g() }\n"),
        file("d", "#[cfg(test)]\nmod tests { use crate::a; }\n"),
    ];
    let found = cycle(&graph(&files)).expect("a -> b -> c -> a");
    assert_eq!(found, ["a", "b", "c", "a"]);
    let without = [
        file("a", "use crate::b::Thing;\n"),
        file("b", "use crate::{c, d};\n/// [`crate::a`]\n"),
        file("c", "use crate::d;\n"),
        file("d", "#[cfg(test)]\nmod tests { use crate::a; }\n"),
    ];
    assert_eq!(cycle(&graph(&without)), None);
}
