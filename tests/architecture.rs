//! The library's layering, read from its source: every top-level module of src/ sits in one
//! layer of `LAYERS` (document types and inputs low, the gate's stages in the order data flows,
//! the pipeline at the top) and imports only modules of lower layers, so no import cycle can
//! form. A new module must be placed here; an upward import fails with the file that makes it.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A module may import the modules before it, never one after it.
const LAYERS: &[&str] = &[
    // Foundations.
    "error",
    "rng",
    "stats",
    "failpoint",
    "fsutil",
    "device",
    // Inputs: data sets, models, object stores.
    "data",
    "model",
    "store",
    // The learning stages and the attack lab built on them.
    "training",
    "evaluation",
    "purification",
    "progress",
    "lab",
    // The job store and the registry client.
    "jobs",
    "mlflow",
    // Documents: report.json, the decision, a purified directory's file names.
    "report",
    // Judge and sign.
    "policy",
    "attestation",
    // One purification, and the confined worker that runs it.
    "job",
    "worker",
    // Publish; the sources that find uploads and record verdicts in their registry; and the
    // pipeline that runs it all.
    "publication",
    "sources",
    "pipeline",
    "demo",
    "schemas",
];

/// The top-level module a source file belongs to (`src/report/html.rs` -> `report`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules `text` names through `crate::` paths (`crate::a::b`, `crate::{a, b::c}`),
/// outside comments and its unit-test module.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let identifier = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: the first identifier after `{` and after each
            // comma at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        names.insert(identifier(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(identifier(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module -> (imported module -> the files that import it), for the library (not the binary).
fn import_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let module = module_of(src, &file);
        // lib.rs declares the modules; src/bin holds the command line, above the library.
        if module == "lib" || module == "bin" {
            continue;
        }
        let entry = graph.entry(module.clone()).or_default();
        for imported in crate_imports(&std::fs::read_to_string(&file).unwrap()) {
            if imported != module {
                entry.entry(imported).or_default().insert(file.strip_prefix(src).unwrap().display().to_string());
            }
        }
    }
    graph
}

/// Every import that does not point to a lower layer, and every module without a layer.
fn layering_violations(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>, layers: &[&str]) -> Vec<String> {
    let rank = |m: &str| layers.iter().position(|l| *l == m);
    let mut violations = Vec::new();
    for (module, imports) in graph {
        let Some(own) = rank(module) else {
            violations.push(format!("`{module}` has no place in LAYERS"));
            continue;
        };
        for (imported, files) in imports {
            match rank(imported) {
                Some(other) if other < own => {}
                Some(_) => {
                    violations.push(format!("`{module}` imports `{imported}`, which is not below it ({files:?})"))
                }
                // `crate::Error`, `crate::Result`: lib.rs's re-exports of `error`'s items.
                None => {}
            }
        }
    }
    violations
}

/// A cycle of imports, if there is one (depth-first search for a back edge).
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            return Some(path[at..].iter().chain([&node]).map(|n| n.to_string()).collect());
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flat_map(|imports| imports.keys()) {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn modules_import_only_lower_layers_and_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(graph.len() >= 20 && graph.contains_key("pipeline") && graph["pipeline"].contains_key("job"), "{graph:?}");
    let violations = layering_violations(&graph, LAYERS);
    assert!(violations.is_empty(), "layering violated:\n{}", violations.join("\n"));
    assert_eq!(find_cycle(&graph), None);
    // Every layer names a module that exists.
    for layer in LAYERS {
        assert!(graph.contains_key(*layer), "LAYERS names `{layer}`, which src/ does not have");
    }
}

/// The checks catch what they are for: an upward import and a cycle, on a graph made for it.
#[test]
fn an_upward_import_and_a_cycle_are_caught() {
    let text = "use crate::{report::Report, policy::{Decision, Verdict}, self};\n\
                // use crate::pipeline::Pipeline;\n\
                fn f() { crate::attestation::verify(); }\n\
                #[cfg(test)]\nmod tests { use crate::lab; }";
    let names: Vec<String> = crate_imports(text).into_iter().collect();
    assert_eq!(names, ["attestation", "policy", "report"]);

    let edge = |from: &str, to: &str| {
        (from.to_string(), BTreeMap::from([(to.to_string(), BTreeSet::from(["f.rs".to_string()]))]))
    };
    let cyclic = BTreeMap::from([edge("report", "policy"), edge("policy", "report"), edge("error", "rng")]);
    let cycle = find_cycle(&cyclic).expect("the cycle is found");
    assert!(cycle.first() == cycle.last() && cycle.contains(&"report".to_string()), "{cycle:?}");
    let violations = layering_violations(&cyclic, &["error", "rng", "report", "policy"]);
    assert_eq!(violations.len(), 2, "{violations:?}"); // error -> rng upward, report -> policy upward
    assert!(violations.iter().any(|v| v.contains("`report` imports `policy`")), "{violations:?}");
    let unplaced = layering_violations(&cyclic, &["error", "rng", "policy"]);
    assert!(unplaced.iter().any(|v| v.contains("`report` has no place")), "{unplaced:?}");
}
