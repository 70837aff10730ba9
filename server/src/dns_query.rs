//! One DNS question over UDP: the TXT values of a name, asked of one
//! server. Used before the CA is asked to validate a DNS-01 challenge, so
//! that the server waits for the record itself instead of sleeping a fixed
//! time. The answer is read as hostile: every length is checked, a
//! compression loop ends, a reply of another id or question is ignored.

use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

/// The TXT strings of `name` (each record's strings joined), as `server`
/// (host:port) answers; an error text when it does not answer in time.
pub fn txt(server: &str, name: &str, timeout: Duration) -> Result<Vec<String>, String> {
    let addr = server
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {server}: {e}"))?
        .next()
        .ok_or_else(|| format!("{server} has no address"))?;
    let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    let id = (fastrand::u32(..) & 0xffff) as u16;
    let question = query(id, name)?;
    socket.send_to(&question, addr).map_err(|e| format!("cannot ask {server}: {e}"))?;
    let until = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{server} did not answer within {} s", timeout.as_secs()));
        }
        socket.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) => continue,
        };
        if from != addr {
            continue;
        }
        if let Some(values) = answer(&buf[..n], id, &question[12..]) {
            return values;
        }
    }
}

/// A standard query for `name` TXT IN, recursion desired.
fn query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} is not a DNS name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 16, 0, 1]);
    Ok(q)
}

/// The TXT values in a reply to our question; `None` for a datagram that
/// is not that reply (to be ignored), `Some(Err)` for an error answer.
fn answer(msg: &[u8], id: u16, question: &[u8]) -> Option<Result<Vec<String>, String>> {
    if msg.len() < 12 || msg[..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return None;
    }
    if !msg[12..].starts_with(question) {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    if rcode == 3 {
        return Some(Ok(Vec::new())); // NXDOMAIN: no such name yet
    }
    if rcode != 0 {
        return Some(Err(format!("the DNS server answered rcode {rcode}")));
    }
    let count = usize::from(u16::from_be_bytes([msg[6], msg[7]]));
    let mut at = 12 + question.len();
    let mut values = Vec::new();
    for _ in 0..count {
        at = skip_name(msg, at)?;
        let head = msg.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[8], head[9]]));
        let data = msg.get(at + 10..at + 10 + len)?;
        at += 10 + len;
        if rtype != 16 {
            continue; // a CNAME on the way
        }
        let mut text = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let n = usize::from(data[i]);
            text.extend_from_slice(data.get(i + 1..i + 1 + n)?);
            i += 1 + n;
        }
        values.push(String::from_utf8_lossy(&text).into_owned());
    }
    Some(Ok(values))
}

/// The offset after a (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2).filter(|&end| end <= msg.len()),
            l if l < 64 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_read_and_garbage_is_ignored() {
        let q = query(7, "_acme-challenge.a.example.com").expect("query");
        let mut reply = q.clone();
        reply[2] = 0x81;
        reply[3] = 0x80;
        reply[7] = 1; // one answer
        reply.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 6, 2, b'a', b'b', 2, b'c', b'd']);
        assert_eq!(answer(&reply, 7, &q[12..]), Some(Ok(vec!["abcd".to_string()])));
        assert_eq!(answer(&reply, 8, &q[12..]), None, "another id");
        for n in 0..reply.len() {
            let _ = answer(&reply[..n], 7, &q[12..]);
        }
        let mut lying = reply.clone();
        let last = lying.len() - 7;
        lying[last] = 0xff; // a length past the end
        assert_eq!(answer(&lying, 7, &q[12..]), None);
    }
}
