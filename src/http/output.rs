//! JSON answers that carry a command's output (`/process/execute`, `/process/code-run`),
//! encoded as they are sent. The output is held once (`process::Output`); each of its text
//! fields is written from it slice by slice, invalid UTF-8 replaced exactly as
//! `String::from_utf8_lossy` replaces it and escaped exactly as `serde_json` escapes a string,
//! into chunks of about [`CHUNK_BYTES`]. So an answer with 64 MiB of output costs that output and
//! one chunk, not a text copy of each field plus the whole JSON document; and the encoding work
//! is spread over the polls of the body, a chunk at a time. An answer that fits in one chunk is
//! sent whole, with a `Content-Length`; a longer one is chunked.

use std::ops::Range;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::process::{Cursor, Output, Stream};

/// Bytes of output encoded per chunk of the body (a chunk is larger where characters need
/// escapes: at most six times).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Which text of the output a field holds.
#[derive(Debug, Clone, Copy)]
pub enum Text {
    /// Both streams in arrival order.
    Interleaved,
    /// One stream alone.
    Of(Stream),
}

#[derive(Debug)]
enum Part {
    /// JSON text as it goes out (keys, punctuation, small values).
    Json(Vec<u8>),
    /// The contents of a JSON string, encoded from the output.
    Text(Text),
}

/// A JSON object whose string fields may hold a command's output.
#[derive(Debug)]
pub struct OutputJson {
    output: Output,
    parts: Vec<Part>,
    fields: usize,
}

impl OutputJson {
    /// An object whose text fields come from `output`.
    pub fn new(output: Output) -> OutputJson {
        OutputJson {
            output,
            parts: vec![Part::Json(b"{".to_vec())],
            fields: 0,
        }
    }

    /// Adds `"name": value`, the value as `serde_json` writes it.
    pub fn field<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> OutputJson {
        let mut json = self.key(name);
        // Our own plain values (numbers, booleans, `serde_json::Value`s) always encode.
        if serde_json::to_writer(&mut json, value).is_err() {
            json.extend_from_slice(b"null");
        }
        self.parts.push(Part::Json(json));
        self
    }

    /// Adds `"name": "<text of the output>"`.
    pub fn text(mut self, name: &str, text: Text) -> OutputJson {
        let mut json = self.key(name);
        json.push(b'"');
        self.parts.push(Part::Json(json));
        self.parts.push(Part::Text(text));
        self.parts.push(Part::Json(b"\"".to_vec()));
        self
    }

    fn key(&mut self, name: &str) -> Vec<u8> {
        let mut json = Vec::with_capacity(name.len() + 4);
        if self.fields > 0 {
            json.push(b',');
        }
        self.fields += 1;
        // A `&str` always encodes.
        let _ = serde_json::to_writer(&mut json, name);
        json.push(b':');
        json
    }

    /// The chunks of the whole document, in order.
    fn into_chunks(mut self) -> Chunks {
        self.parts.push(Part::Json(b"}".to_vec()));
        Chunks {
            output: self.output,
            parts: self.parts,
            part: 0,
            range: None,
            cursor: Cursor::default(),
            started: false,
            encoder: JsonText::default(),
        }
    }
}

impl IntoResponse for OutputJson {
    fn into_response(self) -> Response {
        let mut chunks = self.into_chunks();
        let first = chunks.next().unwrap_or_default();
        let body = if chunks.done() {
            Body::from(first)
        } else {
            let rest = futures_util::stream::iter(
                std::iter::once(first)
                    .chain(chunks)
                    .map(Ok::<_, std::convert::Infallible>),
            );
            Body::from_stream(rest)
        };
        let mut response = Response::new(body);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// The document, a chunk at a time.
struct Chunks {
    output: Output,
    parts: Vec<Part>,
    /// The part being written.
    part: usize,
    /// What is left of the output slice being encoded, when in a `Text` part.
    range: Option<Range<usize>>,
    /// Where a `Text::Of` part is in its stream.
    cursor: Cursor,
    /// Whether a `Text::Interleaved` part took its one slice.
    started: bool,
    encoder: JsonText,
}

impl Chunks {
    fn done(&self) -> bool {
        self.part >= self.parts.len()
    }

    /// The next output slice of the current `Text` part, or `None` once the part is written.
    fn next_range(&mut self, text: Text) -> Option<Range<usize>> {
        match text {
            Text::Interleaved => {
                let first = !std::mem::replace(&mut self.started, true);
                first.then(|| 0..self.output.interleaved().len())
            }
            Text::Of(stream) => self.output.next_range(stream, &mut self.cursor),
        }
    }
}

impl Iterator for Chunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.done() {
            return None;
        }
        let mut out = Vec::with_capacity(CHUNK_BYTES + 64);
        let mut budget = CHUNK_BYTES;
        while budget > 0 && !self.done() {
            let text = match &self.parts[self.part] {
                Part::Json(json) => {
                    out.extend_from_slice(json);
                    self.part += 1;
                    continue;
                }
                Part::Text(text) => *text,
            };
            let range = match self.range.take().filter(|r| !r.is_empty()) {
                Some(range) => range,
                None => match self.next_range(text) {
                    Some(range) => range,
                    None => {
                        self.encoder.finish(&mut out);
                        self.part += 1;
                        self.cursor = Cursor::default();
                        self.started = false;
                        continue;
                    }
                },
            };
            let end = range.start + range.len().min(budget);
            self.encoder
                .feed(&self.output.interleaved()[range.start..end], &mut out);
            budget -= end - range.start;
            self.range = Some(end..range.end);
        }
        Some(Bytes::from(out))
    }
}

/// The contents of one JSON string, encoded from bytes fed in pieces: what is not UTF-8 becomes
/// U+FFFD as `String::from_utf8_lossy` makes it (one per maximal invalid sequence, also where a
/// sequence is cut between two pieces), and the text is escaped as `serde_json` escapes it.
#[derive(Debug, Default)]
pub struct JsonText {
    /// The start of a character cut at the end of the last piece.
    carry: [u8; 4],
    carried: usize,
}

const REPLACEMENT: &str = "\u{FFFD}";

impl JsonText {
    /// Encodes `input` onto `out` (holding back a character cut at its end).
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while self.carried > 0 {
            let Some((&next, rest)) = input.split_first() else {
                return;
            };
            let mut bytes = self.carry;
            bytes[self.carried] = next;
            match std::str::from_utf8(&bytes[..=self.carried]) {
                Ok(text) => {
                    escape(text, out);
                    self.carried = 0;
                    input = rest;
                }
                Err(err) if err.error_len().is_none() => {
                    // Still the start of a character (at most three bytes of one).
                    self.carry = bytes;
                    self.carried += 1;
                    input = rest;
                }
                Err(_) => {
                    // `next` does not go on with the carried bytes: they are one invalid
                    // sequence, and `next` is looked at afresh.
                    out.extend_from_slice(REPLACEMENT.as_bytes());
                    self.carried = 0;
                }
            }
        }
        loop {
            match std::str::from_utf8(input) {
                Ok(text) => {
                    escape(text, out);
                    return;
                }
                Err(err) => {
                    let (valid, rest) = input.split_at(err.valid_up_to());
                    // SAFETY: from_utf8 checked every byte before `valid_up_to`.
                    escape(unsafe { std::str::from_utf8_unchecked(valid) }, out);
                    match err.error_len() {
                        Some(invalid) => {
                            out.extend_from_slice(REPLACEMENT.as_bytes());
                            input = &rest[invalid..];
                        }
                        None => {
                            // A character cut at the end: kept for the next piece.
                            self.carry[..rest.len()].copy_from_slice(rest);
                            self.carried = rest.len();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Ends the string: a character still cut is one U+FFFD.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.carried > 0 {
            out.extend_from_slice(REPLACEMENT.as_bytes());
            self.carried = 0;
        }
    }
}

/// Appends `text` with `serde_json`'s escapes: `"` and `\`, the short forms `\b \f \n \r \t`,
/// and `\u00XX` (lowercase) for the other control characters.
fn escape(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` encoded in pieces of `size`, as the body would.
    fn encode_in_pieces(bytes: &[u8], size: usize) -> String {
        let mut out = Vec::new();
        let mut text = JsonText::default();
        for piece in bytes.chunks(size.max(1)) {
            text.feed(piece, &mut out);
        }
        text.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// What serde_json writes for the lossy text, without the quotes.
    fn serde_way(bytes: &[u8]) -> String {
        let json = serde_json::to_string(&String::from_utf8_lossy(bytes)).unwrap();
        json[1..json.len() - 1].to_string()
    }

    #[test]
    fn every_ascii_byte_is_escaped_as_serde_json_does() {
        let all: Vec<u8> = (0u8..=0x7f).collect();
        assert_eq!(encode_in_pieces(&all, 1000), serde_way(&all));
    }

    #[test]
    fn invalid_utf8_becomes_what_from_utf8_lossy_gives_wherever_the_pieces_are_cut() {
        let samples: [&[u8]; 8] = [
            "héllo wörld — ✓ 𝄞 end".as_bytes(),
            b"bad\xff\xfe.txt",
            b"cut \xf0\x9f\x98",
            b"\xe2\x82 two bad then ok \xe2\x82\xac",
            b"\xf0\x90\x41 prefix then ascii",
            b"\xc0\xaf overlong, \xed\xa0\x80 surrogate, \xf4\x90\x80\x80 too big",
            b"\x80\x80\x80 lone continuations",
            b"mixed \"quotes\" \\ and \x01\x1f\n\t controls \xff",
        ];
        for sample in samples {
            let want = serde_way(sample);
            for size in 1..=sample.len() {
                assert_eq!(
                    encode_in_pieces(sample, size),
                    want,
                    "{sample:?} in pieces of {size}"
                );
            }
        }
    }

    #[test]
    fn pseudo_random_bytes_agree_with_the_whole_encoding() {
        let mut seed = 0x2545_f491_u32;
        let bytes: Vec<u8> = (0..20_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                // Mostly text, with a share of bytes of multi-byte and broken characters.
                match seed % 8 {
                    0 => 0x80 | (seed >> 8) as u8 & 0x3f,
                    1 => 0xc0 | (seed >> 8) as u8 & 0x3f,
                    2 => 0xe0 | (seed >> 8) as u8 & 0x1f,
                    _ => (seed >> 8) as u8 & 0x7f,
                }
            })
            .collect();
        let want = serde_way(&bytes);
        for size in [1, 2, 3, 5, 64, 4096] {
            assert_eq!(encode_in_pieces(&bytes, size), want, "pieces of {size}");
        }
    }

    /// The whole body, gathered.
    fn document(json: OutputJson) -> Vec<u8> {
        json.into_chunks()
            .flat_map(|chunk| chunk.to_vec())
            .collect()
    }

    #[test]
    fn documents_match_serde_json_for_small_and_chunked_outputs() {
        for size in [0usize, 10, CHUNK_BYTES - 1, 3 * CHUNK_BYTES + 17] {
            let mut output = Output::new(1 << 30);
            let mut i = 0;
            while output.interleaved().len() < size {
                let n = (size - output.interleaved().len()).min(1 + i % 700);
                let stream = if i % 3 == 0 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                let data: Vec<u8> = (0..n)
                    .map(|j| b"ab\"\\\n\xc3\xa9\xff"[(i + j) % 8])
                    .collect();
                output.push(stream, &data);
                i += 1;
            }
            let want = serde_json::json!({
                "exitCode": 3,
                "result": String::from_utf8_lossy(output.interleaved()),
                "stdout": String::from_utf8_lossy(&output.to_vec(Stream::Stdout)),
                "stderr": String::from_utf8_lossy(&output.to_vec(Stream::Stderr)),
                "truncated": false,
            });
            let body = document(
                OutputJson::new(output)
                    .field("exitCode", &3)
                    .text("result", Text::Interleaved)
                    .text("stdout", Text::Of(Stream::Stdout))
                    .text("stderr", Text::Of(Stream::Stderr))
                    .field("truncated", &false),
            );
            let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got, want, "size {size}");
            // Byte for byte what serde_json writes for the same fields in this order.
            let keys = ["exitCode", "result", "stdout", "stderr", "truncated"];
            let mut ordered = Vec::from(&b"{"[..]);
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    ordered.push(b',');
                }
                ordered.extend(serde_json::to_vec(key).unwrap());
                ordered.push(b':');
                ordered.extend(serde_json::to_vec(&want[key]).unwrap());
            }
            ordered.push(b'}');
            assert_eq!(body, ordered, "size {size}");
        }
    }
}
