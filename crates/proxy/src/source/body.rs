//! One body type for every source: an origin's HTTP response and an object-store read are
//! both a [`Body`] — chunks under a size cap, read ahead and put back for sniffing, read
//! whole into a memory [`Room`], skipped, or streamed on. Input: the source's chunk stream
//! (its own time limits already applied, its own error type `E`); output: bytes. Uses only
//! `source`'s [`Room`] and [`Collector`].

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;

use super::{Collector, NoRoom, Room};

/// What a source's error must offer a body: room refusals and the size cap.
pub trait BodyError: From<NoRoom> + Send + 'static {
    /// The body is larger than `limit` bytes.
    fn too_large(limit: u64) -> Self;
}

/// A body read under the limits: at most `limit` bytes in all (the source's stream applies
/// its deadlines). Bytes pushed back with [`Body::unread`] come out first.
pub struct Body<E> {
    chunks: BoxStream<'static, Result<Bytes, E>>,
    pending: Bytes,
    read: u64,
    limit: u64,
    /// The length the source announced (`Content-Length`, the object's size): a hint for
    /// the first buffer, never trusted beyond it.
    announced: Option<u64>,
    /// The stream ended (or was cut off at the cap): it is never polled again.
    ended: bool,
    /// Counts every byte read (the `received_bytes` metric).
    received: Counter,
}

impl<E> std::fmt::Debug for Body<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes read)", self.read)
    }
}

impl<E: BodyError> Body<E> {
    pub(crate) fn new(
        chunks: BoxStream<'static, Result<Bytes, E>>,
        limit: u64,
        announced: Option<u64>,
        received: Counter,
    ) -> Self {
        Body {
            chunks,
            pending: Bytes::new(),
            read: 0,
            limit,
            announced,
            ended: false,
            received,
        }
    }

    /// The next chunk, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, E> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        if self.ended {
            return Ok(None);
        }
        match self.chunks.next().await {
            Some(Ok(chunk)) => {
                self.read = self.read.saturating_add(chunk.len() as u64);
                self.received.inc_by(chunk.len() as u64);
                if self.read > self.limit {
                    // A source that sends more than it announced (or than the cap) is cut off.
                    self.ended = true;
                    return Err(E::too_large(self.limit));
                }
                Ok(Some(chunk))
            }
            Some(Err(e)) => Err(e),
            None => {
                self.ended = true;
                Ok(None)
            }
        }
    }

    /// Lowers this body's size cap to `limit` (never raises it): the passthrough cap.
    pub fn limit_to(&mut self, limit: u64) {
        self.limit = self.limit.min(limit);
    }

    /// Puts bytes back in front of the body, ahead of anything already pushed back. They
    /// were counted against the size cap when first read and are not counted again.
    pub fn unread(&mut self, bytes: Bytes) {
        if self.pending.is_empty() {
            self.pending = bytes;
        } else {
            let mut joined = BytesMut::with_capacity(bytes.len() + self.pending.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.pending);
            self.pending = joined.freeze();
        }
    }

    /// Reads until at least `n` bytes are buffered or the body ends. Returns the first
    /// `min(n, available)` bytes and whether the body ended within them; anything read
    /// beyond `n` stays in the body.
    pub async fn read_head(&mut self, n: usize) -> Result<(Bytes, bool), E> {
        let mut head = BytesMut::new();
        while head.len() < n {
            match self.chunk().await? {
                Some(chunk) => head.extend_from_slice(&chunk),
                None => return Ok((head.freeze(), true)),
            }
        }
        let rest = head.split_off(n);
        let ended = rest.is_empty() && self.pending.is_empty() && self.ended;
        if !rest.is_empty() {
            self.unread(rest.freeze());
        }
        Ok((head.freeze(), ended))
    }

    /// Reads everything that is left (bounded by the size cap), every growth of the buffer
    /// reserved in `room` first (see [`Collector`]). Room for the announced length is taken
    /// up front up to [`super::INITIAL_BUFFER`]: growing the buffer from nothing copied a
    /// 2 MB photo several times over, ~2 % of the CPU of a preview.
    pub async fn read_all(mut self, room: &mut dyn Room) -> Result<Bytes, E> {
        let left = self.limit.saturating_sub(self.read);
        let unread = self.announced.unwrap_or(0).saturating_sub(self.read);
        let hint = (self.pending.len() as u64).saturating_add(unread.min(left));
        let mut all = Collector::new(hint, room)?;
        while let Some(chunk) = self.chunk().await? {
            all.push(&chunk)?;
        }
        Ok(all.finish())
    }

    /// Discards the first `n` bytes. Returns false if the body ended first.
    pub async fn skip(&mut self, mut n: u64) -> Result<bool, E> {
        while n > 0 {
            let Some(mut chunk) = self.chunk().await? else {
                return Ok(false);
            };
            let len = chunk.len() as u64;
            if len > n {
                // n < len ≤ usize::MAX, so the cast is lossless.
                let rest = chunk.split_off(n as usize);
                self.unread(rest);
                return Ok(true);
            }
            n -= len;
        }
        Ok(true)
    }

    /// The rest of the body as a stream, stopping after `take` bytes when given, and after
    /// the first error (hyper then aborts the response).
    pub fn into_stream(self, take: Option<u64>) -> impl Stream<Item = Result<Bytes, E>> + Send {
        futures_util::stream::unfold((self, take), |(mut body, left)| async move {
            if left == Some(0) {
                return None;
            }
            match body.chunk().await {
                Ok(Some(mut chunk)) => {
                    let mut left = left;
                    if let Some(l) = left {
                        if (chunk.len() as u64) > l {
                            // l < chunk.len(), so it fits in usize.
                            chunk.truncate(l as usize);
                        }
                        left = Some(l - chunk.len() as u64);
                    }
                    Some((Ok(chunk), (body, left)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), (body, Some(0)))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceError;

    fn body(chunks: &[&'static [u8]], limit: u64) -> Body<SourceError> {
        let items: Vec<Result<Bytes, SourceError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Body::new(
            futures_util::stream::iter(items).boxed(),
            limit,
            None,
            Counter::default(),
        )
    }

    #[tokio::test]
    async fn a_head_read_ahead_and_put_back_leaves_the_body_whole() {
        let mut b = body(&[b"abc", b"defg", b"h"], 100);
        let (head, ended) = b.read_head(5).await.unwrap();
        assert_eq!((&head[..], ended), (&b"abcde"[..], false));
        b.unread(head);
        assert!(b.skip(2).await.unwrap());
        let rest: Vec<Bytes> = b.into_stream(Some(5)).map(Result::unwrap).collect().await;
        assert_eq!(rest.concat(), b"cdefg");
    }

    #[tokio::test]
    async fn the_end_is_seen_within_the_head_and_more_than_the_cap_is_refused() {
        let mut b = body(&[b"abc"], 100);
        let (head, ended) = b.read_head(3).await.unwrap();
        assert_eq!((&head[..], ended), (&b"abc"[..], false), "not polled past");
        assert_eq!(b.read_head(1).await.unwrap(), (Bytes::new(), true));
        let mut b = body(&[b"abc", b"def"], 4);
        assert!(matches!(
            b.read_head(6).await,
            Err(SourceError::TooLarge { limit: 4 })
        ));
        assert_eq!(
            b.chunk().await.unwrap(),
            None,
            "cut off, never polled again"
        );
    }
}
