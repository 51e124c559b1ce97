//! The binary itself: `--help`, and start-up validation that stops with a clear message.

use std::process::Command;

fn media_proxy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_media-proxy"));
    // Only what the test sets: no MEDIA_PROXY__ leaking in from the environment.
    for (key, _) in std::env::vars() {
        if key.starts_with("MEDIA_PROXY__") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn help_explains_every_option() {
    let out = media_proxy().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["--config", "--listen", "MEDIA_PROXY__"] {
        assert!(
            text.contains(needle),
            "serve --help mentions {needle}:\n{text}"
        );
    }
    let out = media_proxy().arg("--help").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("serve"),
        "top-level help lists serve"
    );
}

#[test]
fn bad_settings_stop_the_program_with_a_message_naming_them() {
    let dir = std::env::temp_dir().join(format!("media-proxy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_file = dir.join("bad.toml");
    std::fs::write(&bad_file, "max_size = \"lots\"\n").unwrap();
    // (environment, extra arguments, what the message must name)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<String>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS", "10.0.0.0/33")],
            vec![],
            "10.0.0.0/33",
        ),
        (
            vec![("MEDIA_PROXY__PROXY", "ftp://proxy.example")],
            vec![],
            "proxy",
        ),
        (
            vec![("MEDIA_PROXY__TIMEOUTS__IDLE", "0s")],
            vec![],
            "timeouts.idle",
        ),
        (
            vec![("MEDIA_PROXY__STORE__KIND", "s3")],
            vec![],
            "store.bucket",
        ),
        (
            vec![("MEDIA_PROXY__RESIZE__SIGNING_KEYS", "[\"short\"]")],
            vec![],
            "resize.signing_keys",
        ),
        (
            vec![],
            vec!["--config".into(), bad_file.display().to_string()],
            "max_size",
        ),
        (
            vec![],
            vec![
                "--config".into(),
                dir.join("missing.toml").display().to_string(),
            ],
            "does not exist",
        ),
    ];
    for (env, args, needle) in cases {
        let out = media_proxy()
            .arg("serve")
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{env:?} {args:?}: exit code 2; stderr: {stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{env:?} {args:?}: message names `{needle}`: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
