//! The operator's path, as a new admin meets it: the sample settings the package installs
//! (every key, at its default, with a line of why), `media-proxy --config FILE` without the
//! word `serve` and a host name in `--listen`, a log written to a file (no colour codes, the
//! store key on access lines), settings refused at load (a log filter that would silence
//! the log), `check-config --resolved` and `--lambda`, the Grafana dashboard's queries
//! against the metrics the server exports, the package's files, and the docs (no link out of
//! the repository, the nginx recipe the CDN test runs).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::ToSocketAddrs;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{media_proxy, repo, repo_text as read};

/// `check-config ARGS…`: its exit code, standard output and standard error.
fn check_config(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = media_proxy()
        .arg("check-config")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every key of a TOML table, dotted (`timeouts.idle`).
fn keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        match v {
            toml::Value::Table(t) => keys(&format!("{prefix}{k}."), t, out),
            _ => {
                out.insert(format!("{prefix}{k}"));
            }
        }
    }
}

/// A `# key = value` line of the sample: the key.
fn commented_key(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# ")?;
    let (key, _) = rest.split_once(" = ")?;
    key.chars()
        .all(|c| c.is_ascii_lowercase() || c == '_')
        .then_some(key)
}

#[test]
fn the_sample_settings_list_every_key_at_its_default_with_a_reason() {
    let sample = read("deploy/media-proxy.toml");
    // Every key line has a comment above it (its reason), or shares the one of the lines
    // just above it (the header values, the qualities).
    let lines: Vec<&str> = sample.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if commented_key(line).is_some() {
            let above = lines[..i]
                .iter()
                .rev()
                .find(|l| commented_key(l).is_none())
                .unwrap();
            assert!(
                above.starts_with("# ") && above.len() > 10,
                "`{line}` has a line of why above it"
            );
        }
    }
    // Uncommented, it loads to exactly the defaults.
    let uncommented: String = lines
        .iter()
        .map(|l| match commented_key(l) {
            Some(_) => &l[2..],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.toml");
    std::fs::write(&file, &uncommented).unwrap();
    let (code, defaults, err) = check_config(&[], &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, from_sample, err) = check_config(&[file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "the uncommented sample loads: {err}");
    assert_eq!(
        from_sample, defaults,
        "every value in the sample is the default"
    );
    // And it names every key there is (`proxy`, unset by default, is not printed).
    let mut all = BTreeSet::new();
    keys("", &toml::from_str(&defaults).unwrap(), &mut all);
    all.insert("proxy".into());
    let mut listed = BTreeSet::new();
    keys("", &toml::from_str(&uncommented).unwrap(), &mut listed);
    assert_eq!(listed, all, "deploy/media-proxy.toml lists every key");
    // As shipped (all commented), it is valid too.
    let (code, shipped, err) =
        check_config(&[repo("deploy/media-proxy.toml").to_str().unwrap()], &[]);
    assert_eq!((code, shipped), (Some(0), defaults), "{err}");
}

/// `media-proxy --config F --listen localhost:PORT`: the server, serving `cat.png` from the
/// file's store; its log goes to a pipe, as to a file or the journal.
#[tokio::test]
async fn serve_is_the_default_command_takes_host_names_and_logs_plainly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    std::fs::copy(
        crate::helpers::corpus("png-pngsuite/basn6a08.png"),
        dir.path().join("media/cat.png"),
    )
    .unwrap();
    let config = dir.path().join("media-proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nroot = \"{}\"\n[cache]\nkind = \"none\"\n",
            dir.path().join("media").display()
        ),
    )
    .unwrap();
    let port = crate::store_s3::free_port();
    let listen = format!("localhost:{port}");
    // The address the server will take: the first the system gives for the name.
    let addr = listen.to_socket_addrs().unwrap().next().unwrap();
    let mut child = media_proxy()
        .arg("--config")
        .arg(&config)
        .args(["--listen", &listen])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = crate::helpers::loopback_client();
    let base = format!("http://{addr}");
    crate::helpers::until_serving(
        &client,
        &base,
        &format!("`media-proxy --config F --listen {listen}` on {addr}"),
    )
    .await;
    let r = client
        .get(format!("{base}/cat.png?w=8"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        reqwest::StatusCode::OK,
        "the file's store is used"
    );
    r.bytes().await.unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let done = line.contains("status=200");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let log = tokio::time::timeout(Duration::from_secs(20), log)
        .await
        .expect("an access line")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let access = log.last().unwrap();
    assert!(
        access.contains("mode=\"store\"") || access.contains("mode=store"),
        "{access}"
    );
    assert!(
        access.contains("key=\"cat.png\""),
        "the key asked for: {access}"
    );
    assert!(
        log.iter().all(|l| !l.contains('\u{1b}')),
        "no terminal colour codes in a piped log: {log:?}"
    );
}

#[test]
fn a_log_filter_that_would_silence_the_log_stops_the_program() {
    for (env, names) in [
        (("MEDIA_PROXY__LOG__FILTER", "verbose"), "log.filter"),
        (
            ("MEDIA_PROXY__LOG__FILTER", "media-proxy=debug"),
            "media_proxy=debug",
        ),
        (("RUST_LOG", "inf"), "RUST_LOG"),
    ] {
        let (code, _, err) = check_config(&[], &[env]);
        assert_eq!(code, Some(2), "{env:?}: {err}");
        assert!(err.contains(names), "{env:?} names {names}: {err}");
        let out = media_proxy()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(env.0, env.1)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "serve refuses {env:?} too");
    }
    let (code, _, err) = check_config(&[], &[("RUST_LOG", "warn,media_proxy=debug")]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn check_config_resolves_what_zero_and_empty_settings_mean() {
    let (code, out, err) = check_config(
        &["--resolved"],
        &[
            ("MEDIA_PROXY__STORE__KIND", "s3"),
            ("MEDIA_PROXY__STORE__BUCKET", "originals"),
            ("AWS_REGION", "eu-west-3"),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let t: toml::Table = toml::from_str(&out).expect("still TOML");
    let cores = std::thread::available_parallelism().unwrap().get() as i64;
    assert_eq!(t["workers"]["threads"].as_integer(), Some(cores));
    let budget = t["workers"]["memory_budget"].as_integer().unwrap();
    assert!(budget > 0, "{out}");
    assert_eq!(t["store"]["region"].as_str(), Some("eu-west-3"));
    assert!(
        out.contains("# workers.threads = "),
        "each value says where it came from: {out}"
    );
    assert!(out.contains("from AWS_REGION"), "{out}");
    // What a 1024 MB function would use: Lambda's defaults, its limits.
    let (code, out, err) = check_config(
        &["--lambda", "1024"],
        &[("MEDIA_PROXY__MAX_SIZE", "999999999")],
    );
    assert_eq!(code, Some(0), "{err}");
    let t: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(t["workers"]["memory_budget"].as_integer(), Some(512 << 20));
    assert_eq!(t["log"]["format"].as_str(), Some("json"));
    assert_eq!(t["store"]["kind"].as_str(), Some("none"));
    assert_eq!(t["cache"]["root"].as_str(), Some("/tmp/media-proxy/cache"));
    assert_eq!(
        t["max_size"].as_integer(),
        Some(200_000_000),
        "the stream cap imposed"
    );
    assert!(
        out.starts_with("# as a Lambda function of 1024 MB"),
        "{out}"
    );
}

/// Series names a `/metrics` text offers: each family its `# TYPE` line declares (a counter
/// as `_total`, a histogram as `_bucket`, `_sum`, `_count`), whether or not it has a sample yet.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{}{suffix}", name.trim_end_matches("_total")));
        }
    }
    names
}

#[tokio::test]
async fn the_grafana_dashboard_queries_metrics_the_server_exports() {
    // A store and a persistent cache, so that their breakers' series exist.
    let dir = tempfile::tempdir().unwrap();
    let (store, cache) = (dir.path().join("media"), dir.path().join("cache"));
    let (app, origin) = crate::helpers::spawn_app_and_origin(move |s| {
        s.store.kind = media_proxy::config::StoreKind::Local;
        s.store.root = store;
        s.cache.kind = media_proxy::config::CacheKind::Local;
        s.cache.root = cache;
    })
    .await;
    // A request of each kind, so that every labelled series exists.
    for extra in ["", "&emoji"] {
        let url = app.proxy_url("x", &origin.url("/corpus/png-pngsuite/basn6a08.png"), extra);
        app.get(&url).await.bytes().await.unwrap();
    }
    let url = app.proxy_url("x", &origin.url("/status/500"), "");
    app.get(&url).await.bytes().await.unwrap();
    let names = exported(&crate::helpers::metrics_text(app.addr).await);
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/media-proxy.json")).expect("JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut titles = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap().to_owned();
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: targets"));
        assert!(!targets.is_empty(), "{title} has a query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("media_proxy_") {
                    assert!(
                        names.contains(word),
                        "{title}: `{word}` is not exported ({expr})"
                    );
                    used.insert(word.to_owned());
                }
            }
        }
        titles.insert(title);
    }
    for wanted in [
        "Requests by kind and status",
        "Latency",
        "Cache hit rate",
        "Memory budget",
        "Origin errors",
    ] {
        assert!(titles.contains(wanted), "a panel `{wanted}` in {titles:?}");
    }
    assert!(used.len() >= 6, "{used:?}");
}

#[test]
fn the_package_ships_files_that_exist() {
    let manifest: toml::Table = toml::from_str(&read("crates/proxy/Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    for asset in deb["assets"].as_array().unwrap() {
        let source = asset[0].as_str().unwrap();
        if source.starts_with("target/") {
            continue;
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
        let found = match source.split_once('*') {
            Some((dir, _)) => std::fs::read_dir(path.parent().unwrap()).is_ok() && !dir.is_empty(),
            None => path.is_file(),
        };
        assert!(found, "the package's asset {source} exists");
    }
    assert_eq!(
        deb["conf-files"][0].as_str(),
        Some("/etc/media-proxy/media-proxy.toml")
    );
    let unit = read("deploy/systemd/media-proxy.service");
    assert!(
        unit.lines()
            .any(|l| l.starts_with("ExecStart=/usr/bin/media-proxy ")),
        "the unit runs the packaged binary"
    );
    assert!(unit.contains("--config /etc/media-proxy/media-proxy.toml"));
}

/// Markdown link targets in `text`.
fn links(text: &str) -> Vec<&str> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .collect()
}

#[test]
fn the_docs_stay_inside_the_repository_and_speak_for_themselves() {
    let root = repo("").canonicalize().unwrap();
    let mut files = vec![repo("README.md")];
    for entry in std::fs::read_dir(repo("docs")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.display();
        for target in links(&text) {
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let path = target.split('#').next().unwrap();
            let resolved = file.parent().unwrap().join(path);
            let inside = resolved
                .canonicalize()
                .map(|p| p.starts_with(&root))
                .unwrap_or(false);
            assert!(
                inside,
                "{name}: the link ({target}) leads to a file of the repository"
            );
        }
        for jargon in [
            "shared/spec",
            "shared/seeds",
            "the seed",
            "seed's",
            "route B",
            "route Y",
        ] {
            assert!(
                !text.contains(jargon),
                "{name} says `{jargon}`: say it in our own words"
            );
        }
    }
    // The nginx recipe in docs/cdn.md is the file the CDN test runs.
    let recipe = crate::cdn::shipped_recipe();
    let body: String = recipe
        .lines()
        .skip_while(|l| l.starts_with('#') || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        read("docs/cdn.md").contains(&body),
        "docs/cdn.md shows deploy/nginx/media-proxy.conf as it is"
    );
}

/// The AWS template's parameters and permissions are the ones docs/deploy-aws.md describes.
#[test]
fn the_aws_template_does_what_its_doc_says() {
    let template = read("deploy/aws/template.yaml");
    let doc = read("docs/deploy-aws.md");
    let parameters: Vec<&str> = template
        .lines()
        .skip_while(|l| *l != "Parameters:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|name| !name.starts_with(' '))
        .collect();
    assert!(parameters.len() >= 12, "{parameters:?}");
    for name in parameters {
        assert!(
            doc.contains(&format!("`{name}`")) || doc.contains(&format!("`{name}=")),
            "docs/deploy-aws.md describes `{name}`"
        );
    }
    let actions: BTreeSet<&str> = template
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|w| w.starts_with("s3:"))
        .collect();
    for action in &actions {
        assert!(
            doc.contains(action),
            "docs/deploy-aws.md says why the function has {action}"
        );
    }
    assert!(
        actions.contains("s3:DeleteObject"),
        "damaged cache entries are deleted"
    );
    // The secrets come by reference, never as text in the template.
    assert!(template.contains("{{resolve:secretsmanager:${SigningKeysSecret}}}"));
}
