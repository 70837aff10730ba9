//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
// patch 7: without TLS and with the worker handoff unused, a few helpers
// are dead; they stay so that the diff to upstream stays small.
#![allow(dead_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use limits::Limits;
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod limits;
mod response;
mod test;
mod util;

pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // patch 5: every open connection
    connections: Arc<limits::Connections>,

    // patch 5: the accept thread, to tell whether it still runs
    accept_thread: thread::JoinHandle<()>,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    /// patch 7: not supported by this copy; `Some` is an error.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

/// patch 6: handles one request on its connection's own thread, so a slow
/// answer holds up only that connection.
pub type Handler = Arc<dyn Fn(Request) + Send + Sync>;

/// patch 13: what a TLS listener serves with (certificates through its
/// resolver, so they can be replaced while the server runs).
#[cfg(feature = "ssl-rustls")]
pub type TlsConfig = Arc<rustls::ServerConfig>;
/// patch 13: without the `ssl-rustls` feature there is no TLS listener.
#[cfg(not(feature = "ssl-rustls"))]
pub enum TlsConfig {}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for a UNIX socket server at a specific path
    #[cfg(unix)]
    #[inline]
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener, with the
    /// default `Limits`; requests are taken with `recv`.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        if ssl_config.is_some() {
            return Err("this copy of tiny-http has no TLS support (PATCHES.md)".into());
        }
        Self::with_limits(listener, Limits::default(), None)
    }

    /// patches 2-6: a server bounded by `limits`. With a `handler`, every
    /// request is handed to it on its connection's thread (and `recv` only
    /// ever returns errors); without one, requests are taken with `recv`.
    pub fn with_limits<L: Into<Listener>>(
        listener: L,
        limits: Limits,
        handler: Option<Handler>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::with_tls(listener, limits, handler, None, None)
    }

    /// patch 13: like `with_limits`; with `tls`, every connection speaks
    /// TLS (its handshake within `Limits::timeout`, like the request). With
    /// `share`, the connections of both servers are counted and evicted in
    /// one table, so `Limits::max_connections` bounds them together.
    pub fn with_tls<L: Into<Listener>>(
        listener: L,
        limits: Limits,
        handler: Option<Handler>,
        tls: Option<TlsConfig>,
        share: Option<&Server>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        let close_trigger = Arc::new(AtomicBool::new(false));
        let local_addr = listener.local_addr()?;
        log::debug!("Server listening on {}", local_addr);

        let messages = MessagesQueue::with_capacity(8);
        let connections = match share {
            Some(other) => other.connections.clone(),
            None => Arc::new(limits::Connections::new(limits.max_connections)),
        };

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let inside_connections = connections.clone();
        let accept_thread = thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || {
                accept_loop(
                    &listener,
                    &inside_close_trigger,
                    &inside_messages,
                    &inside_connections,
                    &limits,
                    handler,
                    tls,
                )
            })?;

        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
            accept_thread,
        })
    }

    /// patch 5: is the accept thread still running? It ends only when the
    /// server closes, or if it panicked.
    pub fn accepting(&self) -> bool {
        !self.accept_thread.is_finished()
    }

    /// patch 5: open connections.
    pub fn num_open(&self) -> usize {
        self.connections.len()
    }

    /// patch 5: connections whose request is being handled.
    pub fn num_busy(&self) -> usize {
        self.connections.busy()
    }

    /// patch 5: stop taking requests: no new connection is served, every
    /// connection that waits for a request is closed, and those with a
    /// request in hand end once it is answered.
    pub fn close_idle(&self) {
        self.close.store(true, Relaxed);
        self.connections.close_idle();
    }
}

/// What an accept error is logged as at most once per this interval.
const ACCEPT_ERROR_REPORT: Duration = Duration::from_secs(60);

/// patch 5: accept connections until the server closes. An accept error
/// (out of file descriptors, a connection reset before it was taken) does
/// not end the loop: the listener is still good, and ending here would
/// leave a process that looks alive but never answers again.
fn accept_loop(
    listener: &Listener,
    close: &Arc<AtomicBool>,
    messages: &Arc<MessagesQueue<Message>>,
    connections: &Arc<limits::Connections>,
    limits: &Limits,
    handler: Option<Handler>,
    tls: Option<TlsConfig>,
) {
    // a tasks pool is used to dispatch the connections into threads
    let tasks_pool = util::TaskPool::new();
    let mut last_error: Option<Instant> = None;
    while !close.load(Relaxed) {
        let sock = match listener.accept() {
            Ok((sock, _)) => sock,
            Err(e) => {
                if last_error.map_or(true, |at| at.elapsed() >= ACCEPT_ERROR_REPORT) {
                    log::error!("cannot accept a connection: {e} (retrying)");
                    last_error = Some(Instant::now());
                }
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if close.load(Relaxed) {
            break;
        }
        let Some(slot) = connections.admit(&sock) else {
            refuse_busy(sock);
            continue;
        };
        let _ = sock.set_write_timeout(limits.timeout);
        let deadline = limits::Deadline::new(connections.base());
        let stream = match (&tls, sock) {
            #[cfg(feature = "ssl-rustls")]
            (Some(config), Connection::Tcp(tcp)) => match util::tls_stream::TlsStream::new(config.clone(), tcp) {
                Ok(tls) => util::refined_tcp_stream::Stream::Https(tls),
                Err(e) => {
                    log::warn!("cannot start TLS on a connection: {e}");
                    connections.remove(&slot);
                    continue;
                }
            },
            (_, sock) => util::refined_tcp_stream::Stream::from(sock),
        };
        // patch 13: without a handler, a TLS connection reads its next
        // request only after the last one was answered: the reader would
        // hold the stream's lock while the answer waits for it.
        #[cfg(feature = "ssl-rustls")]
        let in_turns = matches!(stream, util::refined_tcp_stream::Stream::Https(_));
        #[cfg(not(feature = "ssl-rustls"))]
        let in_turns = false;
        let (read, write) = util::RefinedTcpStream::new(stream);
        let client = ClientConnection::new(write, read.with_deadline(deadline.clone()), limits.clone(), deadline);
        let messages = messages.clone();
        let connections = connections.clone();
        let handler = handler.clone();
        let close = close.clone();
        let mut task = Some((client, slot));
        tasks_pool.spawn(Box::new(move || {
            let Some((client, slot)) = task.take() else { return };
            for rq in client {
                match &handler {
                    Some(handle) => {
                        slot.busy();
                        handle(rq);
                        if close.load(Relaxed) {
                            break;
                        }
                        slot.idle();
                    }
                    None if in_turns => {
                        let (answered, wait) = std::sync::mpsc::channel();
                        messages.push(rq.with_notify_sender(answered).into());
                        // Answered, or dropped (a 500 was written).
                        if wait.recv().is_err() || close.load(Relaxed) {
                            break;
                        }
                    }
                    None => messages.push(rq.into()),
                }
            }
            connections.remove(&slot);
        }));
    }
    log::debug!("Terminating accept thread");
}

/// patch 5: the table is full of connections with a request in hand: say
/// so without waiting for the client, and close.
fn refuse_busy(sock: Connection) {
    use std::io::Write;
    let Connection::Tcp(mut tcp) = sock else { return };
    let _ = tcp.set_nonblocking(true);
    let _ = tcp.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 5\r\n\r\n",
    );
    let _ = tcp.shutdown(Shutdown::Both);
}

impl Server {
    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        // patch 5: upstream left this unimplemented
        self.connections.len()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // patch 5: connections that wait for a request end now; those with
        // a request in hand finish it and then end.
        self.close_idle();
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
