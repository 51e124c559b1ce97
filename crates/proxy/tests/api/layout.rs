//! The map in `docs/architecture.md`, checked on the sources: every module's `//!` says its
//! input, output and what it may use; the arrows the map forbids do not exist; only
//! `config` reads the environment; nothing below the HTTP face knows axum or hyper.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(path relative to the crate's src, text)` of every source file of both crates.
fn crate_files(name: &str) -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 10, "found the sources of {name}");
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&src)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            (rel, std::fs::read_to_string(&p).unwrap_or_default())
        })
        .collect()
}

/// The code of a file without its unit tests (they may use anything).
fn code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

#[test]
fn every_module_doc_says_its_input_output_and_what_it_may_use() {
    let mut missing = Vec::new();
    for krate in ["media", "proxy"] {
        for (path, text) in crate_files(krate) {
            let doc: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("//!"))
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            let io = doc.contains("input") && doc.contains("output");
            let uses = ["uses ", "may use", "nothing of ours", "pure"]
                .iter()
                .any(|w| doc.contains(w));
            if !(io && uses) {
                missing.push(format!("{krate}/src/{path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "module docs without input/output/uses: {missing:?}"
    );
}

#[test]
fn the_arrows_the_map_forbids_do_not_exist() {
    let files = crate_files("proxy");
    // (room, what it must never use).
    let forbidden: &[(&str, &[&str])] = &[
        (
            "cache/",
            &[
                "crate::pipeline",
                "crate::response",
                "crate::routes",
                "axum",
            ],
        ),
        (
            "source/",
            &[
                "crate::pipeline",
                "crate::routes",
                "crate::cache",
                "media::",
            ],
        ),
        ("error.rs", &["crate::response", "axum", "hyper"]),
        ("breaker.rs", &["use crate::"]),
        ("request/", &["use crate::", "axum"]),
        (
            "pipeline/",
            &["crate::response", "crate::routes", "axum", "hyper"],
        ),
        ("workers.rs", &["crate::pipeline", "crate::routes", "axum"]),
        (
            "config/",
            &["crate::pipeline", "crate::routes", "crate::cache", "axum"],
        ),
    ];
    let mut found = Vec::new();
    for (path, text) in &files {
        for (room, never) in forbidden {
            if path.starts_with(room) {
                for arrow in *never {
                    if code(text).contains(arrow) {
                        found.push(format!("{path} uses {arrow}"));
                    }
                }
            }
        }
        // Only `config` reads the environment.
        if !path.starts_with("config/")
            && (code(text).contains("std::env::var") || code(text).contains("env::var_os"))
        {
            found.push(format!("{path} reads the environment"));
        }
    }
    assert!(found.is_empty(), "{found:?}");
    // And the media crate never reaches into the service.
    for (path, text) in crate_files("media") {
        assert!(
            !text.contains("media_proxy"),
            "media/src/{path} uses the service"
        );
    }
}
