//! The files in `deploy/` checked against the gateway they deploy: every metric, label and
//! label value the Prometheus rules and the Grafana dashboard query is one tollgate exports;
//! the Kubernetes manifests agree with their `routes.toml` (ports, probes, mounts, secrets,
//! Redis) and with each other; the Docker image and the systemd unit match the command line
//! and the shutdown grace period.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use tollgate::config::{Backend, Config, CredentialSource};
use tollgate::metrics::Metrics;
use yaml_rust2::{Yaml, YamlLoader};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn s(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {y:?}"))
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], Vec::as_slice)
}

// ---- metrics -------------------------------------------------------------------------------

/// Every series family tollgate exports, with its label names (histograms as `_bucket`,
/// `_sum` and `_count`), from the gateway's own registry with one sample in each.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let m = Metrics::new();
    m.requests
        .with_label_values(&["chat_completions", "m", "p", "t", "200"])
        .inc();
    m.request_duration
        .with_label_values(&["chat_completions", "false"])
        .observe(0.1);
    m.time_to_first_token.with_label_values(&["m"]).observe(0.1);
    m.overhead
        .with_label_values(&["chat_completions"])
        .observe(0.001);
    m.upstream_attempts
        .with_label_values(&["p", "m", "ok"])
        .inc();
    m.tokens.with_label_values(&["m", "input"]).inc();
    m.add_cost("b", "m", 1);
    m.alerts.with_label_values(&["b", "90"]).inc();
    m.alert_deliveries.with_label_values(&["delivered"]).inc();
    m.config_reloads.with_label_values(&["applied"]).inc();
    m.config_info.with_label_values(&["v"]).set(1);
    m.circuit_state.with_label_values(&["p", "m"]).set(0);
    m.budget_spent_ratio.with_label_values(&["b"]).set(0.5);
    m.ledger_lag.set(0);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in m.render().lines().filter(|l| !l.starts_with('#')) {
        let (name, labels) = match line.split_once('{') {
            Some((n, rest)) => (n, rest.split_once('}').unwrap().0),
            None => (line.split_whitespace().next().unwrap(), ""),
        };
        let set = out.entry(name.to_string()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            set.insert(pair.split_once('=').unwrap().0.to_string());
        }
    }
    out
}

/// One `tollgate_*{...}` selector of a PromQL expression.
#[derive(Debug)]
struct Selector {
    metric: String,
    /// (label, operator, value)
    matchers: Vec<(String, String, String)>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The tollgate selectors of `expr` (hand-parsed: metric name, optional `{label op "value", ...}`).
fn selectors(expr: &str) -> Vec<Selector> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tollgate_") {
        let preceded = rest[..i].chars().last().is_some_and(is_ident);
        let tail = &rest[i..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let metric = &tail[..end];
        let mut after = &tail[end..];
        let mut matchers = Vec::new();
        if let Some(body) = after.strip_prefix('{') {
            let close = body.find('}').expect("closed selector");
            for m in body[..close]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
            {
                let op_at = m.find(['=', '!']).expect("matcher operator");
                let label = m[..op_at].trim();
                let rest = &m[op_at..];
                let op_len = rest.find('"').expect("quoted matcher value");
                let value = rest[op_len..].trim().trim_matches('"');
                matchers.push((
                    label.to_string(),
                    rest[..op_len].trim().to_string(),
                    value.to_string(),
                ));
            }
            after = &body[close + 1..];
        }
        if !preceded {
            out.push(Selector {
                metric: metric.to_string(),
                matchers,
            });
        }
        rest = after;
    }
    out
}

/// The label names in `by (...)` / `without (...)` clauses of `expr`.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kw in ["by (", "without ("] {
        let mut rest = expr;
        while let Some(i) = rest.find(kw) {
            let body = &rest[i + kw.len()..];
            let close = body.find(')').unwrap();
            out.extend(
                body[..close]
                    .split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
            rest = &body[close..];
        }
    }
    out
}

/// The source files that give a label its values, for labels whose values are fixed in code
/// (the others, such as `model` or `budget`, come from the config).
fn value_sources(metric: &str, label: &str) -> Option<&'static [&'static str]> {
    Some(match (metric, label) {
        (_, "route" | "streamed" | "kind") => &["src/proxy/mod.rs"],
        (_, "outcome") => &[
            "src/proxy/chain.rs",
            "src/error.rs",
            "src/providers/error.rs",
        ],
        ("tollgate_config_reloads_total", "result") => &["src/reload.rs"],
        ("tollgate_alert_deliveries_total", "result") => &["src/alerts/deliver.rs"],
        _ => return None,
    })
}

/// The string literals of `files` (the label values they can emit).
fn literals(files: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in files {
        for (i, part) in read(f).split('"').enumerate() {
            if i % 2 == 1 {
                out.insert(part.to_string());
            }
        }
    }
    out
}

/// Checks one expression; returns the problems found.
fn check_expr(
    origin: &str,
    expr: &str,
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let sels = selectors(expr);
    let mut labels_here: BTreeSet<String> = ["instance", "job"].map(String::from).into();
    for sel in &sels {
        let Some(labels) = exported.get(&sel.metric) else {
            problems.push(format!("{origin}: `{}` is not exported", sel.metric));
            continue;
        };
        labels_here.extend(labels.iter().cloned());
        for (label, op, value) in &sel.matchers {
            if label == "instance" || label == "job" {
                continue;
            }
            if !labels.contains(label) {
                problems.push(format!("{origin}: `{}` has no label `{label}`", sel.metric));
            }
            // Plain words (not dashboard variables or patterns) must be values the
            // gateway emits.
            let Some(files) = value_sources(&sel.metric, label) else {
                continue;
            };
            let emitted = literals(files);
            for alt in value.split('|') {
                let word = !alt.is_empty()
                    && alt.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && !value.starts_with('$');
                if word && !emitted.contains(alt) {
                    problems.push(format!(
                        "{origin}: `{}{{{label}{op}...}}` matches `{alt}`, a value tollgate never emits",
                        sel.metric
                    ));
                }
            }
        }
    }
    for g in grouping_labels(expr) {
        if g != "le" && !labels_here.contains(&g) {
            problems.push(format!(
                "{origin}: groups by `{g}`, no label of its metrics"
            ));
        }
    }
    problems
}

fn alert_exprs() -> Vec<(String, String)> {
    let doc = &yaml("deploy/prometheus/alerts.yml")[0];
    let mut out = Vec::new();
    for group in list(&doc["groups"]) {
        for rule in list(&group["rules"]) {
            out.push((
                format!("alerts.yml {}", s(&rule["alert"])),
                s(&rule["expr"]).to_string(),
            ));
        }
    }
    out
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/tollgate.json")).expect("dashboard is JSON");
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("tollgate.json panel {:?}", p["title"].as_str().unwrap()),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push((
                format!("tollgate.json variable {}", v["name"]),
                q.to_string(),
            ));
        }
    }
    out
}

#[test]
fn the_selector_parser_reads_names_matchers_and_groupings() {
    let e = r#"sum by (provider) (rate(tollgate_upstream_attempts_total{outcome!~"ok|timeout", provider="openai"}[5m])) / x_tollgate_other"#;
    let sels = selectors(e);
    assert_eq!(sels.len(), 1, "{sels:?}");
    assert_eq!(sels[0].metric, "tollgate_upstream_attempts_total");
    assert_eq!(
        sels[0].matchers,
        vec![
            ("outcome".into(), "!~".into(), "ok|timeout".into()),
            ("provider".into(), "=".into(), "openai".into())
        ]
    );
    assert_eq!(grouping_labels(e), vec!["provider".to_string()]);
    // And the checks reject what does not exist.
    let exported = exported();
    for bad in [
        "tollgate_request_total",
        r#"tollgate_config_reloads_total{result="error"}"#,
        r#"tollgate_upstream_attempts_total{outcome=~"ok|server_errors"}"#,
        r#"tollgate_circuit_state{upstream="x"}"#,
        "sum by (tier) (tollgate_cost_dollars_total)",
    ] {
        assert!(!check_expr("t", bad, &exported).is_empty(), "{bad} passed");
    }
}

#[test]
fn alerts_and_dashboard_query_only_what_tollgate_exports() {
    let exported = exported();
    assert!(exported.contains_key("tollgate_request_duration_seconds_bucket"));
    assert!(exported["tollgate_request_duration_seconds_bucket"].contains("le"));
    assert!(exported.contains_key("tollgate_cost_dollars_total"));
    let alerts = alert_exprs();
    let dashboard = dashboard_exprs();
    assert!(alerts.len() >= 6 && dashboard.len() >= 15);
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (origin, expr) in alerts.iter().chain(&dashboard) {
        problems.extend(check_expr(origin, expr, &exported));
        used.extend(selectors(expr).into_iter().map(|s| s.metric));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The dashboard shows every metric family (histograms through their buckets).
    let families: BTreeSet<_> = exported
        .keys()
        .filter(|n| !n.ends_with("_sum") && !n.ends_with("_count"))
        .cloned()
        .collect();
    let missing: Vec<_> = families.difference(&used).collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
    // Each required condition has an alert.
    let all: String = alerts.iter().map(|(_, e)| e.as_str()).collect();
    for needle in [
        "tollgate_request_duration_seconds_bucket",
        "tollgate_upstream_attempts_total",
        "tollgate_budget_spent_ratio",
        "tollgate_circuit_state",
        "tollgate_config_reloads_total{result=\"rejected\"}",
        "tollgate_state_backend_up",
    ] {
        assert!(all.contains(needle), "no alert on {needle}");
    }
}

// ---- Kubernetes ----------------------------------------------------------------------------

/// Every resource `kustomization.yaml` lists, plus the kustomization itself.
fn kustomize() -> (Yaml, Vec<Yaml>) {
    let k = yaml("deploy/kubernetes/kustomization.yaml").remove(0);
    let mut docs = Vec::new();
    for r in list(&k["resources"]) {
        docs.extend(yaml(&format!("deploy/kubernetes/{}", s(r))));
    }
    (k, docs)
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| s(&d["kind"]) == kind && s(&d["metadata"]["name"]) == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Whether `selector` (a label map) selects pods labelled `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let sel = selector.as_hash().expect("selector map");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels[s(k)].as_str() == v.as_str())
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn port_of(listen: &str) -> i64 {
    listen.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn the_kubernetes_routes_toml_is_valid_and_in_step_with_the_root_one() {
    let cfg = Config::load(&repo("deploy/kubernetes/config/routes.toml"))
        .unwrap_or_else(|e| panic!("deploy/kubernetes/config/routes.toml: {e}"));
    assert_eq!(cfg.state.backend, Backend::Redis);
    let files = std::fs::read_dir(repo("deploy/kubernetes/budgets")).unwrap();
    assert_eq!(cfg.budgets.len(), files.count());
    let parse = |p: &str| -> toml::Table { toml::from_str(&read(p)).unwrap() };
    let mut k8s = parse("deploy/kubernetes/config/routes.toml");
    let mut root = parse("routes.toml");
    // The settings a deployment changes; everything else must match.
    for (table, keys) in [
        ("server", &["listen", "admin_listen"][..]),
        ("budgets", &["dir"][..]),
        ("state", &["backend", "data_dir", "redis_url"][..]),
        ("alerts", &["dashboard_url"][..]),
    ] {
        for t in [&mut k8s, &mut root] {
            let t = t.get_mut(table).and_then(|t| t.as_table_mut()).unwrap();
            for key in keys {
                assert!(t.remove(*key).is_some(), "[{table}] {key} missing");
            }
        }
    }
    assert_eq!(
        k8s, root,
        "deploy/kubernetes/config/routes.toml drifted from routes.toml"
    );
}

#[test]
fn the_kubernetes_manifests_hold_together() {
    let (k, docs) = kustomize();
    // Every manifest in the directory is applied (the Secret example is not, on purpose).
    let listed: BTreeSet<&str> = list(&k["resources"]).iter().map(s).collect();
    for e in std::fs::read_dir(repo("deploy/kubernetes")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml")
            && !["kustomization.yaml", "secret.example.yaml"].contains(&name.as_str())
        {
            assert!(
                listed.contains(name.as_str()),
                "{name} not in kustomization.yaml"
            );
        }
    }
    let ns = s(&k["namespace"]);
    find(&docs, "Namespace", ns);

    let dep = find(&docs, "Deployment", "tollgate");
    assert!(dep["spec"]["replicas"].as_i64().unwrap() >= 2);
    let pod = &dep["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(selects(&dep["spec"]["selector"]["matchLabels"], labels));
    let spec = &pod["spec"];
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let c = &list(&spec["containers"])[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!c["resources"][kind][r].is_badvalue(), "no {kind}.{r}");
        }
    }

    // The config the container is started with.
    let args: Vec<&str> = list(&c["args"]).iter().map(s).collect();
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let config_path = PathBuf::from(args[at + 1]);
    assert!(args.contains(&"serve"));
    let cfg = Config::load(&repo("deploy/kubernetes/config/routes.toml")).unwrap();

    // Ports, probes and Services.
    let ports: BTreeMap<&str, i64> = list(&c["ports"])
        .iter()
        .map(|p| (s(&p["name"]), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert_eq!(ports["http"], port_of(&cfg.server.listen));
    assert_eq!(
        ports["admin"],
        port_of(cfg.server.admin_listen.as_deref().unwrap())
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(s(&get["path"]), "/healthz", "{probe}");
        assert!(ports.contains_key(s(&get["port"])), "{probe} port");
    }
    for (svc, port) in [("tollgate", "http"), ("tollgate-admin", "admin")] {
        let svc = find(&docs, "Service", svc);
        assert!(selects(&svc["spec"]["selector"], labels));
        let targets: Vec<&str> = list(&svc["spec"]["ports"])
            .iter()
            .map(|p| s(&p["targetPort"]))
            .collect();
        assert_eq!(targets, vec![port]);
    }
    let pdb = find(&docs, "PodDisruptionBudget", "tollgate");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], labels));
    assert!(
        pdb["spec"]["minAvailable"].as_i64().unwrap() < dep["spec"]["replicas"].as_i64().unwrap()
    );

    // Shutdown: the pod outlives the gateway's grace period.
    assert!(
        spec["terminationGracePeriodSeconds"].as_i64().unwrap() as u64
            > cfg.server.shutdown_grace.as_secs() + 5
    );

    // Volumes: config and budgets are ConfigMap directories (never subPath, which gets no
    // updates), the data directory is writable.
    let volumes: BTreeMap<&str, &Yaml> = list(&spec["volumes"])
        .iter()
        .map(|v| (s(&v["name"]), v))
        .collect();
    let mount_of = |dir: &Path| -> Yaml {
        let m = list(&c["volumeMounts"])
            .iter()
            .find(|m| Path::new(s(&m["mountPath"])) == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {}", dir.display()));
        assert!(m["subPath"].is_badvalue(), "{} uses subPath", dir.display());
        volumes[s(&m["name"])].clone()
    };
    let config_dir = config_path.parent().unwrap();
    let budgets_dir = normalize(
        &config_dir.join(
            cfg.budgets_settings
                .dir
                .strip_prefix(repo("deploy/kubernetes/config"))
                .unwrap(),
        ),
    );
    let generated: BTreeMap<&str, Vec<&str>> = list(&k["configMapGenerator"])
        .iter()
        .map(|g| (s(&g["name"]), list(&g["files"]).iter().map(s).collect()))
        .collect();
    let cm_files = |dir: &Path| -> Vec<String> {
        let v = mount_of(dir);
        generated[s(&v["configMap"]["name"])]
            .iter()
            .map(|f| f.to_string())
            .collect()
    };
    assert_eq!(
        cm_files(config_dir),
        vec![format!(
            "config/{}",
            config_path.file_name().unwrap().to_str().unwrap()
        )]
    );
    let mut budget_files: Vec<String> = std::fs::read_dir(repo("deploy/kubernetes/budgets"))
        .unwrap()
        .map(|e| format!("budgets/{}", e.unwrap().file_name().to_str().unwrap()))
        .collect();
    budget_files.sort();
    let mut listed_budgets = cm_files(&budgets_dir);
    listed_budgets.sort();
    assert_eq!(listed_budgets, budget_files);
    let data = mount_of(&cfg.state.data_dir);
    assert!(!data["emptyDir"].is_badvalue() || !data["persistentVolumeClaim"].is_badvalue());
    assert!(!mount_of(Path::new("/tmp"))["emptyDir"].is_badvalue());

    // Secrets: the admin token, and exactly the credentials routes.toml names.
    let mut env: BTreeMap<&str, bool> = BTreeMap::new();
    for e in list(&c["env"]) {
        let r = &e["valueFrom"]["secretKeyRef"];
        if !r.is_badvalue() {
            assert_eq!(s(&e["name"]), s(&r["key"]));
            env.insert(s(&e["name"]), r["optional"].as_bool().unwrap_or(false));
        }
    }
    assert_eq!(env.remove("TOLLGATE_ADMIN_TOKEN"), Some(false));
    let named: BTreeSet<&str> = cfg
        .providers
        .values()
        .filter_map(|p| match &p.credential {
            CredentialSource::Env(v) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    assert!(named.contains("SNOWFLAKE_PAT") && named.contains("OPENAI_API_KEY"));
    assert_eq!(env.keys().copied().collect::<BTreeSet<_>>(), named);
    let example = yaml("deploy/kubernetes/secret.example.yaml").remove(0);
    for name in named.iter().chain(&["TOLLGATE_ADMIN_TOKEN"]) {
        assert!(
            !example["stringData"][*name].is_badvalue(),
            "{name} not in secret.example.yaml"
        );
    }
    assert_eq!(s(&example["metadata"]["namespace"]), ns);

    // Redis: the URL in routes.toml is the Service in front of the Redis pods.
    let url = cfg.state.redis_url.trim_start_matches("redis://");
    let (host, port) = url.trim_end_matches('/').split_once(':').unwrap();
    let svc = find(&docs, "Service", host);
    assert_eq!(
        list(&svc["spec"]["ports"])[0]["port"].as_i64(),
        Some(port.parse().unwrap())
    );
    let redis = find(&docs, "StatefulSet", host);
    assert!(selects(
        &svc["spec"]["selector"],
        &redis["spec"]["template"]["metadata"]["labels"]
    ));
    assert!(!selects(&svc["spec"]["selector"], labels));
}

// ---- Docker and systemd --------------------------------------------------------------------

#[test]
fn the_image_and_the_unit_match_the_command_line() {
    let cfg = Config::load(&repo("routes.toml")).unwrap();
    let grace = cfg.server.shutdown_grace.as_secs();

    let docker = read("deploy/docker/Dockerfile");
    let cmd = docker
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    let arg = |flag: &str| &cmd[cmd.iter().position(|a| a == flag).unwrap() + 1];
    assert_eq!(cmd[0], "serve");
    assert_eq!(arg("--config"), "/etc/tollgate/routes.toml");
    assert!(docker.contains("COPY routes.toml /etc/tollgate/routes.toml"));
    let expose: Vec<i64> = docker
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        expose,
        vec![port_of(arg("--listen")), port_of(arg("--admin-listen"))]
    );
    assert!(docker
        .lines()
        .any(|l| l.starts_with("USER ") && !l.contains("root")));

    let unit = read("deploy/systemd/tollgate.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}="))
    };
    assert!(value("ExecReload").contains("-HUP"));
    assert_eq!(value("KillSignal"), "SIGTERM");
    let stop: u64 = value("TimeoutStopSec").parse().unwrap();
    assert!(
        stop > grace + 5,
        "TimeoutStopSec {stop} within the grace period"
    );
    assert!(value("ExecStart").contains(" serve --config /etc/tollgate/routes.toml"));
}
