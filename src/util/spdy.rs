//! SPDY/3.1 framing as moby/spdystream (kubectl's side) speaks it: the transport of `kubectl
//! port-forward` (tunneled through a WebSocket or on an upgraded connection) and of exec and attach on
//! kubectl's SPDY fallback. Frames are parsed from and
//! written to byte buffers. Header blocks go through one zlib stream per direction, shared by every frame
//! of the connection and primed with SPDY/3's dictionary, each block ending with a sync flush. Flow control
//! is neither sent nor enforced, as spdystream does neither.

use std::future::Future;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// SPDY/3's header compression dictionary (the spec's §2.6.10.1; spdystream's `spdy/dictionary.go`).
const DICTIONARY: &[u8] = include_bytes!("spdy_dictionary.bin");
const VERSION: u16 = 3;
const CONTROL_BIT: u8 = 0x80;
const FLAG_FIN: u8 = 0x01;
/// Every frame starts with 8 bytes: the control bit and version and type, or the stream id; then flags
/// and a 24-bit length.
const FRAME_HEADER: usize = 8;
/// The most a header block may inflate to; kubectl's are a few dozen bytes.
const MAX_HEADER_BLOCK: usize = 64 << 10;
/// The most a data frame carries when this side writes (the length field allows 16 MiB).
pub const MAX_DATA: usize = 32 << 10;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;

/// RST_STREAM status codes.
pub const PROTOCOL_ERROR: u32 = 1;
pub const INVALID_STREAM: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("header block: {0}")]
    HeaderBlock(String),
}

/// A header block's names (lowercase, as SPDY/3 sends them) and values.
pub type Headers = Vec<(String, String)>;

/// The value of header `name` (case-insensitive).
pub fn header<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        headers: Headers,
        fin: bool,
    },
    SynReply {
        stream: u32,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
    },
    Headers {
        stream: u32,
        headers: Headers,
    },
    Data {
        stream: u32,
        data: Bytes,
        fin: bool,
    },
    /// SETTINGS, WINDOW_UPDATE, NOOP and types SPDY/3 does not define: nothing to act on.
    Ignored,
}

/// Reads the frames of one direction of a connection.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            inflate: Decompress::new(true),
        }
    }
}

impl Decoder {
    /// The next whole frame at the front of `buf` (taken out of it), or None until more bytes arrive.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < FRAME_HEADER {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < FRAME_HEADER + length {
            buf.reserve(FRAME_HEADER + length - buf.len());
            return Ok(None);
        }
        let head = buf.split_to(FRAME_HEADER);
        let mut body = buf.split_to(length).freeze();
        let fin = head[4] & FLAG_FIN != 0;
        if head[0] & CONTROL_BIT == 0 {
            let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                stream,
                data: body,
                fin,
            }));
        }
        let version = u16::from_be_bytes([head[0] & !CONTROL_BIT, head[1]]);
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let need = |body: &Bytes, len: usize, kind: &'static str| {
            if body.len() < len {
                Err(SpdyError::Malformed(kind))
            } else {
                Ok(())
            }
        };
        let frame = match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                need(&body, 10, "SYN_STREAM")?;
                let stream = body.get_u32() & 0x7fff_ffff;
                // The associated stream, priority and slot mean nothing to port-forward.
                body.advance(6);
                Frame::SynStream {
                    stream,
                    headers: self.headers(&body)?,
                    fin,
                }
            }
            SYN_REPLY => {
                need(&body, 4, "SYN_REPLY")?;
                let stream = body.get_u32() & 0x7fff_ffff;
                Frame::SynReply {
                    stream,
                    headers: self.headers(&body)?,
                }
            }
            HEADERS => {
                need(&body, 4, "HEADERS")?;
                let stream = body.get_u32() & 0x7fff_ffff;
                // Inflated even though unused: the zlib stream is shared with every later block.
                Frame::Headers {
                    stream,
                    headers: self.headers(&body)?,
                }
            }
            RST_STREAM => {
                need(&body, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            PING => {
                need(&body, 4, "PING")?;
                Frame::Ping { id: body.get_u32() }
            }
            GOAWAY => {
                need(&body, 4, "GOAWAY")?;
                Frame::GoAway {
                    last_good: body.get_u32() & 0x7fff_ffff,
                }
            }
            _ => Frame::Ignored,
        };
        Ok(Some(frame))
    }

    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let plain = self.inflate(block)?;
        let malformed = || SpdyError::HeaderBlock("truncated name/value block".into());
        let mut rest = plain.as_slice();
        let take = |rest: &mut &[u8]| -> Result<String, SpdyError> {
            if rest.len() < 4 {
                return Err(malformed());
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            *rest = &rest[4..];
            if rest.len() < len {
                return Err(malformed());
            }
            let (text, tail) = rest.split_at(len);
            *rest = tail;
            String::from_utf8(text.to_vec())
                .map_err(|_| SpdyError::HeaderBlock("a name or value is not UTF-8".into()))
        };
        if rest.len() < 4 {
            return Err(malformed());
        }
        let count = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        // Each pair takes at least 8 bytes: a count beyond that is a lie, not a reason to allocate.
        let mut headers = Vec::with_capacity(count.min(rest.len() / 8));
        for _ in 0..count {
            let name = take(&mut rest)?;
            let value = take(&mut rest)?;
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(256);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlock(format!(
                        "inflates beyond {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.capacity());
            }
            let (read, written) = (self.inflate.total_in(), out.len());
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let consumed = (self.inflate.total_in() - read) as usize;
            input = &input[consumed..];
            match result {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::HeaderBlock(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::HeaderBlock(e.to_string())),
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed == 0 && out.len() == written {
                return Err(SpdyError::HeaderBlock("the zlib stream stalled".into()));
            }
        }
    }
}

/// Writes the frames of one direction of a connection.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .expect("a fresh deflate stream takes a dictionary");
        Encoder { deflate }
    }
}

impl Encoder {
    /// Appends `frame` to `out`. Data longer than the 24-bit length field is the caller's to split
    /// ([`MAX_DATA`] is what this crate sends).
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let control = |out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]| {
            out.put_u16(u16::from(CONTROL_BIT) << 8 | VERSION);
            out.put_u16(kind);
            put_flags_and_length(out, flags, body.len());
            out.put_slice(body);
        };
        match frame {
            Frame::Data { stream, data, fin } => {
                out.put_u32(stream & 0x7fff_ffff);
                put_flags_and_length(out, fin_flag(*fin), data.len());
                out.put_slice(data);
            }
            Frame::SynStream {
                stream,
                headers,
                fin,
            } => {
                let mut body = BytesMut::new();
                body.put_u32(*stream);
                body.put_u32(0);
                body.put_u16(0);
                body.put_slice(&self.header_block(headers)?);
                control(out, SYN_STREAM, fin_flag(*fin), &body);
            }
            Frame::SynReply { stream, headers } => {
                let mut body = BytesMut::new();
                body.put_u32(*stream);
                body.put_slice(&self.header_block(headers)?);
                control(out, SYN_REPLY, 0, &body);
            }
            Frame::Headers { stream, headers } => {
                let mut body = BytesMut::new();
                body.put_u32(*stream);
                body.put_slice(&self.header_block(headers)?);
                control(out, HEADERS, 0, &body);
            }
            Frame::RstStream { stream, status } => {
                let body = [stream.to_be_bytes(), status.to_be_bytes()].concat();
                control(out, RST_STREAM, 0, &body);
            }
            Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good } => {
                let body = [last_good.to_be_bytes(), 0u32.to_be_bytes()].concat();
                control(out, GOAWAY, 0, &body);
            }
            Frame::Ignored => {}
        }
        Ok(())
    }

    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut plain = BytesMut::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.put_slice(name.to_ascii_lowercase().as_bytes());
            plain.put_u32(value.len() as u32);
            plain.put_slice(value.as_bytes());
        }
        let mut input = &plain[..];
        let mut out = Vec::with_capacity(plain.len() + 64);
        loop {
            let read = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::HeaderBlock(e.to_string()))?;
            input = &input[(self.deflate.total_in() - read) as usize..];
            // A sync flush is complete once a call leaves output space unused.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

/// The frames arriving on `incoming`, decoded in order; the stream ends with the connection, or after
/// yielding the error of the first malformed frame.
pub fn read_frames(
    incoming: BoxStream<'static, Bytes>,
) -> BoxStream<'static, Result<Frame, SpdyError>> {
    let state = (incoming, Decoder::default(), BytesMut::new());
    futures_util::stream::unfold(Some(state), |state| async move {
        let (mut incoming, mut decoder, mut buf) = state?;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => return Some((Ok(frame), Some((incoming, decoder, buf)))),
                Err(e) => return Some((Err(e), None)),
                Ok(None) => buf.extend_from_slice(&incoming.next().await?),
            }
        }
    })
    .boxed()
}

/// A queue of frames for `outgoing`, and the writer that encodes them in order through one encoder (the
/// header compression spans the connection). The writer ends once every sender is dropped, or when the
/// connection is gone.
pub fn frame_writer(
    outgoing: mpsc::Sender<Bytes>,
    queued: usize,
) -> (mpsc::Sender<Frame>, impl Future<Output = ()> + Send) {
    let (frames, mut queue) = mpsc::channel::<Frame>(queued);
    let writer = async move {
        let mut encoder = Encoder::default();
        while let Some(frame) = queue.recv().await {
            let mut buf = BytesMut::new();
            if let Err(e) = encoder.encode(&frame, &mut buf) {
                tracing::debug!(error = %e, "SPDY: encoding a frame");
                return;
            }
            if outgoing.send(buf.freeze()).await.is_err() {
                return;
            }
        }
    };
    (frames, writer)
}

fn fin_flag(fin: bool) -> u8 {
    if fin {
        FLAG_FIN
    } else {
        0
    }
}

fn put_flags_and_length(out: &mut BytesMut, flags: u8, length: usize) {
    let length = length as u32;
    out.put_u8(flags);
    out.put_slice(&length.to_be_bytes()[1..]);
}

/// kubectl's side of a SPDY connection for unit tests of what serves one.
#[cfg(test)]
pub mod testing {
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    use super::{Decoder, Encoder, Frame, Headers};
    use crate::util::upgrade::Pipe;

    pub struct Client {
        encoder: Encoder,
        decoder: Decoder,
        to_server: mpsc::Sender<Bytes>,
        from_server: mpsc::Receiver<Bytes>,
        buf: BytesMut,
    }

    impl Client {
        /// A client, and the connection the code under test serves.
        pub fn connect() -> (Client, Pipe) {
            let (to_server, server_in) = mpsc::channel::<Bytes>(64);
            let (server_out, from_server) = mpsc::channel::<Bytes>(64);
            let incoming = futures_util::stream::unfold(server_in, |mut rx| async move {
                rx.recv().await.map(|b| (b, rx))
            })
            .boxed();
            let client = Client {
                encoder: Encoder::default(),
                decoder: Decoder::default(),
                to_server,
                from_server,
                buf: BytesMut::new(),
            };
            let pipe = Pipe {
                incoming,
                outgoing: server_out,
            };
            (client, pipe)
        }

        pub async fn send(&mut self, frame: Frame) {
            let mut buf = BytesMut::new();
            self.encoder.encode(&frame, &mut buf).unwrap();
            self.to_server.send(buf.freeze()).await.unwrap();
        }

        /// Opens `stream` with `headers`.
        pub async fn open(&mut self, stream: u32, headers: &[(&str, &str)]) {
            let headers: Headers = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            self.send(Frame::SynStream {
                stream,
                headers,
                fin: false,
            })
            .await;
        }

        /// The server's next frame; panics if none comes within 5 s.
        pub async fn next(&mut self) -> Frame {
            loop {
                if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                    return frame;
                }
                let more = tokio::time::timeout(Duration::from_secs(5), self.from_server.recv())
                    .await
                    .expect("the server answers")
                    .expect("the connection is open");
                self.buf.extend_from_slice(&more);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn frames_survive_a_round_trip_sharing_one_zlib_stream_per_direction() {
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                headers: headers(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
                fin: false,
            },
            Frame::SynStream {
                stream: 3,
                headers: headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
                fin: false,
            },
            Frame::SynReply {
                stream: 3,
                headers: vec![],
            },
            Frame::Data {
                stream: 3,
                data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n"),
                fin: true,
            },
            Frame::Headers {
                stream: 3,
                headers: headers(&[("x", "y")]),
            },
            Frame::RstStream {
                stream: 5,
                status: PROTOCOL_ERROR,
            },
            Frame::Ping { id: 7 },
            Frame::GoAway { last_good: 3 },
        ];
        let mut encoder = Encoder::default();
        let mut wire = BytesMut::new();
        for frame in &frames {
            encoder.encode(frame, &mut wire).unwrap();
        }
        // Bytes arrive in pieces: a frame is returned only once it is whole.
        let mut decoder = Decoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in wire.chunks(5) {
            buf.extend_from_slice(chunk);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn header_blocks_are_zlib_with_the_spdy_dictionary() {
        let mut wire = BytesMut::new();
        Encoder::default()
            .encode(
                &Frame::SynReply {
                    stream: 1,
                    headers: headers(&[("streamtype", "data")]),
                },
                &mut wire,
            )
            .unwrap();
        assert_eq!(&wire[..4], [0x80, 0x03, 0x00, 0x02]);
        let block = &wire[FRAME_HEADER + 4..];
        // A zlib header with FDICT set, then the dictionary's Adler-32 (RFC 1950).
        assert_eq!(block[1] & 0x20, 0x20);
        assert_eq!(
            u32::from_be_bytes([block[2], block[3], block[4], block[5]]),
            adler32(DICTIONARY)
        );
        // Ends with a sync flush, so the reader has the whole block without waiting for more.
        assert!(block.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        b << 16 | a
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut decoder = Decoder::default();
        let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0][..]);
        assert!(matches!(
            decoder.decode(&mut v2),
            Err(SpdyError::Version(2))
        ));
        let mut short_ping = BytesMut::from(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 1][..]);
        assert!(matches!(
            decoder.decode(&mut short_ping),
            Err(SpdyError::Malformed("PING"))
        ));
        let mut garbage_headers = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ][..],
        );
        assert!(matches!(
            decoder.decode(&mut garbage_headers),
            Err(SpdyError::HeaderBlock(_))
        ));
        let mut unknown = BytesMut::from(&[0x80, 0x03, 0x00, 0x04, 0, 0, 0, 4, 0, 0, 0, 0][..]);
        assert_eq!(decoder.decode(&mut unknown).unwrap(), Some(Frame::Ignored));
    }
}
