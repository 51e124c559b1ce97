//! What crosses the pipe between the server and a worker process, and how it is framed.
//!
//! A frame is `MPW1`, the length of a JSON header (u32, little-endian), the header, the
//! number of payloads (u32), each payload's length (u64), then the payloads back to back.
//! The header is small (a [`media::job::Job`], or an answer's status); the payloads are the
//! input's bytes and the output's, written and read once each, never copied into the
//! header. Every length is checked against the reader's limit before anything is allocated:
//! the server does not trust a worker that a hostile file may have taken over.
//!
//! Input: a header and payloads; output: the same on the other side. Uses `serde_json`.

use std::io::{self, Read};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"MPW1";

/// Longest JSON header accepted (a job or an answer is a few hundred bytes; H.264
/// parameter sets make it a few KB).
const MAX_HEADER: u32 = 1 << 20;

/// Most payloads in one frame (a video plan's samples are bounded far below this).
const MAX_PAYLOADS: u32 = 4096;

/// Sent by a worker once, when it is ready: what confinement it runs under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ready {
    /// `prctl(PR_SET_NO_NEW_PRIVS)` in force.
    pub no_new_privs: bool,
    /// The seccomp filter installed (kills the worker on any call outside its list).
    pub seccomp: bool,
    /// The address-space limit set, in bytes (0: none could be set).
    pub memory_limit: u64,
    /// Why a part of the confinement is missing (the kernel's refusal), if it is.
    pub refused: Option<String>,
}

/// One job for a worker; its payloads follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub job: media::job::Job,
    /// Milliseconds the job has from when the worker reads it (its own `Stop`; the server
    /// kills it at the same deadline in any case).
    pub deadline_ms: u64,
    /// Hand freed memory back to the system after the job (a large one), once no request
    /// has come for `memory::IDLE_BEFORE_RELEASE`.
    pub release_after: bool,
}

/// A job's outcome; after `Rendered` one payload follows: the output's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    Rendered {
        format: media::Format,
        timings: media::Timings,
    },
    /// What `media::prepare` found (a `Job::Assess`); no payload.
    Assessed(media::Assessment),
    Failed(Failure),
}

/// A [`media::Error`] in its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Failure {
    Unsupported(String),
    Invalid(String),
    TooLarge(String),
    Panicked,
    UniformBadge,
    TimedOut,
    Cancelled,
    Encode(String),
}

impl From<&media::Error> for Failure {
    fn from(e: &media::Error) -> Failure {
        use media::Error as E;
        match e {
            E::Unsupported(what) => Failure::Unsupported((*what).to_owned()),
            E::Invalid(s) => Failure::Invalid(s.clone()),
            E::TooLarge(s) => Failure::TooLarge(s.clone()),
            E::Panicked => Failure::Panicked,
            E::UniformBadge => Failure::UniformBadge,
            E::TimedOut => Failure::TimedOut,
            E::Cancelled => Failure::Cancelled,
            E::Encode(s) => Failure::Encode(s.clone()),
        }
    }
}

impl From<Failure> for media::Error {
    fn from(f: Failure) -> media::Error {
        use media::Error as E;
        match f {
            // `Unsupported` names a static string; refused alike (422, remembered).
            Failure::Unsupported(what) => E::Invalid(format!("decoding {what} is not supported")),
            Failure::Invalid(s) => E::Invalid(s),
            Failure::TooLarge(s) => E::TooLarge(s),
            Failure::Panicked => E::Panicked,
            Failure::UniformBadge => E::UniformBadge,
            Failure::TimedOut => E::TimedOut,
            Failure::Cancelled => E::Cancelled,
            Failure::Encode(s) => E::Encode(s),
        }
    }
}

/// The bytes before a frame's payloads: magic, header, the payloads' lengths.
pub fn head(header: &impl Serialize, payloads: &[&[u8]]) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(16 + json.len() + 8 * payloads.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&(payloads.len() as u32).to_le_bytes());
    for p in payloads {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
    }
    Ok(out)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Checks the fixed part of a frame: the magic and the header's length.
pub fn header_len(fixed: [u8; 8]) -> io::Result<usize> {
    if &fixed[..4] != MAGIC {
        return Err(invalid("not a worker frame"));
    }
    let len = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    if len > MAX_HEADER {
        return Err(invalid("worker frame header too long"));
    }
    Ok(len as usize)
}

/// The number of payloads, checked.
pub fn payload_count(bytes: [u8; 4]) -> io::Result<usize> {
    let n = u32::from_le_bytes(bytes);
    if n > MAX_PAYLOADS {
        return Err(invalid("too many payloads in a worker frame"));
    }
    Ok(n as usize)
}

/// Payload lengths (8 bytes each), checked against `max_total` bytes in all.
pub fn payload_lens(bytes: &[u8], max_total: u64) -> io::Result<Vec<usize>> {
    let lens: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| {
            let mut len = [0u8; 8];
            len.copy_from_slice(c);
            u64::from_le_bytes(len)
        })
        .collect();
    let total = lens.iter().try_fold(0u64, |t, &l| t.checked_add(l));
    if total.is_none_or(|t| t > max_total) {
        return Err(invalid("worker frame payloads over the limit"));
    }
    Ok(lens.into_iter().map(|l| l as usize).collect())
}

/// Parses a frame's JSON header.
pub fn parse<H: DeserializeOwned>(json: &[u8]) -> io::Result<H> {
    serde_json::from_slice(json).map_err(|e| invalid(&format!("worker frame header: {e}")))
}

/// Reads one frame from a blocking reader (the worker's side); `None` at a clean end of
/// input before a frame starts.
pub fn read_blocking<H: DeserializeOwned>(
    r: &mut impl Read,
    max_total: u64,
) -> io::Result<Option<(H, Vec<Vec<u8>>)>> {
    let mut fixed = [0u8; 8];
    match r.read_exact(&mut fixed) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let mut json = vec![0; header_len(fixed)?];
    r.read_exact(&mut json)?;
    let mut count = [0u8; 4];
    r.read_exact(&mut count)?;
    let mut lens = vec![0; payload_count(count)? * 8];
    r.read_exact(&mut lens)?;
    let mut payloads = Vec::new();
    for len in payload_lens(&lens, max_total)? {
        let mut p = vec![0; len];
        r.read_exact(&mut p)?;
        payloads.push(p);
    }
    Ok(Some((parse(&json)?, payloads)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_and_lying_lengths_are_refused_before_allocating() {
        let answer = Answer::Failed(Failure::TooLarge("big".into()));
        let payloads: [&[u8]; 2] = [b"abc", b""];
        let mut frame = head(&answer, &payloads).unwrap();
        frame.extend_from_slice(b"abc");
        let (back, got): (Answer, _) = read_blocking(&mut &frame[..], 3).unwrap().unwrap();
        assert!(matches!(back, Answer::Failed(Failure::TooLarge(s)) if s == "big"));
        assert_eq!(got, vec![b"abc".to_vec(), Vec::new()]);
        // Over the reader's limit: refused from the lengths alone.
        assert!(read_blocking::<Answer>(&mut &frame[..], 2).is_err());
        // A payload claiming 2^63 bytes, a header claiming 4 GB, a wrong magic.
        let mut lying = head(&answer, &[]).unwrap();
        lying.truncate(lying.len() - 4);
        lying.extend_from_slice(&1u32.to_le_bytes());
        lying.extend_from_slice(&(1u64 << 63).to_le_bytes());
        assert!(read_blocking::<Answer>(&mut &lying[..], u64::MAX >> 1).is_err());
        assert!(read_blocking::<Answer>(&mut &b"MPW1\xff\xff\xff\xff"[..], 10).is_err());
        assert!(read_blocking::<Answer>(&mut &b"XXXX\0\0\0\0"[..], 10).is_err());
        // A clean end of input is no frame.
        assert!(read_blocking::<Answer>(&mut &b""[..], 10)
            .unwrap()
            .is_none());
    }
}
