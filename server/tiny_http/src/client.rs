use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::limits::{Deadline, Limits};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // patch 9: set when a request was aborted (`Request::abort`)
    aborted: std::sync::Arc<std::sync::atomic::AtomicBool>,

    // true if the connection goes through SSL
    secure: bool,

    // patch 2, 3: the bounds on one request and the time it may take to arrive
    limits: Limits,
    deadline: Deadline,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// patch 2: a bound of `Limits` was exceeded; the status to answer
    TooLarge(u16, HTTPVersion),
    /// patch 4: a body whose length cannot be known safely
    BadBody(HTTPVersion),
    /// patch 3: the request did not arrive in time; `started` when some of it had
    Timeout { started: bool },
    /// patch 12: a version other than 1.0 and 1.1 (`HTTP/2.0`, the h2 preface)
    Version,
    /// patch 14: a method that is not one of the standard ones (methods
    /// are case-sensitive: `head` is not `HEAD`), or a transfer coding
    /// other than `chunked`
    NotImplemented(HTTPVersion, &'static str),
    ReadIoError(IoError),
}

/// What went wrong reading one line of the head.
enum LineError {
    TooLong,
    /// a control character, or a byte that is not ASCII
    Invalid,
    Io(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Limits,
        deadline: Deadline,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            aborted: Default::default(),
            secure,
            limits,
            deadline,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line. patch 2: at most `limit` bytes,
    ///  no control characters but horizontal tab.
    fn read_next_line(&mut self, limit: usize, received: &mut usize) -> Result<AsciiString, LineError> {
        // patch 11: most head lines fit; growing from empty reallocated
        // several times per line.
        let mut buf = Vec::with_capacity(128.min(limit + 1));
        let mut prev_byte_was_cr = false;
        let mut invalid = false;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b.map_err(LineError::Io)?,
                None => {
                    return Err(LineError::Io(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "Unexpected EOF",
                    )))
                }
            };
            *received += 1;

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                if invalid {
                    return Err(LineError::Invalid);
                }
                return AsciiString::from_ascii(buf).map_err(|_| LineError::Invalid);
            }
            if prev_byte_was_cr || (byte < 0x20 && byte != b'\t' && byte != b'\r') || byte >= 0x7f {
                // Remembered, not returned at once: the line is read to its
                // end so that the answer is not mixed into it.
                invalid = true;
            }

            prev_byte_was_cr = byte == b'\r';

            // `limit` bytes of line, then its CR (patch 14: a line of
            // exactly `limit` bytes was refused).
            if buf.len() >= limit && !(buf.len() == limit && byte == b'\r') {
                return Err(LineError::TooLong);
            }
            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // patch 3: the whole request (head and body) must arrive in time,
        // counted from now: the connection is idle until then.
        self.deadline.set(self.limits.timeout);
        let mut received = 0;
        let line_error = |e: LineError, received: usize, too_long: ReadError, invalid: ReadError| match e {
            LineError::TooLong => too_long,
            LineError::Invalid => invalid,
            LineError::Io(e) if e.kind() == ErrorKind::TimedOut => {
                ReadError::Timeout { started: received > 0 }
            }
            LineError::Io(e) => ReadError::ReadIoError(e),
        };

        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self
                    .read_next_line(self.limits.max_request_line, &mut received)
                    .map_err(|e| {
                        line_error(
                            e,
                            received,
                            ReadError::TooLarge(414, HTTPVersion(1, 1)),
                            ReadError::WrongRequestLine,
                        )
                    })?;

                // patch 14: exactly `method SP target SP version`, nothing trimmed.
                let parsed = parse_request_line(line.as_str())?;
                // patch 12: refused before anything else is read; the
                // request's own writer must not exist yet (it used to be
                // answered through a second writer that waited forever for
                // the first, leaking the thread and the connection).
                if parsed.2 != HTTPVersion(1, 0) && parsed.2 != HTTPVersion(1, 1) {
                    return Err(ReadError::Version);
                }
                if let Method::NonStandard(_) = parsed.0 {
                    return Err(ReadError::NotImplemented(parsed.2, "the method is not implemented"));
                }
                parsed
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let mut header_bytes = 0;
                loop {
                    let left = self.limits.max_header_bytes.saturating_sub(header_bytes);
                    let line = self.read_next_line(left, &mut received).map_err(|e| {
                        line_error(
                            e,
                            received,
                            ReadError::TooLarge(431, version.clone()),
                            ReadError::WrongHeader(version.clone()),
                        )
                    })?;
                    header_bytes += line.len() + 2;

                    if line.is_empty() {
                        break;
                    };
                    if headers.len() >= self.limits.max_headers {
                        return Err(ReadError::TooLarge(431, version));
                    }
                    // patch 14: a field name is a non-empty token right
                    // before its colon; a line starting with white space
                    // (obs-fold) would continue the previous value for one
                    // parser and start a header for another: 400 (RFC 9112
                    // 5.1, 5.2).
                    let field_ok = line.as_str().split_once(':').is_some_and(|(name, _)| {
                        !name.is_empty() && name.bytes().all(is_tchar)
                    });
                    if !field_ok {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str()) {
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                // patch 14: HTTP/1.1 needs exactly one Host, 1.0 at most one
                // (RFC 9112 3.2).
                let hosts = headers.iter().filter(|h: &&crate::Header| h.field.equiv("Host")).count();
                if hosts > 1 || (hosts == 0 && version == HTTPVersion(1, 1)) {
                    return Err(ReadError::WrongHeader(version));
                }
                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let mut request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
            self.limits.max_body,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e)
                    if e.kind() == ErrorKind::TimedOut =>
                {
                    ReadError::Timeout { started: true }
                }
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::BodyTooLarge => ReadError::TooLarge(413, version),
                request::RequestCreationError::BadBody => ReadError::BadBody(version),
                request::RequestCreationError::UnknownCoding => {
                    ReadError::NotImplemented(version, "only the chunked transfer coding is implemented")
                }
            }
        })?;
        self.deadline.set(None);
        request.aborted = Some(self.aborted.clone());

        // return the request
        Ok(request)
    }

    /// Answers a request that cannot be read and ends the connection: we
    /// don't know where the next request would start.
    fn refuse(&mut self, status: u16, version: HTTPVersion, text: &str) {
        use crate::{Response, StatusCode};
        // The answer must not wait for a client that does not read.
        self.deadline.set(None);
        let mut writer = self.sink.next().unwrap();
        let response = Response::from_string(text).with_status_code(StatusCode(status)).with_header(
            crate::Header::from_bytes(&b"Connection"[..], &b"close"[..]).unwrap(),
        );
        response.raw_print(&mut writer, version, &[], false, None).ok();
        writer.flush().ok();
        // Read (and drop) what the client still sends, for a moment, before
        // closing: closing a socket with unread input resets the connection,
        // and the reset can destroy the answer before the client reads it.
        self.deadline.set(Some(LINGER.min(self.limits.timeout.unwrap_or(LINGER))));
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match self.next_header_source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// How long and how much a refused request's remaining input is read.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests || self.aborted.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }

        {
            let rq = match self.read() {
                Err(ReadError::WrongRequestLine) => {
                    self.refuse(400, HTTPVersion(1, 1), "bad request line");
                    return None;
                }

                Err(ReadError::WrongHeader(ver)) => {
                    self.refuse(400, ver, "bad header");
                    return None;
                }

                Err(ReadError::TooLarge(status, ver)) => {
                    let text = match status {
                        414 => "the request line is too long",
                        431 => "the request header fields are too large",
                        _ => "the request body is too large",
                    };
                    self.refuse(status, ver, text);
                    return None;
                }

                Err(ReadError::BadBody(ver)) => {
                    self.refuse(400, ver, "the length of the body is not clear");
                    return None;
                }

                // patch 3: an idle keep-alive connection that sent nothing
                // is closed quietly; a request cut short gets 408.
                Err(ReadError::Timeout { started: false }) => return None,
                Err(ReadError::Timeout { started: true }) => {
                    self.refuse(408, HTTPVersion(1, 1), "the request did not arrive in time");
                    return None;
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    self.refuse(417, ver, "expectation failed");
                    return None;
                }

                Err(ReadError::NotImplemented(ver, text)) => {
                    self.refuse(501, ver, text);
                    return None;
                }

                Err(ReadError::Version) => {
                    self.refuse(505, HTTPVersion(1, 1), "only HTTP/1.0 and HTTP/1.1 are served");
                    return None;
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
/// patch 14: three parts and single spaces; the method a token, the
/// target not empty.
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::WrongRequestLine);
    };
    if method.is_empty() || !method.bytes().all(is_tchar) || path.is_empty() {
        return Err(ReadError::WrongRequestLine);
    }
    let method = method.parse().map_err(|_| ReadError::WrongRequestLine)?;
    Ok((method, path.to_owned(), parse_http_version(version)?))
}

/// A byte of a token (RFC 9110 5.6.2): field names and methods.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
        assert!(super::parse_request_line("GET /hello HTTP/1.1 x").is_err());
        assert!(super::parse_request_line("GET  /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line("G(T /hello HTTP/1.1").is_err());
    }
}
