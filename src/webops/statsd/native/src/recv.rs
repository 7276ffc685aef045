//! Receiver threads: `recvmmsg` batches of datagrams off the UDP sockets and aggregate them,
//! never touching Python (so never waiting for the GIL).
//!
//! Several receivers share the sockets the way the Python reader processes do: they take turns
//! at a socket (`turn`), and each read gets the next number from a counter shared with every
//! earlier generation of receivers, so gauge writes are applied in the order the kernel queued
//! the datagrams whichever receiver got them (SO_REUSEPORT would keep a client's order too, but
//! put a single busy client on a single core).

use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::batch::{Batch, Limits};

pub const VLEN: usize = 64; // datagrams per recvmmsg call
pub const MAX_PACKET: usize = 65536; // as listeners.py: more than any UDP datagram
pub const DRAIN_MAX: u64 = 1_000_000; // datagrams a stopping receiver reads at most per socket
const POLL_MS: i32 = 50;
/// After a read that emptied the sockets, a receiver naps this long before it looks again: the
/// datagrams meanwhile queue up and come in full batches, and a sender never pays for waking a
/// receiver that waits on the socket (under load that costs the sending side more than the
/// receiving). At 10 M metrics/s a nap queues ~400 datagrams, far below an 8 MiB buffer.
const NAP: Duration = Duration::from_micros(1000);

/// What every generation of receivers shares: the turn at the sockets and the read counter.
pub struct Order {
    pub turn: Mutex<()>,
    pub next_seq: AtomicU64,
}

pub struct Shared {
    pub order: Arc<Order>,
    pub stop: AtomicBool,
    pub batches: Vec<Mutex<Batch>>,
    pub limits: Limits,
    pub held_back: AtomicU64, // reads skipped because the batch was full (Batch::full)
}

/// recvmmsg's buffers, allocated once per receiver (pages are touched only as data arrives).
pub struct Buffers {
    data: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// The raw pointers in iovecs/headers point into `data`, owned by the same struct and never
// reallocated: moving the struct to its thread is sound.
unsafe impl Send for Buffers {}

impl Buffers {
    pub fn new() -> Self {
        let mut data = vec![0u8; VLEN * MAX_PACKET];
        let mut iovecs: Vec<libc::iovec> = (0..VLEN)
            .map(|i| libc::iovec {
                iov_base: data[i * MAX_PACKET..].as_mut_ptr() as *mut libc::c_void,
                iov_len: MAX_PACKET,
            })
            .collect();
        let headers = (0..VLEN)
            .map(|i| {
                // SAFETY: mmsghdr is plain data; all-zero is its documented empty value
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = &mut iovecs[i] as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        Buffers { data, iovecs, headers }
    }

    /// Up to VLEN datagrams queued on `fd`, without waiting. Ok(0): none queued.
    fn receive(&mut self, fd: RawFd) -> std::io::Result<usize> {
        debug_assert_eq!(self.iovecs.len(), VLEN);
        // SAFETY: headers point at VLEN iovecs of MAX_PACKET bytes each inside self.data
        let n = unsafe {
            libc::recvmmsg(fd, self.headers.as_mut_ptr(), VLEN as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.headers[i].msg_len as usize).min(MAX_PACKET);
        &self.data[i * MAX_PACKET..i * MAX_PACKET + len]
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64()
}

/// One read of one socket: take the turn, receive, number the read, then aggregate it.
/// Returns how many datagrams it read (none while this receiver's batch is full, Batch::full:
/// Python has not taken it yet, and the datagrams wait in the socket, where the kernel counts
/// what overflows).
fn read_once(shared: &Shared, me: usize, fd: RawFd, bufs: &mut Buffers) -> usize {
    if shared.batches[me].lock().unwrap_or_else(|p| p.into_inner()).full(&shared.limits) {
        shared.held_back.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    let (n, seq) = {
        let _turn = shared.order.turn.lock().unwrap_or_else(|p| p.into_inner());
        match bufs.receive(fd) {
            Ok(0) => return 0,
            Ok(n) => (n, shared.order.next_seq.fetch_add(1, Ordering::SeqCst)),
            Err(_) => return 0, // ICMP errors reported on the socket and the like: never fatal
        }
    };
    let mut batch = shared.batches[me].lock().unwrap_or_else(|p| p.into_inner());
    batch.ingest((0..n).map(|i| bufs.datagram(i)), seq, now(), &shared.limits);
    n
}

/// A receiver thread's life: wait for datagrams, read them in batches; when told to stop, read
/// what the kernel still holds (so nothing sent before the stop is lost), then return.
pub fn run(shared: Arc<Shared>, me: usize, fds: Vec<RawFd>) {
    let mut bufs = Buffers::new();
    let mut polls: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    while !shared.stop.load(Ordering::SeqCst) {
        // SAFETY: polls is a live array of polls.len() pollfd structs
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, POLL_MS) };
        if ready <= 0 {
            continue;
        }
        for p in polls.iter_mut() {
            if p.revents != 0 {
                p.revents = 0;
                // bounded, so one busy socket cannot starve the others or the stop flag
                for _ in 0..64 {
                    if read_once(&shared, me, p.fd, &mut bufs) < VLEN {
                        break;
                    }
                }
            }
        }
        std::thread::sleep(NAP);
    }
    for &fd in &fds {
        let mut drained = 0u64;
        while drained < DRAIN_MAX {
            let n = read_once(&shared, me, fd, &mut bufs);
            if n == 0 {
                break;
            }
            drained += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::unix::io::AsRawFd;

    fn shared(receivers: usize, limits: Limits) -> Arc<Shared> {
        Arc::new(Shared {
            order: Arc::new(Order { turn: Mutex::new(()), next_seq: AtomicU64::new(0) }),
            stop: AtomicBool::new(false),
            batches: (0..receivers).map(|_| Mutex::new(Batch::default())).collect(),
            limits,
            held_back: AtomicU64::new(0),
        })
    }

    fn limits(max_series: usize) -> Limits {
        Limits { max_series, max_set_members: 100, key_flush: false, keep_packets: 0, max_backlog: 1 << 20 }
    }

    /// A socket on loopback and a sender connected to it.
    fn pair() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        (server, client)
    }

    fn counted(shared: &Shared) -> f64 {
        shared.batches.iter().map(|b| b.lock().unwrap().counters.values().sum::<f64>()).sum()
    }

    #[test]
    fn a_full_batch_leaves_the_datagrams_in_the_socket_until_it_is_taken() {
        let (server, client) = pair();
        let shared = shared(1, limits(1));
        let mut bufs = Buffers::new();
        client.send(b"a:1|c").unwrap();
        assert_eq!(read_once(&shared, 0, server.as_raw_fd(), &mut bufs), 1);
        client.send(b"b:1|c").unwrap();
        assert_eq!(read_once(&shared, 0, server.as_raw_fd(), &mut bufs), 0); // one series: full
        assert_eq!(shared.held_back.load(Ordering::Relaxed), 1);
        let taken = std::mem::take(&mut *shared.batches[0].lock().unwrap());
        assert_eq!(taken.counters.len(), 1);
        assert_eq!(read_once(&shared, 0, server.as_raw_fd(), &mut bufs), 1); // still queued: not lost
        assert!(shared.batches[0].lock().unwrap().counters.contains_key(&b"b"[..]));
    }

    #[test]
    fn reads_are_numbered_in_the_order_they_were_taken_off_the_socket() {
        let (server, client) = pair();
        let shared = shared(2, limits(100));
        let mut bufs = Buffers::new();
        for (i, me) in [0, 1, 1, 0].into_iter().enumerate() {
            client.send(format!("g:{i}|g").as_bytes()).unwrap();
            assert_eq!(read_once(&shared, me, server.as_raw_fd(), &mut bufs), 1);
        }
        let seqs = |me: usize| shared.batches[me].lock().unwrap().seqs.clone();
        assert_eq!((seqs(0), seqs(1)), (vec![0, 3], vec![1, 2]));
    }

    #[test]
    fn receivers_read_everything_sent_before_the_stop() {
        let (server, client) = pair();
        let fd = server.as_raw_fd();
        let shared = shared(2, limits(100));
        let threads: Vec<_> = (0..2)
            .map(|me| {
                let s = shared.clone();
                std::thread::spawn(move || run(s, me, vec![fd]))
            })
            .collect();
        // 200 while the receivers poll, 200 queued just before the stop: all are read (each
        // phase stays within the default socket buffer, so the kernel drops none)
        for _ in 0..200 {
            client.send(b"n:1|c\nm:2|c").unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while counted(&shared) < 600.0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(counted(&shared), 600.0);
        for _ in 0..200 {
            client.send(b"n:1|c\nm:2|c").unwrap();
        }
        shared.stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counted(&shared), 1200.0);
        let packets: u64 = shared.batches.iter().map(|b| b.lock().unwrap().packets).sum();
        assert_eq!(packets, 400);
    }
}
