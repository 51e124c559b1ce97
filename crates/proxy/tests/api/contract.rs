//! The examples of the two contracts in `docs/`, run as they are written: the size table and
//! the orientation example of `docs/misskey-contract.md`, its file-name and
//! `Content-Disposition` examples, and the example URLs at the top of `docs/store-mode.md`.
//! Where a doc's example is read from the doc (the tables, the URL list), changing it
//! changes the test; where the test names the example, it checks the doc still says it.

use reqwest::StatusCode;

use crate::helpers::{encode, made_dir, spawn_app_and_origin};
use crate::store::{decode, spawn_store_app};

fn doc(name: &str) -> String {
    crate::helpers::repo_text(&format!("docs/{name}"))
}

/// `W×H` (the doc's multiplication sign) as numbers.
fn size(text: &str) -> (u32, u32) {
    let (w, h) = text
        .trim()
        .split_once('×')
        .unwrap_or_else(|| panic!("`{text}` is W×H"));
    (w.parse().unwrap(), h.parse().unwrap())
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().trim_matches('`').to_owned())
        .collect()
}

#[tokio::test]
async fn the_size_table_of_the_misskey_contract_holds() {
    let text = doc("misskey-contract.md");
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| input |"));
    let flags = cells(lines.next().expect("the size table"));
    assert_eq!(flags[0], "input");
    let rows: Vec<Vec<String>> = lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect();
    assert!(rows.len() >= 4, "{rows:?}");
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    for row in rows {
        let (w, h) = size(&row[0]);
        for (flag, expected) in flags.iter().zip(&row).skip(1) {
            let url = app.proxy_url(
                "x.webp",
                &origin.url(&format!("/generated/{w}x{h}.png")),
                &format!("&{flag}"),
            );
            let r = app.get(&url).await;
            assert_eq!(r.status(), StatusCode::OK, "{w}×{h} {flag}");
            let d = decode(&r.bytes().await.unwrap());
            assert_eq!(
                (d.format, (d.width, d.height)),
                ("webp", size(expected)),
                "{w}×{h} under {flag}"
            );
        }
    }
}

/// A JPEG of `w`×`h` whose EXIF says orientation 6 (rotate 90° clockwise to show it).
fn jpeg_with_orientation_6(w: u32, h: u32) -> Vec<u8> {
    let jpeg = encode(
        image::RgbImage::from_fn(w, h, |x, _| image::Rgb([(x % 256) as u8, 90, 160])),
        image::ImageFormat::Jpeg,
    );
    // APP1: "Exif\0\0", a big-endian TIFF header, one IFD with one entry: Orientation
    // (0x0112), SHORT, 1 value: 6.
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = u16::try_from(app1.len() + 2).unwrap().to_be_bytes();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1, len[0], len[1]]);
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[tokio::test]
async fn the_orientation_example_of_the_misskey_contract_holds() {
    let text = doc("misskey-contract.md");
    let sentence = "a 3000×2000 photo with orientation 6 gives";
    let start = text.find(sentence).expect("the orientation example") + sentence.len();
    let example: String = text[start..].chars().take_while(|&c| c != '.').collect();
    // "`static` 281×422, `preview` 133×200, …"
    let cases: Vec<(String, (u32, u32))> = example
        .split(',')
        .map(|part| {
            let mut words = part.split_whitespace();
            let flag = words.next().unwrap().trim_matches('`').to_owned();
            (flag, size(words.next().unwrap()))
        })
        .collect();
    assert_eq!(cases.len(), 4, "{example}");
    let name = format!("orientation6-{}.jpg", std::process::id());
    std::fs::write(made_dir().join(&name), jpeg_with_orientation_6(3000, 2000)).unwrap();
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    for (flag, expected) in cases {
        let url = app.proxy_url(
            "x.webp",
            &origin.url(&format!("/made/{name}")),
            &format!("&{flag}"),
        );
        let d = decode(&app.get(&url).await.bytes().await.unwrap());
        assert_eq!((d.width, d.height), expected, "{flag}");
    }
    let _ = std::fs::remove_file(made_dir().join(&name));
}

#[tokio::test]
async fn the_file_name_examples_of_the_misskey_contract_hold() {
    let text = doc("misskey-contract.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let id = std::process::id();
    let png = crate::helpers::corpus_bytes("png-pngsuite/basn6a08.png");
    let jpeg = encode(
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3])),
        image::ImageFormat::Jpeg,
    );
    // (what the doc says, the origin's file, its bytes, flags, the name sent)
    let cases = [
        (
            "`foo.jpg` passed through as PNG → `foo.jpg.png`",
            "foo.jpg",
            &png,
            "",
            "foo.jpg.png",
        ),
        (
            "under `static` → `foo.jpg.webp`",
            "foo.jpg",
            &png,
            "&static",
            "foo.jpg.webp",
        ),
        (
            "`noext` (a PNG) → `noext.png`",
            "noext",
            &png,
            "",
            "noext.png",
        ),
        (
            "`a.jpeg` (a JPEG) → `a.jpeg`",
            "a.jpeg",
            &jpeg,
            "",
            "a.jpeg",
        ),
    ];
    let (app, origin) = spawn_app_and_origin(|_| {}).await;
    for (said, file, bytes, flags, sent) in cases {
        assert!(text.contains(said), "docs/misskey-contract.md says {said}");
        // The name is the URL's last segment: the file under this run's prefix, which is
        // taken off the answer's name below.
        let made = format!("{id}-{file}");
        std::fs::write(made_dir().join(&made), bytes).unwrap();
        let url = app.proxy_url("x", &origin.url(&format!("/made/{made}")), flags);
        let r = app.get(&url).await;
        assert_eq!(r.status(), StatusCode::OK, "{said}");
        let disposition = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ = std::fs::remove_file(made_dir().join(&made));
        let prefix = format!("{id}-");
        assert_eq!(
            disposition.replace(&prefix, ""),
            format!("inline; filename=\"{sent}\""),
            "{said}"
        );
    }
    // The origin's own name, with a space: both forms.
    let example = "`hello world.png` → `inline; filename=\"hello_world.png\"; filename*=UTF-8''hello%20world.png`";
    assert!(
        text.contains(example),
        "docs/misskey-contract.md shows {example}"
    );
    let cd: String =
        url::form_urlencoded::byte_serialize(b"inline; filename=\"hello world.png\"").collect();
    let url = app.proxy_url(
        "x",
        &origin.url(&format!("/corpus/png-pngsuite/basn6a08.png?cd={cd}")),
        "",
    );
    let r = app.get(&url).await;
    assert_eq!(
        r.headers()["content-disposition"],
        "inline; filename=\"hello_world.png\"; filename*=UTF-8''hello%20world.png"
    );
}

#[tokio::test]
async fn the_example_urls_of_the_store_mode_hold() {
    let text = doc("store-mode.md");
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "```text")
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    assert_eq!(block.len(), 5, "{block:?}");
    let s = spawn_store_app(|_| {}).await;
    let photo = encode(
        image::RgbImage::from_fn(1600, 1200, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 99])
        }),
        image::ImageFormat::Jpeg,
    );
    s.put("photos/cat.jpg", &photo);
    s.put(
        "clips/trip.mp4",
        &crate::helpers::corpus_bytes("video/h264_black_first_second.mp4"),
    );
    let mean = |rgb: &[u8]| rgb.iter().map(|&b| f64::from(b)).sum::<f64>() / rgb.len() as f64;
    for line in block {
        let (url, said) = line.split_once('→').expect("URL → what it gives");
        let target = url.trim().trim_start_matches("https://img.example.com/");
        let r = s
            .app
            .client
            .get(format!("http://{}/{target}", s.app.addr))
            .header("accept", "image/webp")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{line}");
        let bytes = r.bytes().await.unwrap();
        let said = said.trim();
        match target {
            "photos/cat.jpg?d=200x200" => {
                let d = decode(&bytes);
                assert_eq!((d.width, d.height), (200, 200), "{said}");
            }
            "photos/cat.jpg?w=800" => {
                let d = decode(&bytes);
                assert_eq!((d.width, d.height), (800, 600), "{said}");
            }
            "photos/cat.jpg" => assert_eq!(bytes.as_ref(), photo.as_slice(), "{said}"),
            // The clip is black for its first second: 5 % of 3 s is black, 2.5 s is not.
            "clips/trip.mp4?w=320" => {
                let d = decode(&bytes);
                assert_eq!(d.width, 320, "{said}");
                assert!(mean(&d.rgb) < 20.0, "{said}: the frame at 5 %");
            }
            "clips/trip.mp4?w=320&t=2.5" => {
                let d = decode(&bytes);
                assert_eq!(d.width, 320, "{said}");
                assert!(mean(&d.rgb) > 40.0, "{said}: the frame at 2.5 s");
            }
            other => panic!("docs/store-mode.md has an example this test does not know: {other}"),
        }
    }
}
