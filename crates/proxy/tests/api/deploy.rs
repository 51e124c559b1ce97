//! The deployment files: the AWS template passes the CloudFormation linter, and the two
//! `Accept` normalisers (the CloudFront Function in the template, the Cloudflare Worker) put
//! every browser's header into a bucket the store mode reads exactly as it reads the
//! original header — run in Node.js, compared with the server's own parser.

use std::process::Command;

use media_proxy::request::Accepted;

use crate::helpers::repo;

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

/// The Worker running in Miniflare (Cloudflare's workerd runtime and its local Cache API,
/// installed from npm by `./dev tools test`), in front of the app; killed on drop.
struct Worker {
    child: std::process::Child,
    base: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_worker(origin: &str) -> Worker {
    let port = crate::store_s3::free_port();
    let child = Command::new("node")
        .current_dir(repo("deploy/cloudflare"))
        .arg("local.mjs")
        .args([origin, &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node runs");
    let worker = Worker {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..300 {
        if client.get(&worker.base).send().await.is_ok() {
            return worker;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the Worker (Miniflare) did not start; run `npm ci` in deploy/cloudflare");
}

async fn through(worker: &Worker, target: &str, accept: &str) -> (u16, String, Vec<u8>) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client
        .get(format!("{}{target}", worker.base))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.bytes().await.unwrap().to_vec();
    // The Worker stores in the background (waitUntil): let it land before the next request.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    (status, kind, body)
}

const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
const FIREFOX: &str = "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
const OLD_SAFARI: &str = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";

#[tokio::test]
async fn the_cloudflare_worker_caches_answers_in_workerd() {
    use crate::caching::counter;
    use crate::helpers::spawn_app_and_origin;

    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    let worker = start_worker(&format!("http://{}", app.addr)).await;
    let gif: String = url::form_urlencoded::byte_serialize(
        origin.url("/corpus/gif/image-gif/anim-gr.gif").as_bytes(),
    )
    .collect();
    let emoji = format!("/e.webp?url={gif}&emoji=1");

    let (status, kind, first) = through(&worker, &emoji, CHROME).await;
    assert_eq!((status, kind.as_str()), (200, "image/webp"));
    let d = image_webp::WebPDecoder::new(std::io::Cursor::new(&first)).unwrap();
    assert!(d.is_animated());
    assert_eq!(d.dimensions(), (100, 50));
    assert_eq!(counter(&app, "renders").await, 1);

    // Again, from another browser: Cloudflare's cache answers, the proxy is not asked.
    let (status, _, again) = through(&worker, &emoji, FIREFOX).await;
    assert_eq!(status, 200);
    assert!(again == first, "the cached bytes");
    assert_eq!(counter(&app, "renders").await, 1);
    assert_eq!(origin.hits().len(), 1);

    // Another flag is another entry.
    let (status, _, _) = through(&worker, &format!("/e.webp?url={gif}&static=1"), CHROME).await;
    assert_eq!(status, 200);
    assert_eq!(counter(&app, "renders").await, 2);

    // An origin 404 is kept its 5 minutes: asked once.
    let missing: String =
        url::form_urlencoded::byte_serialize(origin.url("/status/404").as_bytes()).collect();
    for _ in 0..2 {
        let (status, _, _) =
            through(&worker, &format!("/x.webp?url={missing}&emoji=1"), CHROME).await;
        assert_eq!(status, 404);
    }
    let asked = origin
        .hits()
        .iter()
        .filter(|h| h.target.starts_with("/status/404"))
        .count();
    assert_eq!(
        asked, 1,
        "the 404 came from the Worker's cache the second time"
    );
}

#[tokio::test]
async fn the_cloudflare_worker_keeps_one_entry_per_accept_bucket() {
    use crate::caching::counter;
    use crate::store::{decode, spawn_store_app};

    let store = spawn_store_app(|_| {}).await;
    std::fs::copy(
        crate::helpers::corpus("jpeg/exif-orientation-pillow/hopper_orientation_1_none.jpg"),
        store.root.path().join("p.jpg"),
    )
    .unwrap();
    let worker = start_worker(&format!("http://{}", store.app.addr)).await;
    let renders = || counter(&store.app, "renders");

    let (status, kind, avif) = through(&worker, "/p.jpg?w=64", CHROME).await;
    assert_eq!((status, kind.as_str()), (200, "image/avif"));
    assert_eq!(decode(&avif).format, "avif");
    assert_eq!(renders().await, 1);
    // Firefox is in Chrome's bucket: the same entry.
    let (_, kind, again) = through(&worker, "/p.jpg?w=64", FIREFOX).await;
    assert_eq!(kind, "image/avif");
    assert!(again == avif);
    assert_eq!(renders().await, 1);
    // An old Safari is another bucket: its own entry, in the source's format.
    let (_, kind, jpeg) = through(&worker, "/p.jpg?w=64", OLD_SAFARI).await;
    assert_eq!(kind, "image/jpeg");
    assert_eq!(decode(&jpeg).width, 64);
    assert_eq!(renders().await, 2);
    let (_, kind, _) = through(&worker, "/p.jpg?w=64", "*/*").await;
    assert_eq!(kind, "image/jpeg");
    assert_eq!(renders().await, 2, "*/* shares the old Safari's entry");
}
