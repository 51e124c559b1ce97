//! A real HTTP cache in front of the store mode: Debian's nginx (installed by `./dev tools`)
//! running the recipe we ship, `deploy/nginx/media-proxy.conf` — the one `docs/cdn.md`
//! shows — with only its addresses, certificate and cache directory changed. Through it, over
//! TLS and HTTP/2: the cache key is the URL plus `Accept` normalised to one of three buckets,
//! and the origin is asked with the bucket's `Accept`. The second request for a variant is a
//! HIT, another bucket is another entry, and errors are kept only as long as their
//! `Cache-Control` says (5xx: never); plain HTTP is redirected to HTTPS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::store::spawn_store_app;
use crate::store_s3::free_port;

/// The shipped nginx recipe.
pub fn shipped_recipe() -> String {
    crate::helpers::repo_text("deploy/nginx/media-proxy.conf")
}

/// `text` with `from` replaced by `to`, which must occur exactly `times` times: the recipe
/// changing under the test fails it rather than being silently untested.
fn replaced(text: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "deploy/nginx/media-proxy.conf has `{from}` {times} time(s)"
    );
    text.replace(from, to)
}

/// The shipped recipe on loopback ports, with a test certificate and directory, inside the
/// `http` block a test nginx needs (conf.d files are included into Debian's).
fn nginx_conf(dir: &Path, http: u16, https: u16, upstream: &str) -> String {
    let d = dir.display();
    let mut site = shipped_recipe();
    for (from, to, times) in [
        ("/var/cache/nginx/media-proxy", format!("{d}/cache"), 2),
        ("server 127.0.0.1:3003;", format!("server {upstream};"), 1),
        ("listen 80;", format!("listen 127.0.0.1:{http};"), 1),
        ("listen [::]:80;", String::new(), 1),
        (
            "listen 443 ssl http2;",
            format!("listen 127.0.0.1:{https} ssl http2;"),
            1,
        ),
        ("listen [::]:443 ssl http2;", String::new(), 1),
        (
            "/etc/letsencrypt/live/media.example.com/fullchain.pem",
            format!("{d}/cert.pem"),
            1,
        ),
        (
            "/etc/letsencrypt/live/media.example.com/privkey.pem",
            format!("{d}/key.pem"),
            1,
        ),
    ] {
        site = replaced(&site, from, &to, times);
    }
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{site}
}}
"#
    )
}

/// A throw-away CA and a certificate for 127.0.0.1 signed by it, made by the openssl
/// command line (a self-signed certificate would be a CA used as an end entity, which
/// webpki refuses). Returns the CA's PEM.
fn make_certificate(dir: &Path) -> Vec<u8> {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (`./dev tools`)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=media-proxy test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    std::fs::read(dir.join("ca.pem")).unwrap()
}

struct Nginx {
    child: std::process::Child,
    /// Plain HTTP (redirects) and HTTPS ports.
    http: u16,
    https: u16,
    /// A client that trusts the test CA only and follows no redirect.
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_nginx(upstream: &str) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    let ca = make_certificate(dir.path());
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path(), http, https, upstream)).unwrap();
    let bin = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("-v")
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("nginx is installed (`./dev tools` installs nginx-light)");
    let check = Command::new(bin)
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "nginx -t accepts the shipped recipe: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let nginx = Nginx {
        child,
        http,
        https,
        client,
        _dir: dir,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", https))
            .await
            .is_ok()
        {
            return nginx;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx did not start on port {https}");
}

struct Seen {
    status: StatusCode,
    cache: String,
    content_type: String,
}

async fn through(nginx: &Nginx, path: &str, accept: &str) -> Seen {
    let r = nginx
        .client
        .get(format!("https://127.0.0.1:{}/{path}", nginx.https))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let text = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "HTTP/2 over TLS");
    let seen = Seen {
        status: r.status(),
        cache: text("x-cache-status"),
        content_type: text("content-type"),
    };
    r.bytes().await.unwrap();
    seen
}

#[tokio::test]
async fn a_cdn_cache_hits_per_variant_and_keeps_errors_briefly() {
    let s = spawn_store_app(|s| {
        s.resize.not_found_max_age = Duration::from_secs(1);
        s.resize.error_max_age = Duration::from_secs(1);
    })
    .await;
    let jpeg = crate::helpers::encode(
        image::RgbImage::from_pixel(400, 200, image::Rgb([10, 120, 200])),
        image::ImageFormat::Jpeg,
    );
    s.put("p.jpg", &jpeg);
    let nginx = start_nginx(&s.app.addr.to_string()).await;
    // Plain HTTP is sent to HTTPS.
    let r = nginx
        .client
        .get(format!("http://127.0.0.1:{}/p.jpg?w=100", nginx.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.headers()["location"],
        "https://127.0.0.1/p.jpg?w=100",
        "to the same path over HTTPS"
    );
    let chrome = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
    let firefox = "image/avif,image/webp,*/*";
    let safari = "image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
    let cases = [
        (chrome, "MISS", "image/avif"),
        (chrome, "HIT", "image/avif"),
        // Another browser in the same bucket shares the entry.
        (firefox, "HIT", "image/avif"),
        (safari, "MISS", "image/webp"),
        ("image/webp", "HIT", "image/webp"),
        ("*/*", "MISS", "image/jpeg"),
        ("text/html,*/*", "HIT", "image/jpeg"),
    ];
    for (accept, cache, content_type) in cases {
        let seen = through(&nginx, "p.jpg?w=100", accept).await;
        assert_eq!(seen.status, StatusCode::OK, "{accept}");
        assert_eq!(seen.cache, cache, "{accept}");
        assert_eq!(seen.content_type, content_type, "{accept}");
    }
    // Client errors are kept as long as they say (1 s here), not a day.
    for path in ["missing.jpg?w=100", "p.jpg?w=0"] {
        let first = through(&nginx, path, "*/*").await;
        assert!(first.status.is_client_error(), "{path}");
        assert_eq!(first.cache, "MISS", "{path}");
        assert_eq!(through(&nginx, path, "*/*").await.cache, "HIT", "{path}");
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for path in ["missing.jpg?w=100", "p.jpg?w=0"] {
        let later = through(&nginx, path, "*/*").await;
        assert_eq!(later.cache, "EXPIRED", "{path}: gone after its max-age");
    }
    // A store that fails gives 5xx with no-store: never cached.
    let broken = crate::store_s3::start_binary(
        &format!("http://127.0.0.1:{}", crate::store_s3::free_port()),
        &[],
    )
    .await;
    let nginx = start_nginx(&broken.addr.to_string()).await;
    for _ in 0..2 {
        let seen = through(&nginx, "p.jpg?w=100", "*/*").await;
        assert_eq!(seen.status, StatusCode::BAD_GATEWAY);
        assert_eq!(seen.cache, "MISS", "a 502 is never served from the cache");
    }
}
