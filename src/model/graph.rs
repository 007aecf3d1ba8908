//! A scan of a TorchScript archive's code before anything of it runs. The archive stores every
//! method of every submodule as TorchScript source (`<archive>/code/**/*.py`); loading it runs
//! `__setstate__` methods and the forward runs the rest, so the scan reads that source straight
//! out of the zip, with bounded sizes, and lists every call (the op inventory; not yet recorded
//! in report.json, whose policy-input schema the plugin SDK mirrors). It refuses, naming the op
//! and the file: ops that touch files, storage, processes
//! or the logs (`aten::from_file`, `aten::save`, `aten::set_`, `print`, `prim::fork`, ...), any
//! op outside the `aten` and `prim` namespaces (custom op libraries, `torch.classes`), and
//! attributes assigned by a method other than `__setstate__` (a forward that keeps state).
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The code a scan reads at most, in all (real models' code is well under 1 MiB).
const MAX_CODE_BYTES: u64 = 32 << 20;
/// Archive entries a scan looks at at most.
const MAX_ENTRIES: usize = 100_000;

/// Ops a classifier never needs and an attacker would: files, storage swaps, threads, output.
const DENIED_OPS: [(&str, &str); 10] = [
    ("aten::from_file", "reads a file"),
    ("aten::save", "writes a file"),
    ("aten::load", "reads a file"),
    ("aten::set_", "swaps a tensor's storage"),
    ("aten::storage", "exposes raw storage"),
    ("aten::untyped_storage", "exposes raw storage"),
    ("prim::fork", "starts concurrent work"),
    ("aten::wait", "starts concurrent work"),
    ("prim::Print", "writes to the gate's output"),
    ("print", "writes to the gate's output"),
];

/// Every call in the archive's code, by op (`aten::conv2d`, `prim::unchecked_cast`, `len`, ...),
/// with its count; method calls on submodules (`self.fc(...)`) are not ops and not listed.
pub type OpInventory = BTreeMap<String, u64>;

/// Every TorchScript code file in the archive, as (entry name, code), read with bounded sizes.
pub fn read_code(archive: &Path) -> Result<Vec<(String, String)>> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::model(archive, format!("not a readable zip: {e}")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(Error::model(archive, format!("{} entries in the archive (at most {MAX_ENTRIES})", zip.len())));
    }
    let mut files = Vec::new();
    let mut budget = MAX_CODE_BYTES;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| Error::model(archive, format!("zip entry {index}: {e}")))?;
        let name = entry.name().map_err(|e| Error::model(archive, format!("zip entry {index}: {e}")))?.to_string();
        if !(name.contains("/code/") && name.ends_with(".py")) {
            continue;
        }
        let mut code = String::new();
        let read = entry.by_ref().take(budget + 1).read_to_string(&mut code);
        read.map_err(|e| Error::model(archive, format!("{name}: {e}")))?;
        if code.len() as u64 > budget {
            return Err(Error::model(archive, format!("more than {MAX_CODE_BYTES} bytes of TorchScript code")));
        }
        budget -= code.len() as u64;
        files.push((name, code));
    }
    Ok(files)
}

/// Reads the archive's code (`code`, from [`read_code`]) and returns its op inventory, or a
/// `Error::Model` naming every op or assignment the gate refuses to run.
pub fn scan(archive: &Path, code: &[(String, String)]) -> Result<OpInventory> {
    let mut inventory = OpInventory::new();
    let mut refusals = Vec::new();
    for (name, text) in code {
        scan_code(name, text, &mut inventory, &mut refusals);
    }
    if !refusals.is_empty() {
        return Err(Error::model(archive, format!("refused before running it: {}", refusals.join("; "))));
    }
    Ok(inventory)
}

/// Adds the calls in one code file to `inventory`; what is refused goes to `refusals`.
fn scan_code(file: &str, code: &str, inventory: &mut OpInventory, refusals: &mut Vec<String>) {
    let mut method = String::new();
    for line in strip_strings(code).lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("def ") {
            method = rest.split('(').next().unwrap_or("").trim().to_string();
            continue;
        }
        if trimmed.starts_with("class ") {
            continue;
        }
        if method != "__setstate__"
            && let Some(target) = assigned_attribute(trimmed)
        {
            refusals.push(format!("{file}: method `{method}` assigns the attribute `self.{target}`"));
        }
        for op in calls(trimmed) {
            if let Some(reason) = refusal(&op) {
                refusals.push(format!("{file}: `{op}` {reason}"));
            }
            *inventory.entry(op).or_default() += 1;
        }
    }
}

/// The code with every string literal's content blanked (quotes kept), so that text inside a
/// message is never taken for a call.
fn strip_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in code.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                } else if c == '\n' {
                    out.push(c);
                }
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// `self.NAME = ...` (not `==`): the attribute assigned, if the line assigns one.
fn assigned_attribute(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("self.")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    let after = rest[end..].trim_start();
    (after.starts_with('=') && !after.starts_with("==")).then(|| &rest[..end])
}

/// Every dotted name called on the line, as an op name: `torch.x` and `ops.aten.x` are
/// `aten::x`, `ops.NS.x` is `NS::x`, `torch.classes.NS.C` is `classes::NS.C`, a bare builtin
/// stays as it is; calls on `self...`, local variables and `__torch__` classes are skipped.
fn calls(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        let ident = b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
        match (start, ident) {
            // A name right after a `.` is a method of an expression (`(self.fc).forward(`).
            (None, true) if !b.is_ascii_digit() && b != b'.' && (i == 0 || bytes[i - 1] != b'.') => start = Some(i),
            (None, true) => start = Some(usize::MAX),
            (Some(s), false) => {
                if b == b'(' && s != usize::MAX {
                    found.extend(op_name(&line[s..i]));
                }
                start = None;
            }
            _ => {}
        }
    }
    found
}

fn op_name(callee: &str) -> Option<String> {
    let (head, rest) = callee.split_once('.').unwrap_or((callee, ""));
    match head {
        "torch" => Some(match rest.split_once('.') {
            None => format!("aten::{rest}"),
            Some((namespace, name)) => format!("{namespace}::{name}"),
        }),
        "ops" => rest.split_once('.').map(|(namespace, name)| format!("{namespace}::{name}")),
        // Builtins and type constructors (`len`, `int`, `print`, `annotate`, ...); a name with a
        // leading underscore is a local holding a function (`_0 = __torch__...relu`).
        _ if rest.is_empty() && !callee.starts_with('_') => Some(callee.to_string()),
        _ => None,
    }
}

fn refusal(op: &str) -> Option<&'static str> {
    if let Some((_, reason)) = DENIED_OPS.iter().find(|(name, _)| *name == op) {
        return Some(reason);
    }
    match op.split_once("::") {
        Some(("aten" | "prim", _)) | None => None,
        Some(("quantized" | "_quantized", _)) => {
            Some("is a quantized op: FST tunes float weights, so upload the model before quantization")
        }
        Some(_) => Some("is outside the aten and prim namespaces (a custom op library or class)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(code: &str) -> (OpInventory, Vec<String>) {
        let (mut inventory, mut refusals) = (OpInventory::new(), Vec::new());
        scan_code("m/code/__torch__/m.py", code, &mut inventory, &mut refusals);
        (inventory, refusals)
    }

    const CLEAN: &str = "class M(Module):\n  def forward(self: __torch__.M, x: Tensor) -> Tensor:\n    \
        _0 = torch.conv2d(x, self.conv.weight, None, [1, 1])\n    y = torch.flatten(torch.relu(_0), 1)\n    \
        n = len(ops.prim.unchecked_cast(List[int], torch.size(y)))\n    \
        ops.prim.RaiseException(\"torch.from_file(x) is only a message\")\n    return (self.fc).forward(y, )\n";

    #[test]
    fn a_classifier_lists_its_ops_and_passes() {
        let (inventory, refusals) = scanned(CLEAN);
        assert!(refusals.is_empty(), "{refusals:?}");
        for op in ["aten::conv2d", "aten::relu", "aten::flatten", "aten::size", "prim::unchecked_cast", "len"] {
            assert_eq!(inventory.get(op), Some(&1), "{op}: {inventory:?}");
        }
        assert!(!inventory.contains_key("aten::from_file"), "a string literal is not a call: {inventory:?}");
        assert!(!inventory.keys().any(|op| op.contains("forward")), "{inventory:?}");
    }

    #[test]
    fn files_custom_ops_printing_and_state_are_refused_by_name() {
        let hostile = "  def forward(self, x: Tensor) -> Tensor:\n    \
            k = torch.from_file(\"/keys/signing.pem\", None, 64, dtype=0)\n    \
            print(x)\n    _1 = ops.my_lib.exfiltrate(x)\n    self.seen = torch.add(self.seen, 1)\n    \
            return x\n  def __setstate__(self, state: Tuple[Tensor]) -> None:\n    self.w = state[0]\n";
        let (_, refusals) = scanned(hostile);
        let all = refusals.join("\n");
        assert!(all.contains("`aten::from_file` reads a file"), "{all}");
        assert!(all.contains("`print` writes to the gate's output"), "{all}");
        assert!(all.contains("`my_lib::exfiltrate` is outside the aten and prim namespaces"), "{all}");
        let (_, quantized) =
            scanned("  def forward(self, x: Tensor) -> Tensor:\n    return ops.quantized.linear(x, self.w, 1., 0)\n");
        assert!(quantized[0].contains("`quantized::linear` is a quantized op"), "{quantized:?}");
        assert!(all.contains("method `forward` assigns the attribute `self.seen`"), "{all}");
        assert!(!all.contains("self.w"), "__setstate__ may restore attributes: {all}");
        assert_eq!(refusals.len(), 4, "{all}");
    }

    #[test]
    fn the_fixtures_and_the_lab_models_pass() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heads");
        for entry in std::fs::read_dir(fixtures).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "pt") {
                let code = read_code(&entry.path()).unwrap();
                let inventory =
                    scan(&entry.path(), &code).unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
                assert!(
                    inventory.keys().any(|op| op.starts_with("aten::")),
                    "{}: {inventory:?}",
                    entry.path().display()
                );
            }
        }
    }
}
