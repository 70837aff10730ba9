use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;

use std::sync::mpsc::Sender;

use crate::{HTTPVersion, Header, Method, Response, StatusCode};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, a message must be sent after responding
    notify_when_responded: Option<Sender<()>>,

    // patch 9: set by `abort`; the connection ends instead of reading on
    pub(crate) aborted: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

struct NotifyOnDrop<R> {
    sender: Sender<()>,
    inner: R,
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        let _ = self.sender.send(());
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// patch 4: the body is larger than the bound.
    BodyTooLarge,

    /// patch 4: the length of the body is ambiguous.
    BadBody,

    /// patch 14: a transfer coding other than `chunked`.
    UnknownCoding,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    mut writer: W,
    max_body: usize,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    fn find<'a>(headers: &'a [Header], name: &'static str) -> impl Iterator<Item = &'a Header> + 'a {
        headers.iter().filter(move |h| h.field.equiv(name))
    }

    // patch 4: a body whose length is ambiguous is refused (request
    // smuggling): a Content-Length that is not a number, two that differ,
    // Content-Length beside Transfer-Encoding. patch 14: a Content-Length
    // is digits only (no sign, no list); the only transfer coding is
    // `chunked`, once (`gzip, chunked` would pass the body on undecoded:
    // 501; `chunked, chunked` is 400, RFC 9112 6.1).
    let codings: Vec<String> = find(&headers, "Transfer-Encoding")
        .flat_map(|h| h.value.as_str().split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let lengths: Vec<_> = find(&headers, "Content-Length")
        .map(|h| {
            let v = h.value.as_str().trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            v.parse::<usize>().ok()
        })
        .collect();
    let content_length = match lengths.first() {
        None => None,
        Some(&Some(n)) if lengths.iter().all(|&l| l == Some(n)) => Some(n),
        Some(_) => return Err(RequestCreationError::BadBody),
    };
    let chunked = match codings.as_slice() {
        [] => false,
        _ if content_length.is_some() || version < HTTPVersion(1, 1) => return Err(RequestCreationError::BadBody),
        [one] if one == "chunked" => true,
        many if many.iter().any(String::is_empty) || many.iter().filter(|c| *c == "chunked").count() > 1 => {
            return Err(RequestCreationError::BadBody)
        }
        _ => return Err(RequestCreationError::UnknownCoding),
    };

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match find(&headers, "Expect").next().map(|h| h.value.as_str()) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // patch 4: the body is read here, on the connection's thread and within
    // the request's deadline, into a buffer of at most `max_body` bytes. A
    // declared length over the bound is refused before anything is read or
    // allocated. `Connection: upgrade` gets no special treatment: nothing
    // is upgraded here.
    if content_length.is_some_and(|n| n > max_body) {
        return Err(RequestCreationError::BodyTooLarge);
    }
    if expects_continue && (chunked || content_length.is_some_and(|n| n > 0)) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let mut body = Vec::new();
    if let Some(n) = content_length {
        body.resize(n, 0);
        let mut offset = 0;
        while offset != n {
            let read = source_data.read(&mut body[offset..])?;
            if read == 0 {
                let info = "Connection has been closed before we received enough data";
                return Err(IoError::new(ErrorKind::ConnectionAborted, info).into());
            }
            offset += read;
        }
    } else if chunked {
        // The framing is bounded too: chunk-size lines and extensions count
        // against twice the body bound plus a little.
        let wire_limit = (max_body as u64).saturating_mul(2).saturating_add(4096);
        let mut wire = source_data.by_ref().take(wire_limit);
        let read = read_chunked(&mut wire, max_body, &mut body);
        if body.len() > max_body || wire.limit() == 0 {
            return Err(RequestCreationError::BodyTooLarge);
        }
        match read {
            Ok(()) => {}
            Err(Some(e)) if e.kind() == ErrorKind::TimedOut => return Err(e.into()),
            Err(_) => return Err(RequestCreationError::BadBody),
        }
    }
    drop(source_data);

    Ok(Request {
        data_reader: Some(Box::new(Cursor::new(body)) as Box<dyn Read + Send + 'static>),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        // patch 4: sent above, before the body was read
        must_send_continue: false,
        notify_when_responded: None,
        aborted: None,
    })
}

/// patch 14: a strict `chunked` body (RFC 9112 7.1): each size is 1 to 16
/// hex digits and nothing else, an extension holds no control character,
/// every line ends in CRLF (no bare LF or CR), every chunk's data in CRLF;
/// trailer lines are read and dropped. Appends at most `max_body + 1`
/// bytes to `body`. `Err(None)`: malformed; `Err(Some)`: the read failed.
fn read_chunked<R: Read>(src: &mut R, max_body: usize, body: &mut Vec<u8>) -> Result<(), Option<IoError>> {
    const MAX_LINE: usize = 1024;
    const MAX_TRAILERS: usize = 32;
    fn byte<R: Read>(src: &mut R) -> Result<u8, Option<IoError>> {
        let mut b = [0u8; 1];
        match src.read(&mut b) {
            Ok(1) => Ok(b[0]),
            Ok(_) => Err(Some(IoError::new(ErrorKind::UnexpectedEof, "the body ended early"))),
            Err(e) => Err(Some(e)),
        }
    }
    fn line<R: Read>(src: &mut R) -> Result<Vec<u8>, Option<IoError>> {
        let mut out = Vec::new();
        loop {
            match byte(src)? {
                b'\r' => return if byte(src)? == b'\n' { Ok(out) } else { Err(None) },
                b'\n' => return Err(None),
                b if (b < 0x20 && b != b'\t') || b >= 0x7f => return Err(None),
                b => out.push(b),
            }
            if out.len() > MAX_LINE {
                return Err(None);
            }
        }
    }
    loop {
        let size_line = line(src)?;
        let mut digits = size_line.split(|&b| b == b';').next().unwrap_or(&[]);
        if digits.len() < size_line.len() {
            // `BWS ";"` before an extension.
            while let [rest @ .., b' ' | b'\t'] = digits {
                digits = rest;
            }
        }
        if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(None);
        }
        let digits = std::str::from_utf8(digits).map_err(|_| None)?;
        let size = u64::from_str_radix(digits, 16).map_err(|_| None)?;
        if size == 0 {
            for _ in 0..=MAX_TRAILERS {
                if line(src)?.is_empty() {
                    return Ok(());
                }
            }
            return Err(None);
        }
        let room = (max_body + 1).saturating_sub(body.len()) as u64;
        let take = size.min(room) as usize;
        let start = body.len();
        body.resize(start + take, 0);
        src.read_exact(&mut body[start..]).map_err(Some)?;
        if size > room {
            // Over the bound: the caller answers 413.
            return Ok(());
        }
        if byte(src)? != b'\r' || byte(src)? != b'\n' {
            return Err(None);
        }
    }
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop {
                sender,
                inner: stream,
            };
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop {
                sender,
                inner: writer,
            };
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            writer
        }
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let res = self.respond_impl(response);
        if let Some(sender) = self.notify_when_responded.take() {
            let _ = sender.send(());
        }
        res
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notify_sender(mut self, sender: Sender<()>) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Request {
    /// patch 9: end the connection without any answer, as a peer whose
    /// connection drops does. Only with a handler (`Server::with_limits`),
    /// where the connection reads on only after the handler returns; the
    /// connection's sockets are shut down when it ends.
    pub fn abort(mut self) {
        if let Some(flag) = &self.aborted {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        drop(self.response_writer.take());
        if let Some(sender) = self.notify_when_responded.take() {
            let _ = sender.send(());
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
            if let Some(sender) = self.notify_when_responded.take() {
                let _ = sender.send(());
            }
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
