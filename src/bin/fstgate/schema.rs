//! `fstgate schema`: the JSON Schemas of fstgate's documents written out, or checked current.
use std::path::PathBuf;

pub(crate) fn run(out: PathBuf, check: bool) -> anyhow::Result<bool> {
    let mut stale = Vec::new();
    for (name, schema) in fstgate::schemas::all() {
        let path = out.join(name);
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&out)?;
            fstgate::fsutil::write_atomic(&path, text.as_bytes())?;
        }
    }
    if !stale.is_empty() {
        eprintln!("out of date (run `fstgate schema --out {}`): {}", out.display(), stale.join(", "));
    }
    Ok(stale.is_empty())
}
