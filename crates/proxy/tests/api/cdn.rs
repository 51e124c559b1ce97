//! A real HTTP cache in front of the store mode: nginx (Debian's, installed by `./dev tools`)
//! with `proxy_cache`, configured as `docs/store-mode.md` recommends — the cache key is the
//! URL plus `Accept` normalised to one of three buckets, and the origin is asked with the
//! bucket's `Accept`. The second request for a variant is a HIT, another bucket is another
//! entry, and errors are kept only as long as their `Cache-Control` says (5xx: never).

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::store::spawn_store_app;

/// The recommended cache configuration (also in docs/store-mode.md), for one upstream.
fn nginx_conf(dir: &std::path::Path, listen: u16, upstream: &str) -> String {
    let d = dir.display();
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
    proxy_cache_path {d}/cache levels=1:2 keys_zone=media:10m max_size=1g inactive=30d use_temp_path=off;

    # Accept → one of three buckets: the cache keeps at most three variants of a URL.
    map $http_accept $media_accept {{
        default        "*/*";
        "~image/avif"  "image/avif,image/webp";
        "~image/webp"  "image/webp";
    }}

    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://{upstream};
            proxy_set_header Accept $media_accept;
            proxy_cache media;
            proxy_cache_key "$scheme$host$request_uri|$media_accept";
            # The key already holds the Accept bucket; nginx's own Vary handling would
            # split the entry by the raw header of every browser.
            proxy_ignore_headers Vary;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"#
    )
}

struct Nginx {
    child: std::process::Child,
    port: u16,
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path(), port, upstream)).unwrap();
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
    let nginx = Nginx {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return nginx;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx did not start on port {port}");
}

struct Seen {
    status: StatusCode,
    cache: String,
    content_type: String,
}

async fn through(client: &reqwest::Client, nginx: &Nginx, path: &str, accept: &str) -> Seen {
    let r = client
        .get(format!("http://127.0.0.1:{}/{path}", nginx.port))
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
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(400, 200, image::Rgb([10, 120, 200]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    s.put("p.jpg", &jpeg);
    let nginx = start_nginx(&s.app.addr.to_string()).await;
    let c = s.app.client.clone();
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
        let seen = through(&c, &nginx, "p.jpg?w=100", accept).await;
        assert_eq!(seen.status, StatusCode::OK, "{accept}");
        assert_eq!(seen.cache, cache, "{accept}");
        assert_eq!(seen.content_type, content_type, "{accept}");
    }
    // Client errors are kept as long as they say (1 s here), not a day.
    for path in ["missing.jpg?w=100", "p.jpg?w=0"] {
        let first = through(&c, &nginx, path, "*/*").await;
        assert!(first.status.is_client_error(), "{path}");
        assert_eq!(first.cache, "MISS", "{path}");
        assert_eq!(
            through(&c, &nginx, path, "*/*").await.cache,
            "HIT",
            "{path}"
        );
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for path in ["missing.jpg?w=100", "p.jpg?w=0"] {
        let later = through(&c, &nginx, path, "*/*").await;
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
        let seen = through(&c, &nginx, "p.jpg?w=100", "*/*").await;
        assert_eq!(seen.status, StatusCode::BAD_GATEWAY);
        assert_eq!(seen.cache, "MISS", "a 502 is never served from the cache");
    }
}
