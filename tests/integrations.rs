//! The examples under integrations/ are meant to be copied, so they must work as written.
//! Every fstgate pipeline configuration there, a standalone `*.toml` file or TOML embedded in
//! YAML (a ConfigMap's `*.toml` key, an Argo raw artifact, any string with a `[[sources]]`
//! table), is found by walking the directory and
//! - validated against schemas/pipeline-config.schema.json (every error, with its file),
//! - loaded by fstgate's own parser (`PipelineConfig::load`: unknown fields, types, globs, data
//!   specs, triggers, device, listen address, source kinds),
//! - checked to keep secrets out of the file (`env:` values for secret-looking options), and
//!   its S3 stores opened (option keys the backend knows; `env:` variables set to dummies).
//!
//! Every YAML document and JSON file must parse; the GitHub workflow must run `fstgate gate`
//! with `--sarif` and upload the SARIF even on failure; the container image is named the same
//! everywhere. The negative checks prove the validators can fail.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fstgate::pipeline::config::{PipelineConfig, SourceKind};
use fstgate::store::StoreConfig;
use serde::Deserialize;
use serde_json::Value;

/// At least this many configurations exist: the standalone files (mlflow, github-actions,
/// kubeflow, s3-notifications) and the embedded ones (the Kubernetes and Argo ConfigMaps).
const MIN_STANDALONE: usize = 4;
const MIN_EMBEDDED: usize = 2;
const IMAGE: &str = "ghcr.io/fstgate/fstgate:0.1.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn integrations() -> PathBuf {
    repo().join("integrations")
}

/// Every file under `dir`, sorted; hidden entries and Python caches skipped.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap_or(path).display().to_string()
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e))
}

/// The documents of a (multi-document) YAML file.
fn yaml_documents(text: &str) -> Result<Vec<serde_yaml::Value>, serde_yaml::Error> {
    serde_yaml::Deserializer::from_str(text).map(serde_yaml::Value::deserialize).collect()
}

/// A pipeline configuration and where it was found.
struct Found {
    origin: String,
    text: String,
    embedded: bool,
}

fn is_pipeline_config_text(text: &str) -> bool {
    text.lines().any(|line| line.trim() == "[[sources]]")
}

/// TOML strings inside a YAML value: under a key ending in `.toml` (ConfigMap data), an Argo raw
/// artifact whose path ends in `.toml`, or any string holding a `[[sources]]` table.
fn embedded_configs(value: &serde_yaml::Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            let toml_path = map.get("path").and_then(|p| p.as_str()).is_some_and(|p| p.ends_with(".toml"));
            let raw_toml = match map.get("raw").and_then(|r| r.get("data")).and_then(|d| d.as_str()) {
                Some(text) if toml_path => Some(text),
                _ => None,
            };
            if let Some(text) = raw_toml {
                out.push((format!("{at}.raw.data"), text.to_string()));
            }
            for (key, child) in map {
                let key = match key {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                };
                if raw_toml.is_some() && key == "raw" {
                    continue;
                }
                let here = format!("{at}.{key}");
                match child {
                    serde_yaml::Value::String(text) if key.ends_with(".toml") || is_pipeline_config_text(text) => {
                        out.push((here, text.clone()));
                    }
                    _ => embedded_configs(child, &here, out),
                }
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                embedded_configs(item, &format!("{at}[{i}]"), out);
            }
        }
        serde_yaml::Value::String(text) if is_pipeline_config_text(text) => out.push((at.to_string(), text.clone())),
        serde_yaml::Value::Tagged(tagged) => embedded_configs(&tagged.value, at, out),
        _ => {}
    }
}

/// A YAML document's name for messages: `kind/name` when it is a Kubernetes object.
fn document_label(doc: &serde_yaml::Value, index: usize) -> String {
    let kind = doc.get("kind").and_then(|k| k.as_str());
    let metadata = doc.get("metadata");
    let name = metadata.and_then(|m| m.get("name").or_else(|| m.get("generateName"))).and_then(|n| n.as_str());
    match (kind, name) {
        (Some(kind), Some(name)) => format!("{kind}/{name}"),
        _ => format!("document {index}"),
    }
}

fn configs_in_yaml(path: &Path, text: &str) -> Vec<Found> {
    let docs = yaml_documents(text).unwrap_or_else(|e| panic!("{}: {e}", relative(path)));
    let mut found = Vec::new();
    for (index, doc) in docs.iter().enumerate() {
        let mut texts = Vec::new();
        embedded_configs(doc, "", &mut texts);
        for (at, text) in texts {
            found.push(Found {
                origin: format!("{} ({} {at})", relative(path), document_label(doc, index)),
                text,
                embedded: true,
            });
        }
    }
    found
}

/// Every pipeline configuration under integrations/.
fn all_configs() -> Vec<Found> {
    let mut found = Vec::new();
    for path in walk(&integrations()) {
        if has_extension(&path, &["toml"]) {
            let text = std::fs::read_to_string(&path).unwrap();
            found.push(Found { origin: relative(&path), text, embedded: false });
        } else if has_extension(&path, &["yml", "yaml"]) {
            found.extend(configs_in_yaml(&path, &std::fs::read_to_string(&path).unwrap()));
        }
    }
    found
}

fn schema_validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("schemas/pipeline-config.schema.json")).unwrap())
            .unwrap();
    jsonschema::validator_for(&schema).expect("the pipeline configuration schema compiles")
}

fn toml_to_json(text: &str) -> Result<Value, String> {
    let value: toml::Value = toml::from_str(text).map_err(|e| format!("not TOML: {e}"))?;
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// Every schema error of a configuration, one line each.
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    match toml_to_json(text) {
        Ok(instance) => {
            validator.iter_errors(&instance).map(|e| format!("schema: at `{}`: {e}", e.instance_path())).collect()
        }
        Err(e) => vec![e],
    }
}

/// Loads a configuration with fstgate's parser, from a file as `fstgate` does. `load` reads
/// no environment variable and opens nothing (data paths are parsed, not read).
fn load(text: &str) -> Result<PipelineConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fstgate.toml");
    std::fs::write(&path, text).unwrap();
    PipelineConfig::load(&path).map_err(|e| e.to_string())
}

/// Store options whose values are secrets: they must come from the environment.
fn looks_secret(key: &str) -> bool {
    ["secret", "access_key", "token", "password", "service_account_key", "sas_key", "client_secret", "sse_"]
        .iter()
        .any(|word| key.contains(word))
}

fn inline_secrets(config: &PipelineConfig) -> Vec<String> {
    let stores = config.sources.iter().map(|s| (format!("source `{}`", s.name), &s.store));
    stores
        .chain([("destination".to_string(), &config.destination)])
        .flat_map(|(what, store)| {
            store
                .options
                .iter()
                .filter(|(key, value)| looks_secret(key) && !value.starts_with("env:"))
                .map(move |(key, _)| format!("{what}: option `{key}` is written inline; use `env:NAME`"))
        })
        .collect()
}

/// The object stores of a configuration that can be opened offline: S3 URLs (the builder
/// checks option keys and values without a request). An MLflow source's `aws_*` options are
/// for `s3://` artifact URIs, so they are opened against a placeholder bucket.
fn s3_stores(config: &PipelineConfig) -> Vec<(String, StoreConfig)> {
    let mut stores = Vec::new();
    for source in &config.sources {
        match source.kind {
            SourceKind::ObjectStore if source.store.url.starts_with("s3://") => {
                stores.push((format!("source `{}`", source.name), source.store.clone()));
            }
            SourceKind::Mlflow
                if !source.store.options.is_empty() && source.store.options.keys().all(|k| k.starts_with("aws_")) =>
            {
                let store =
                    StoreConfig { url: "s3://mlflow-artifacts/probe".into(), options: source.store.options.clone() };
                stores.push((format!("source `{}` (artifact options)", source.name), store));
            }
            _ => {}
        }
    }
    if config.destination.url.starts_with("s3://") {
        stores.push(("destination".into(), config.destination.clone()));
    }
    stores
}

fn env_names(config: &PipelineConfig) -> BTreeSet<String> {
    let stores = config.sources.iter().map(|s| &s.store).chain([&config.destination]);
    stores.flat_map(|s| s.options.values()).filter_map(|v| v.strip_prefix("env:")).map(str::to_string).collect()
}

#[test]
fn every_pipeline_configuration_is_valid() {
    let configs = all_configs();
    let standalone = configs.iter().filter(|c| !c.embedded).count();
    let embedded = configs.iter().filter(|c| c.embedded).count();
    let origins: Vec<&str> = configs.iter().map(|c| c.origin.as_str()).collect();
    assert!(
        standalone >= MIN_STANDALONE && embedded >= MIN_EMBEDDED,
        "expected at least {MIN_STANDALONE} standalone and {MIN_EMBEDDED} embedded configurations under \
         integrations/, found {standalone} and {embedded}: {origins:#?}"
    );

    let validator = schema_validator();
    let mut failures = Vec::new();
    let mut loaded = Vec::new();
    for found in &configs {
        let mut problems = schema_errors(&validator, &found.text);
        match load(&found.text) {
            Ok(config) => {
                problems.extend(inline_secrets(&config));
                loaded.push((found.origin.clone(), config));
            }
            Err(e) => problems.push(format!("PipelineConfig::load: {e}")),
        }
        failures.extend(problems.into_iter().map(|p| format!("{}: {p}", found.origin)));
    }
    assert!(failures.is_empty(), "invalid configurations under integrations/:\n{}", failures.join("\n"));

    // Open the S3 stores: option keys object_store does not know are refused there (the schema
    // accepts any key). `env:` variables get dummy values unless set.
    let names: BTreeSet<String> = loaded.iter().flat_map(|(_, config)| env_names(config)).collect();
    for name in &names {
        if std::env::var_os(name).is_none() {
            let value = if name.contains("REGION") { "us-east-1" } else { "fstgate-integrations-test" };
            // SAFETY: this test alone sets these variables, which no other test reads, before
            // anything here reads them.
            unsafe { std::env::set_var(name, value) };
        }
    }
    let mut opened = 0;
    for (origin, config) in &loaded {
        for (what, store) in s3_stores(config) {
            match store.open() {
                Ok(_) => opened += 1,
                Err(e) => failures.push(format!("{origin}: {what}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "stores that cannot be opened:\n{}", failures.join("\n"));
    assert!(opened >= MIN_STANDALONE, "only {opened} S3 stores were opened");
    eprintln!(
        "{} pipeline configurations valid ({standalone} standalone, {embedded} embedded in YAML), \
         {opened} S3 stores opened:\n  {}",
        configs.len(),
        origins.join("\n  ")
    );
}

#[test]
fn the_checks_can_fail() {
    let configs = all_configs();
    let base = &configs.iter().find(|c| !c.embedded).expect("a standalone configuration").text;
    let validator = schema_validator();
    assert!(schema_errors(&validator, base).is_empty() && load(base).is_ok(), "the base configuration is valid");

    // A misspelt field in a data rule, a misspelt top-level field, a wrong type, a wrong enum.
    let misspelt = base.replacen("clean_count", "clean_cuont", 1);
    assert_ne!(&misspelt, base, "the base configuration has a clean_count");
    let errors = schema_errors(&validator, &misspelt);
    assert!(errors.iter().any(|e| e.contains("clean_cuont")), "{errors:?}");
    assert!(load(&misspelt).unwrap_err().contains("unknown field `clean_cuont`"));

    let top_level = format!("poll_intervall_seconds = 60\n{base}");
    let errors = schema_errors(&validator, &top_level);
    assert!(errors.iter().any(|e| e.contains("poll_intervall_seconds")), "{errors:?}");
    assert!(load(&top_level).is_err());

    let without_concurrency: String =
        base.lines().filter(|l| !l.trim_start().starts_with("concurrency")).map(|l| format!("{l}\n")).collect();
    let wrong_type = format!("concurrency = \"two\"\n{without_concurrency}");
    let errors = schema_errors(&validator, &wrong_type);
    assert!(errors.iter().any(|e| e.contains("/concurrency")), "{errors:?}");
    assert!(load(&wrong_type).is_err());

    let wrong_kind = base.replacen("[[sources]]\n", "[[sources]]\nkind = \"artifactory\"\n", 1);
    assert!(!schema_errors(&validator, &wrong_kind).is_empty());
    assert!(load(&wrong_kind).is_err());

    let no_key = base.replace("[signing_key]", "[signing_keys]");
    assert!(!schema_errors(&validator, &no_key).is_empty());

    // An inline secret is caught.
    let config = load(base).unwrap();
    let mut leaky = config.clone();
    leaky.destination.options.insert("aws_secret_access_key".into(), "hunter2".into());
    assert_eq!(inline_secrets(&leaky).len(), 1);

    // An unknown store option is refused when the store opens.
    let mut store = StoreConfig { url: "s3://bucket/prefix".into(), options: Default::default() };
    store.options.insert("aws_endpont".into(), "http://localhost:9000".into());
    assert!(store.open().unwrap_err().to_string().contains("aws_endpont"));

    // The finder sees TOML embedded in YAML, and a broken embedded one fails both checks.
    let indented: String = misspelt.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  fstgate.toml: |\n{indented}");
    let found = configs_in_yaml(Path::new("inline.yaml"), &yaml);
    assert_eq!(found.len(), 1, "{:?}", found.iter().map(|f| &f.origin).collect::<Vec<_>>());
    assert!(found[0].origin.contains("ConfigMap/x .data.fstgate.toml"), "{}", found[0].origin);
    assert!(!schema_errors(&validator, &found[0].text).is_empty());
    assert!(load(&found[0].text).is_err());
    let argo_raw = "inputs:\n  artifacts:\n    - name: config\n      path: /etc/fstgate/gate.toml\n      raw:\n        data: |\n          state_dir = 1\n";
    let found = configs_in_yaml(Path::new("argo.yaml"), argo_raw);
    assert_eq!(found.len(), 1);
    assert!(!schema_errors(&validator, &found[0].text).is_empty());

    // Syntax errors are caught.
    assert!(yaml_documents("a: 1\n---\nb: [1, 2\n").is_err());
    assert!(toml_to_json("[[sources]\nname = 1").is_err());
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut checked = 0;
    for path in walk(&integrations()) {
        let text = || std::fs::read_to_string(&path).unwrap();
        if has_extension(&path, &["yml", "yaml"]) {
            let docs = yaml_documents(&text()).unwrap_or_else(|e| panic!("{}: {e}", relative(&path)));
            assert!(docs.iter().any(|d| !d.is_null()), "{}: no YAML document", relative(&path));
            checked += 1;
        } else if has_extension(&path, &["json"]) {
            serde_json::from_str::<Value>(&text()).unwrap_or_else(|e| panic!("{}: {e}", relative(&path)));
            checked += 1;
        }
    }
    // GitHub workflow, Argo (3), Kubernetes (6), Kubeflow component, S3 notification (2).
    assert!(checked >= 12, "only {checked} YAML and JSON files under integrations/");
}

#[test]
fn the_github_workflow_gates_with_sarif_and_uploads_it_always() {
    let dir = integrations().join("github-actions");
    let workflows: Vec<PathBuf> = walk(&dir).into_iter().filter(|p| has_extension(p, &["yml", "yaml"])).collect();
    assert!(!workflows.is_empty(), "no workflow in {}", dir.display());
    for path in workflows {
        let name = relative(&path);
        let workflow: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let permissions = &workflow["permissions"];
        assert_eq!(permissions["security-events"].as_str(), Some("write"), "{name}: security-events: write");
        let steps: Vec<&serde_yaml::Value> = workflow["jobs"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{name}: no jobs"))
            .values()
            .flat_map(|job| job["steps"].as_sequence().into_iter().flatten())
            .collect();

        // `fstgate gate ... --sarif FILE` in a run script (continuation lines joined).
        let scripts: Vec<String> =
            steps.iter().filter_map(|step| step["run"].as_str()).map(|script| script.replace("\\\n", " ")).collect();
        let gate_commands: Vec<&str> = scripts
            .iter()
            .flat_map(|script| script.lines())
            .filter(|line| line.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w == ["fstgate", "gate"]))
            .collect();
        assert!(!gate_commands.is_empty(), "{name}: no step runs `fstgate gate`");
        assert!(
            gate_commands.iter().all(|c| c.contains("--sarif ") && c.contains("--config ")),
            "{name}: `fstgate gate` without --config and --sarif: {gate_commands:?}"
        );

        let upload = steps
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif@")))
            .unwrap_or_else(|| panic!("{name}: no github/codeql-action/upload-sarif step"));
        assert!(
            upload["if"].as_str().is_some_and(|c| c.contains("always()")),
            "{name}: the SARIF upload must run even when the gate fails (if: always())"
        );
        assert!(upload["with"]["sarif_file"].as_str().is_some(), "{name}: upload-sarif without sarif_file");
        assert!(
            steps.iter().any(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact@"))),
            "{name}: the report is not uploaded as an artifact"
        );
    }
}

#[test]
fn one_container_image_everywhere() {
    let repository = IMAGE.split(':').next().unwrap();
    let mut mentions = 0;
    for path in walk(&integrations()) {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for (at, _) in text.match_indices(repository) {
            let rest = &text[at..];
            assert!(
                rest.starts_with(IMAGE),
                "{}: image other than {IMAGE}: {}",
                relative(&path),
                rest.lines().next().unwrap()
            );
            mentions += 1;
        }
    }
    assert!(mentions >= 6, "the image is named only {mentions} times under integrations/");
}

/// The admission check (kubernetes/serving-verify.yaml): an init container runs `fstgate verify`
/// with the gate's public key and the model's registry URI, on the volume the server loads the
/// model from, mounted read-only at the same path in both: the server cannot start on a model
/// the check did not accept.
#[test]
fn the_serving_pod_verifies_its_model_before_it_starts() {
    let path = integrations().join("kubernetes/serving-verify.yaml");
    let docs = yaml_documents(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let deployment = docs.iter().find(|d| d["kind"].as_str() == Some("Deployment")).expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let strings = |value: &serde_yaml::Value| -> Vec<String> {
        value.as_sequence().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
    };
    let init = pod["initContainers"].as_sequence().expect("init containers");
    let verify = init.iter().find(|c| strings(&c["args"]).first().map(String::as_str) == Some("verify"));
    let verify = verify.expect("an init container running `fstgate verify`");
    assert_eq!((verify["image"].as_str(), strings(&verify["command"])), (Some(IMAGE), vec!["fstgate".to_string()]));
    let args = strings(&verify["args"]);
    let value_of = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
    let key = value_of("--public-key").expect("--public-key");
    assert!(value_of("--model").is_some_and(|m| m.contains("://")), "--model names the registry URI: {args:?}");
    assert!(!args.iter().any(|a| a == "--allow-denied"), "a signed denial must stop the pod");
    let model_dir = &args[1];
    let mounts = |container: &serde_yaml::Value| -> Vec<(String, String, bool)> {
        let list = container["volumeMounts"].as_sequence().cloned().unwrap_or_default();
        list.iter()
            .map(|m| {
                let text = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                (text("name"), text("mountPath"), m["readOnly"].as_bool() == Some(true))
            })
            .collect()
    };
    let checked = mounts(verify).into_iter().find(|(_, at, _)| at == model_dir).expect("the model volume");
    assert!(checked.2, "the check mounts the model read-only");
    let key_dir = Path::new(&key).parent().unwrap().to_str().unwrap().to_string();
    assert!(mounts(verify).iter().any(|(_, at, _)| *at == key_dir), "the public key is mounted at {key_dir}");
    let servers = pod["containers"].as_sequence().expect("containers");
    assert!(!servers.is_empty());
    for server in servers {
        let served = mounts(server).into_iter().find(|(name, _, _)| *name == checked.0).expect("the same volume");
        assert_eq!((served.1.as_str(), served.2), (model_dir.as_str(), true), "served as checked, read-only");
    }
}

/// The scaled-out watchers (kubernetes/scale-out): a Deployment of several replicas whose
/// configuration puts the job store on PostgreSQL with its password from the environment, every
/// variable the configuration names set in the container, the kustomization listing files that
/// exist, and a KEDA ScaledObject on that Deployment whose queries use only metrics fstgate
/// exports (read off the metrics code's `# TYPE` lines).
#[test]
fn the_scaled_out_watchers_share_one_postgres_queue_and_scale_on_fstgate_metrics() {
    let dir = integrations().join("kubernetes/scale-out");
    let docs: Vec<serde_yaml::Value> = walk(&dir)
        .iter()
        .filter(|p| has_extension(p, &["yaml"]))
        .flat_map(|p| yaml_documents(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    let of_kind = |kind: &'static str| docs.iter().filter(move |d| d["kind"].as_str() == Some(kind));
    let kustomization = of_kind("Kustomization").next().expect("a kustomization");
    for resource in kustomization["resources"].as_sequence().unwrap() {
        assert!(dir.join(resource.as_str().unwrap()).is_file(), "kustomization lists a missing {resource:?}");
    }
    let deployment = of_kind("Deployment").next().expect("a Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() > 1, "several replicas");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"].as_str(), Some(IMAGE));
    let config_map = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .expect("the configuration volume");
    let text = of_kind("ConfigMap")
        .find(|c| c["metadata"]["name"].as_str() == Some(config_map))
        .and_then(|c| c["data"]["fstgate.toml"].as_str())
        .expect("the ConfigMap the Deployment mounts");
    let config = load(text).unwrap();
    assert!(config.job_store.url.as_deref().is_some_and(|u| u.starts_with("postgres://")), "a PostgreSQL store");
    let set: BTreeSet<&str> =
        container["env"].as_sequence().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    let mut needed = env_names(&config);
    needed.extend(config.job_store.password.iter().filter_map(|p| p.strip_prefix("env:")).map(str::to_string));
    needed.extend(config.signing_key.env.clone());
    needed.extend(config.sources.iter().filter_map(|s| s.webhook_secret_env.clone()));
    for name in &needed {
        assert!(set.contains(name.as_str()), "the configuration reads {name}, which the container does not set");
    }
    assert!(needed.iter().any(|n| n.contains("DB_PASSWORD")), "{needed:?}");

    let scaled = of_kind("ScaledObject").next().expect("a KEDA ScaledObject");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    let metrics_code = std::fs::read_to_string(repo().join("src/pipeline/metrics.rs")).unwrap();
    let mut queried = 0;
    for trigger in scaled["spec"]["triggers"].as_sequence().unwrap() {
        let query = trigger["metadata"]["query"].as_str().expect("a query");
        for (at, _) in query.match_indices("fstgate_") {
            let name: String = query[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            assert!(metrics_code.contains(&format!("# TYPE {name} ")), "fstgate exports no metric {name}");
            queried += 1;
        }
    }
    assert!(queried >= 2, "the triggers query fstgate's queue metrics");
}

/// The examples configure the default policy with its own limits (`policy::thresholds_config` of
/// the defaults), so a change of default shows in every example rather than leaving them behind.
/// Each has at least one `builtin:thresholds` policy.
#[test]
fn the_examples_gate_with_the_default_policys_own_limits() {
    use fstgate::policy;
    let defaults =
        policy::thresholds_config(policy::DEFAULT_MAX_ATTACK_SUCCESS_RATE, policy::DEFAULT_MAX_ACCURACY_DROP_POINTS);
    let mut mismatches = Vec::new();
    for found in all_configs() {
        let config = load(&found.text).unwrap_or_else(|e| panic!("{}: {e}", found.origin));
        let thresholds: Vec<_> = config.policies.iter().filter(|p| p.plugin == policy::DEFAULT_POLICY_NAME).collect();
        if thresholds.is_empty() {
            mismatches.push(format!("{}: no builtin:thresholds policy", found.origin));
        }
        for policy in thresholds.into_iter().filter(|p| p.config != defaults) {
            mismatches.push(format!("{}: {} (the defaults: {defaults})", found.origin, policy.config));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
