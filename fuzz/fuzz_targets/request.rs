//! The request parser: path, query and Range header from arbitrary text, split at NUL
//! bytes, in both modes (the store mode with signing on for odd first bytes). Must answer a
//! route or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let path = parts.next().unwrap_or("/");
    let query = parts.next();
    let range = parts.next();
    let head = data.first().is_some_and(|b| b & 1 == 1);
    let rules = media_proxy::request::resize::Rules {
        max_side: 4096,
        allowed_sizes: Vec::new(),
        signing_keys: if head {
            vec![b"fuzzing-key-0123456789".to_vec()]
        } else {
            Vec::new()
        },
    };
    let _ = media_proxy::request::parse(path, query, head, range, None, &[]);
    let _ = media_proxy::request::parse(path, query, head, range, Some(&rules), &[]);
    // Remote URLs signed (remote.signing_keys): a bad or missing `sig` is an error, never a
    // panic.
    let _ = media_proxy::request::parse(path, query, head, range, None, &[b"key".to_vec()]);
});
