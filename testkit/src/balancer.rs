//! A TCP load balancer on 127.0.0.1 for tests that run several instances of a server: each
//! new connection goes to the next backend in turn that accepts it (a backend that refuses,
//! such as a killed process, is skipped), and bytes are copied both ways untouched (TLS passes
//! through, as behind a layer-4 balancer). Stopped when dropped; connections already open
//! end when either side closes.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a backend may take to accept before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A running balancer.
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections handed to each backend, by position.
    served: Arc<Vec<AtomicUsize>>,
}

impl Balancer {
    /// Listens on an ephemeral port of 127.0.0.1 and spreads connections over `backends`.
    pub fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the balancer listens");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let (flag, counts) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            let mut next = 0usize;
            for client in listener.incoming() {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                let n = backends.len();
                let picked = (0..n).find_map(|i| {
                    let at = (next + i) % n;
                    TcpStream::connect_timeout(&backends[at], CONNECT_TIMEOUT)
                        .ok()
                        .map(|s| (at, s))
                });
                next = (next + 1) % n;
                match picked {
                    Some((at, backend)) => {
                        counts[at].fetch_add(1, Ordering::Relaxed);
                        relay(client, backend);
                    }
                    None => drop(client),
                }
            }
        });
        Self { addr, stop, served }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections each backend was given.
    pub fn served(&self) -> Vec<usize> {
        self.served
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
    }
}

/// Copies both directions on their own threads until either side closes.
fn relay(client: TcpStream, backend: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let (Ok(client2), Ok(backend2)) = (client.try_clone(), backend.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy(client, backend));
    std::thread::spawn(move || copy(backend2, client2));
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server(tag: u8) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming().take(2) {
                let mut conn = conn.unwrap();
                let mut b = [0u8; 1];
                conn.read_exact(&mut b).unwrap();
                conn.write_all(&[tag, b[0]]).unwrap();
            }
        });
        (addr, handle)
    }

    fn ask(addr: SocketAddr) -> [u8; 2] {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&[7]).unwrap();
        let mut out = [0u8; 2];
        c.read_exact(&mut out).unwrap();
        out
    }

    #[test]
    fn connections_alternate_and_a_dead_backend_is_skipped() {
        let (a, _ha) = echo_server(1);
        let (b, _hb) = echo_server(2);
        // A port nothing listens on: refused at once.
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let lb = Balancer::start(vec![a, dead, b]);
        let tags: Vec<u8> = (0..4).map(|_| ask(lb.addr())[0]).collect();
        assert_eq!(tags.iter().filter(|t| **t == 1).count(), 2, "{tags:?}");
        assert_eq!(tags.iter().filter(|t| **t == 2).count(), 2, "{tags:?}");
        assert_eq!(lb.served()[1], 0, "never the dead one");
    }
}
