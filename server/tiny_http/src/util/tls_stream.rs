//! patch 13: a TLS connection (rustls) shared by a connection's reader and
//! writer halves.
//!
//! tiny_http's own rustls code (removed in patch 7) deadlocked with
//! keep-alive (tiny-http #144, #151): the reader half held the stream's lock
//! while it waited for the next request, so the writer half could not send
//! the answer. Here that cannot happen: a connection is served on one
//! thread in strict turns — read a request (head and body, patch 4), write
//! its answer, read the next — so the lock is never wanted by the other
//! half while one half holds it. Other threads never touch the TLS state:
//! closing a connection from outside (the connection table) shuts down the
//! TCP socket, which ends a waiting read with an error.

use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

type Tls = rustls::StreamOwned<rustls::ServerConnection, Socket>;

/// The TCP socket under rustls. After a read timed out, further reads in
/// the same `TlsStream::read` time out at once: rustls reads again after a
/// timeout when the first read of the call got some bytes, and each read
/// would wait the whole timeout again (half a ClientHello held a
/// connection for twice `CLIENT_TIMEOUT`).
struct Socket {
    tcp: TcpStream,
    timed_out: bool,
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.timed_out {
            return Err(IoError::new(ErrorKind::WouldBlock, "timed out"));
        }
        let result = self.tcp.read(buf);
        if matches!(&result, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut) {
            self.timed_out = true;
        }
        result
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.tcp.flush()
    }
}

pub(crate) struct TlsStream {
    tls: Arc<Mutex<Tls>>,
    /// The same socket, for timeouts, the peer address and shutdown
    /// without the lock.
    tcp: TcpStream,
}

impl TlsStream {
    /// Wrap an accepted socket; the handshake happens on the first read,
    /// within the request's deadline (patch 3).
    pub(crate) fn new(config: Arc<rustls::ServerConfig>, tcp: TcpStream) -> IoResult<TlsStream> {
        let conn = rustls::ServerConnection::new(config).map_err(|e| IoError::new(ErrorKind::Other, e))?;
        let own = tcp.try_clone()?;
        let socket = Socket { tcp: own, timed_out: false };
        Ok(TlsStream { tls: Arc::new(Mutex::new(rustls::StreamOwned::new(conn, socket))), tcp })
    }

    fn lock(&self) -> IoResult<MutexGuard<'_, Tls>> {
        // A thread that panicked mid-record leaves a stream that cannot be
        // trusted: the connection ends.
        self.tls.lock().map_err(|_| IoError::new(ErrorKind::Other, "TLS state poisoned"))
    }

    pub(crate) fn try_clone(&self) -> IoResult<TlsStream> {
        Ok(TlsStream { tls: Arc::clone(&self.tls), tcp: self.tcp.try_clone()? })
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> IoResult<()> {
        self.tcp.set_read_timeout(timeout)
    }

    pub(crate) fn peer_addr(&self) -> IoResult<Option<SocketAddr>> {
        self.tcp.peer_addr().map(Some)
    }

    /// Closing the write half first says so in TLS (close_notify), as
    /// clients that check for truncation expect.
    pub(crate) fn shutdown(&self, how: Shutdown) -> IoResult<()> {
        if how != Shutdown::Read {
            // Not during a handshake: rustls would first wait to read
            // the rest of it.
            if let Ok(mut tls) = self.tls.try_lock() {
                if !tls.conn.is_handshaking() {
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            }
        }
        self.tcp.shutdown(how)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let mut tls = self.lock()?;
        tls.sock.timed_out = false;
        match tls.read(buf) {
            // A client that closes without close_notify (most do after
            // their last answer) is an ordinary end of the connection.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.lock()?.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        let mut tls = self.lock()?;
        // Nothing was written during a handshake that did not end (a
        // refused request's writer is flushed on drop): rustls would first
        // wait to read the rest of the handshake.
        if tls.conn.is_handshaking() && !tls.conn.wants_write() {
            return Ok(());
        }
        tls.flush()
    }
}
