//! delayproxy: a TCP proxy that delays every chunk of bytes by a fixed time
//! in each direction, without limiting throughput (for `bench/remote.sh`,
//! on a kernel without netem).
//!
//! Usage: `delayproxy LISTEN_ADDR TARGET_ADDR DELAY_MS`
//!
//! Every accepted connection gets its own connection to TARGET_ADDR and
//! two directions. In each, a reader thread reads chunks (up to 256 KiB)
//! and queues them with their due time (the time the read returned plus
//! DELAY_MS); a writer thread sleeps until each chunk's due time and writes
//! it, in order. The queue holds up to 64 MiB per direction (far more than
//! the bytes in flight at any real speed and delay; beyond it the reader
//! waits, which is TCP's own back-pressure). An end of stream is passed on
//! (as a write shutdown) after the delay too. TCP_NODELAY is set on both
//! sides. When a connection ends, one line goes to standard error with the
//! bytes it carried each way.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CHUNK: usize = 256 * 1024;
const QUEUE_BYTES: usize = 64 << 20;

/// What the reader hands the writer: bytes, or the end of the stream.
enum Item {
    Data(Vec<u8>),
    Eof,
}

struct Queue {
    state: Mutex<QueueState>,
    cond: Condvar,
}

struct QueueState {
    items: VecDeque<(Instant, Item)>,
    bytes: usize,
    /// The writer has stopped (write error): the reader should too.
    closed: bool,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            state: Mutex::new(QueueState { items: VecDeque::new(), bytes: 0, closed: false }),
            cond: Condvar::new(),
        }
    }

    /// Appends an item, waiting while the queue is over its byte budget.
    /// False if the writer has gone.
    fn push(&self, due: Instant, item: Item) -> bool {
        let len = match &item {
            Item::Data(d) => d.len(),
            Item::Eof => 0,
        };
        let mut s = self.state.lock().unwrap();
        while !s.closed && s.bytes > 0 && s.bytes + len > QUEUE_BYTES {
            s = self.cond.wait(s).unwrap();
        }
        if s.closed {
            return false;
        }
        s.bytes += len;
        s.items.push_back((due, item));
        self.cond.notify_all();
        true
    }

    /// Takes the oldest item, waiting for one.
    fn pop(&self) -> (Instant, Item) {
        let mut s = self.state.lock().unwrap();
        loop {
            if let Some((due, item)) = s.items.pop_front() {
                if let Item::Data(d) = &item {
                    s.bytes -= d.len();
                }
                self.cond.notify_all();
                return (due, item);
            }
            s = self.cond.wait(s).unwrap();
        }
    }

    fn close(&self) {
        let mut s = self.state.lock().unwrap();
        s.closed = true;
        s.items.clear();
        s.bytes = 0;
        self.cond.notify_all();
    }
}

/// One direction: `from` to `to`, each chunk `delay` late. Returns the
/// writer thread, which ends when the stream has ended or failed; its
/// result is the number of bytes written.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) -> thread::JoinHandle<u64> {
    let q = Arc::new(Queue::new());
    let qr = Arc::clone(&q);
    let from2 = from.try_clone().expect("clone socket");
    thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    qr.push(Instant::now() + delay, Item::Eof);
                    return;
                }
                Ok(n) => {
                    if !qr.push(Instant::now() + delay, Item::Data(buf[..n].to_vec())) {
                        return;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        let mut written = 0u64;
        loop {
            let (due, item) = q.pop();
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            match item {
                Item::Data(d) => {
                    if to.write_all(&d).is_err() {
                        // The receiver is gone: stop reading from the sender.
                        q.close();
                        let _ = from2.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                        return written;
                    }
                    written += d.len() as u64;
                }
                Item::Eof => {
                    let _ = to.shutdown(Shutdown::Write);
                    return written;
                }
            }
        }
    })
}

fn serve(client: TcpStream, target: &str, delay: Duration, id: u64) {
    let server = match TcpStream::connect(target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("delayproxy: connection {id}: connect to {target}: {e}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let up = pipe(client.try_clone().expect("clone"), server.try_clone().expect("clone"), delay);
    let down = pipe(server.try_clone().expect("clone"), client.try_clone().expect("clone"), delay);
    let up_bytes = up.join().unwrap_or(0);
    let down_bytes = down.join().unwrap_or(0);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    eprintln!("delayproxy: connection {id} closed: {up_bytes} bytes to the target, {down_bytes} bytes back");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: delayproxy LISTEN_ADDR TARGET_ADDR DELAY_MS");
        std::process::exit(2);
    }
    let delay_ms: u64 = match args[3].parse() {
        Ok(d) => d,
        Err(_) => {
            eprintln!("delayproxy: DELAY_MS must be a whole number of milliseconds, not {}", args[3]);
            std::process::exit(2);
        }
    };
    let delay = Duration::from_millis(delay_ms);
    let listener = match TcpListener::bind(&args[1]) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("delayproxy: listen on {}: {e}", args[1]);
            std::process::exit(1);
        }
    };
    let target = args[2].clone();
    eprintln!(
        "delayproxy: listening on {}, forwarding to {target}, {delay_ms} ms each way",
        listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| args[1].clone())
    );
    let ids = AtomicU64::new(0);
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
                let target = target.clone();
                thread::spawn(move || serve(c, &target, delay, id));
            }
            Err(e) => eprintln!("delayproxy: accept: {e}"),
        }
    }
}
