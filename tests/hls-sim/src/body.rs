//! Response bodies: whole buffers, streamed filler (garbage/oversize) and deliberately aborted
//! transfers (truncate mode `abort`). No allocation beyond the rendered playlist.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Size of the static filler buffers.
const FILL: usize = 64 * 1024;

/// Length of one padding line, newline included.
const PAD_LINE: usize = 64;

/// Padding for `oversize`: lines of an unknown tag (`#EXT-X-SIM-PADDING:xxxx...`), which playlist
/// parsers must ignore, so the body still looks like a valid playlist.
pub(crate) static PADDING: [u8; FILL] = {
    let tag = b"#EXT-X-SIM-PADDING:";
    let mut b = [b'x'; FILL];
    let mut i = 0;
    while i < FILL {
        let mut j = 0;
        while j < tag.len() {
            b[i + j] = tag[j];
            j += 1;
        }
        b[i + PAD_LINE - 1] = b'\n';
        i += PAD_LINE;
    }
    b
};

/// Binary noise for `garbage` (xorshift, fixed seed; starts with a NUL so it never looks like
/// `#EXTM3U`).
pub(crate) static GARBAGE: [u8; FILL] = {
    let mut b = [0u8; FILL];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 1;
    while i < FILL {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (x >> 24) as u8;
        i += 1;
    }
    b
};

/// How long an aborted body waits after its head before failing.
const ABORT_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Error ending an aborted body; hyper then closes the connection.
#[derive(Debug, thiserror::Error)]
#[error("body aborted by truncate fault")]
pub struct BodyAborted;

/// A response body of the simulator.
#[derive(Debug)]
pub enum SimBody {
    /// A whole buffer (possibly empty).
    Full(Option<Bytes>),
    /// `head`, then `remaining` bytes taken from a static filler buffer, streamed in 64 KiB
    /// chunks.
    Fill {
        head: Option<Bytes>,
        filler: &'static [u8; FILL],
        remaining: u64,
        /// Sent without a Content-Length (chunked), so the client learns the size only by
        /// reading.
        chunked: bool,
    },
    /// `head`, then (after a pause that lets hyper flush it) an error although Content-Length
    /// announced `declared` more bytes.
    Abort {
        head: Option<Bytes>,
        declared: u64,
        pause: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl SimBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() {
            SimBody::Full(None)
        } else {
            SimBody::Full(Some(b))
        }
    }

    /// `head` padded with ignorable tag lines up to `total` bytes (at least `head`).
    pub fn padded(head: Bytes, total: u64) -> Self {
        let remaining = total.saturating_sub(head.len() as u64);
        SimBody::Fill {
            head: Some(head),
            filler: &PADDING,
            remaining,
            chunked: false,
        }
    }

    /// [`SimBody::padded`] without a Content-Length.
    pub fn padded_chunked(head: Bytes, total: u64) -> Self {
        match Self::padded(head, total) {
            SimBody::Fill {
                head,
                filler,
                remaining,
                ..
            } => SimBody::Fill {
                head,
                filler,
                remaining,
                chunked: true,
            },
            other => other,
        }
    }

    /// `head`, then the connection is closed although `missing` more bytes were announced.
    pub fn aborted(head: Bytes, missing: u64) -> Self {
        SimBody::Abort {
            head: Some(head),
            declared: missing,
            pause: None,
        }
    }

    /// `total` bytes of binary noise.
    pub fn garbage(total: u64) -> Self {
        SimBody::Fill {
            head: None,
            filler: &GARBAGE,
            remaining: total,
            chunked: false,
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        let this = self.get_mut();
        let item = match this {
            SimBody::Full(b) => b.take().map(|b| Ok(Frame::data(b))),
            SimBody::Fill {
                head,
                filler,
                remaining,
                ..
            } => {
                if let Some(h) = head.take().filter(|h| !h.is_empty()) {
                    Some(Ok(Frame::data(h)))
                } else if *remaining == 0 {
                    None
                } else {
                    let n = (*remaining).min(FILL as u64) as usize;
                    *remaining -= n as u64;
                    let filler: &'static [u8; FILL] = filler;
                    Some(Ok(Frame::data(Bytes::from_static(&filler[..n]))))
                }
            }
            SimBody::Abort {
                head,
                declared,
                pause,
            } => {
                if let Some(h) = head.take().filter(|h| !h.is_empty()) {
                    // hyper buffers; fail only after it has flushed what was sent.
                    *pause = Some(Box::pin(tokio::time::sleep(ABORT_PAUSE)));
                    Some(Ok(Frame::data(h)))
                } else if *declared > 0 {
                    if let Some(p) = pause.as_mut()
                        && p.as_mut().poll(cx).is_pending()
                    {
                        return Poll::Pending;
                    }
                    *declared = 0;
                    Some(Err(BodyAborted))
                } else {
                    None
                }
            }
        };
        Poll::Ready(item)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(b) => b.is_none(),
            SimBody::Fill {
                head, remaining, ..
            } => head.as_ref().is_none_or(|h| h.is_empty()) && *remaining == 0,
            SimBody::Abort { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            SimBody::Fill { chunked: true, .. } => SizeHint::default(),
            SimBody::Fill {
                head, remaining, ..
            } => SizeHint::with_exact(head.as_ref().map_or(0, |h| h.len() as u64) + remaining),
            SimBody::Abort { head, declared, .. } => {
                // Announce the whole length; `declared` counts the part never sent.
                SizeHint::with_exact(head.as_ref().map_or(0, |h| h.len() as u64) + *declared)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn padding_lines() {
        let s = std::str::from_utf8(&PADDING).unwrap();
        assert!(
            s.lines()
                .all(|l| l.starts_with("#EXT-X-SIM-PADDING:") && l.len() == 63)
        );
        assert_eq!(GARBAGE[0], 0);
        assert!(GARBAGE.iter().filter(|&&b| b == 0).count() < FILL / 64);
    }

    #[tokio::test]
    async fn padded_body_has_exact_length() {
        let head = Bytes::from_static(b"#EXTM3U\n");
        let body = SimBody::padded(head, 200_000);
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 200_000);
        assert!(all.starts_with(b"#EXTM3U\n#EXT-X-SIM-PADDING:"));
    }

    #[tokio::test]
    async fn abort_body_errors_after_head() {
        let body = SimBody::aborted(Bytes::from_static(b"abc"), 3);
        assert_eq!(body.size_hint().exact(), Some(6));
        assert!(body.collect().await.is_err());
    }
}
