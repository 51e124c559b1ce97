//! The worker process: `media-proxy worker` (hidden), started by the server. It readies its
//! codecs, confines itself ([`super::confine`]), says so, then renders one job at a time
//! from its standard input to its standard output until the input ends.
//!
//! Its work runs on one thread with a stack of its own ([`STACK`]), made before the filter
//! forbids making threads. Its allocator keeps a single heap (no per-thread arenas, whose
//! address space would count against the limit without holding anything).
//!
//! Input: framed [`Request`]s on stdin; output: [`Ready`], then one [`Answer`] per request
//! on stdout; the exit code. Uses `media` (its jobs), `memory` (handing freed pages back
//! after a large job, once no request has come for [`IDLE_BEFORE_RELEASE`]).

use std::io::{BufReader, BufWriter, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::wire::{self, Answer, Failure, Request};
use crate::memory::IDLE_BEFORE_RELEASE;

/// The stack of the worker's thread: decoders written in C keep large frames on it; Rust
/// parsers recurse only as deep as their bounds (`media::bmff`).
pub const STACK: usize = 16 << 20;

/// Renders jobs until standard input ends. `share`: the bytes it may map beyond its start.
#[allow(unsafe_code)]
pub fn main(share: u64) -> ExitCode {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let work = std::thread::Builder::new()
        .name("worker".into())
        .stack_size(STACK)
        .spawn(move || serve(share));
    match work.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::FAILURE,
    }
}

fn serve(share: u64) -> ExitCode {
    warm_up();
    let ready = super::confine::confine(share);
    let mut input = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut output = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if send(&mut output, &ready, &[]).is_err() {
        return ExitCode::FAILURE;
    }
    // A large job's freed memory is handed back once no request has come for a while, not
    // after each job (see `memory::IDLE_BEFORE_RELEASE`).
    let mut to_release = false;
    loop {
        if to_release && input.buffer().is_empty() && !readable_within(IDLE_BEFORE_RELEASE) {
            crate::memory::release();
            to_release = false;
        }
        let (request, payloads): (Request, _) = match wire::read_blocking(&mut input, u64::MAX) {
            Ok(Some(frame)) => frame,
            // The server closed the pipe: nothing more to do.
            Ok(None) => return ExitCode::SUCCESS,
            Err(_) => return ExitCode::FAILURE,
        };
        let stop = media::Stop::at(Instant::now() + Duration::from_millis(request.deadline_ms));
        let inputs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let outcome = request.job.run(&inputs, &stop);
        drop(inputs);
        drop(payloads);
        let sent = match &outcome {
            Ok(media::job::Done::Rendered(rendered, timings)) => {
                let answer = Answer::Rendered {
                    format: rendered.format,
                    timings: *timings,
                };
                send(&mut output, &answer, &[&rendered.bytes])
            }
            Ok(media::job::Done::Assessed(found)) => {
                send(&mut output, &Answer::Assessed(*found), &[])
            }
            Err(e) => send(&mut output, &Answer::Failed(Failure::from(e)), &[]),
        };
        drop(outcome);
        if sent.is_err() {
            return ExitCode::FAILURE;
        }
        to_release |= request.release_after;
    }
}

/// Whether standard input has something to read (or has ended, or failed: the read that
/// follows says which) within `wait`.
#[allow(unsafe_code)]
fn readable_within(wait: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one pollfd we own, its count, a timeout; the call only writes `revents`.
    let ready = unsafe { libc::poll(&mut fd, 1, ms) };
    ready != 0
}

fn send(
    out: &mut impl Write,
    header: &impl serde::Serialize,
    payloads: &[&[u8]],
) -> std::io::Result<()> {
    out.write_all(&wire::head(header, payloads)?)?;
    for p in payloads {
        out.write_all(p)?;
    }
    out.flush()
}

/// Runs each codec once on a tiny image, so that what they set up on first use (CPU feature
/// detection, tables) happens before the filter, not inside a request.
fn warm_up() {
    let limits = media::Limits::default();
    let outputs = [
        media::Output::Jpeg { quality: 80 },
        media::Output::Webp { quality: 80 },
        media::Output::Avif {
            quality: 60,
            speed: 10,
        },
        media::Output::Png,
        media::Output::Gif,
    ];
    let resize = media::Transform::Resize(media::ops::Resize {
        width: Some(2),
        height: Some(2),
        fit: media::ops::Fit::Fill,
        enlarge: true,
        background: [0, 0, 0, 0],
        still: true,
        max_side: 16,
    });
    let seed = media::encode::png_rgba(4, 4, &[200; 64]);
    let Ok(seed) = seed else { return };
    for output in outputs {
        let made = media::prepare(&seed, media::Format::Png, resize, &limits)
            .and_then(|p| p.with_output(output).render(&seed, &media::Stop::default()));
        // And each output decoded back, through its decoder.
        if let Ok(made) = made {
            let _ = media::prepare(&made.bytes, made.format, resize, &limits)
                .and_then(|p| p.render(&made.bytes, &media::Stop::default()));
        }
    }
}
