//! The request parser: path, query and Range header from arbitrary text, split at NUL
//! bytes. Must answer a route or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let path = parts.next().unwrap_or("/");
    let query = parts.next();
    let range = parts.next();
    let head = data.first().is_some_and(|b| b & 1 == 1);
    let _ = media_proxy::request::parse(path, query, head, range);
});
