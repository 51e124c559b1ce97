//! The deployment files: the AWS template passes the CloudFormation linter, and the two
//! `Accept` normalisers (the CloudFront Function in the template, the Cloudflare Worker) put
//! every browser's header into a bucket the store mode reads exactly as it reads the
//! original header — run in Node.js, compared with the server's own parser.

use std::path::{Path, PathBuf};
use std::process::Command;

use media_proxy::pipeline::store::Accepted;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

#[test]
fn the_aws_template_passes_cfn_lint() {
    let template = repo("deploy/aws/template.yaml");
    // cfn-lint from PyPI (installed by `./dev tools test`), run through its own entry point.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())",
        ])
        .arg(&template)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&template).unwrap();
    for required in [
        "InvokeMode: RESPONSE_STREAM",
        "HttpVersion: http2and3",
        "QueryStringBehavior: all",
        "Default: arm64",
        "Default: 256",
        "Default: 16",
    ] {
        assert!(text.contains(required), "template lacks {required}");
    }
}

/// `Accept` headers browsers and tools send, plus the edge cases the parser knows.
const ACCEPTS: [Option<&str>; 12] = [
    // Chrome / Edge (AVIF and WebP)
    Some("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"),
    // Firefox
    Some("image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"),
    // Safari 16+
    Some("image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"),
    // Older Chrome (WebP only)
    Some("image/webp,image/apng,image/*,*/*;q=0.8"),
    // Old Safari
    Some("image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"),
    Some("*/*"),
    None,
    Some(""),
    Some("IMAGE/AVIF, Image/WebP"),
    Some("image/avif;q=0,image/webp"),
    Some("image/avif , image/webp;q=0.0"),
    Some("text/html,image/avif;q=0.1"),
];

/// Runs `script` (an ES module) with Node.js; it prints one JSON array of buckets.
fn node(script: &str) -> Vec<String> {
    let out = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .output()
        .expect("node runs (./dev tools test installs it)");
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON array")
}

fn inputs_json() -> String {
    serde_json::to_string(&ACCEPTS.to_vec()).unwrap()
}

fn check_buckets(who: &str, buckets: &[String]) {
    assert_eq!(buckets.len(), ACCEPTS.len());
    let mut distinct: Vec<&String> = buckets.iter().collect();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() <= 4, "{who}: {distinct:?}");
    for (accept, bucket) in ACCEPTS.iter().zip(buckets) {
        assert_eq!(
            Accepted::parse(bucket),
            Accepted::parse(accept.unwrap_or("")),
            "{who}: {accept:?} → {bucket:?} changes what the store mode would choose"
        );
    }
    // The buckets are really different: AVIF, WebP and neither each occur.
    let kinds: Vec<Accepted> = buckets.iter().map(|b| Accepted::parse(b)).collect();
    assert!(kinds.iter().any(|k| k.avif && k.webp));
    assert!(kinds.iter().any(|k| !k.avif && k.webp));
    assert!(kinds.iter().any(|k| !k.avif && !k.webp));
}

/// The `FunctionCode: |` block of the template, de-indented.
fn cloudfront_function() -> String {
    let text = std::fs::read_to_string(repo("deploy/aws/template.yaml")).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("FunctionCode: |"));
    lines
        .next()
        .expect("the template has a CloudFront Function");
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("        "))
        .collect();
    body.iter()
        .map(|l| l.get(8..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_cloudfront_function_keeps_what_the_store_mode_reads_from_accept() {
    let code = cloudfront_function();
    assert!(code.contains("function handler(event)"), "{code}");
    let script = format!(
        "{code}\nconst inputs = {inputs};\n\
         console.log(JSON.stringify(inputs.map((a) => {{\n\
           const headers = a === null ? {{}} : {{ accept: {{ value: a }} }};\n\
           return handler({{ request: {{ uri: '/a.jpg', headers }} }}).headers.accept.value;\n\
         }})));",
        inputs = inputs_json()
    );
    check_buckets("CloudFront Function", &node(&script));
}

#[test]
fn the_cloudflare_worker_keeps_what_the_store_mode_reads_from_accept() {
    let worker = repo("deploy/cloudflare/worker.js");
    let script = format!(
        "const m = await import({url});\n\
         if (typeof m.default.fetch !== 'function') throw new Error('no fetch handler');\n\
         console.log(JSON.stringify({inputs}.map((a) => m.acceptBucket(a))));",
        url = serde_json::to_string(&format!("file://{}", worker.display())).unwrap(),
        inputs = inputs_json()
    );
    check_buckets("Cloudflare Worker", &node(&script));
}
