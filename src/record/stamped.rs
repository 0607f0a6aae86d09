//! A client's TCP stream that remembers when the kernel received the bytes last read
//! (`SO_TIMESTAMPNS`), so a recorded frame's offset is when it arrived, not when the proxy's
//! thread got to it: on a busy machine the two differ by a scheduler slice (~3 ms).

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// When the last bytes read arrived (wall clock, ns since the epoch; 0 before any).
#[derive(Clone, Default)]
pub struct Arrival(Arc<AtomicU64>);

impl Arrival {
    /// The arrival of the last bytes read as an `Instant`, or now if the kernel gave none
    /// (or a time in the future: clocks that moved).
    pub fn instant(&self) -> Instant {
        let now = Instant::now();
        let stamped = self.0.load(Ordering::Relaxed);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        match wall.checked_sub(stamped) {
            // Bounded: a stamp older than a second is not this frame's.
            Some(ago) if stamped > 0 && ago < 1_000_000_000 => now
                .checked_sub(std::time::Duration::from_nanos(ago))
                .unwrap_or(now),
            _ => now,
        }
    }
}

pub struct Stamped {
    inner: TcpStream,
    arrival: Arrival,
}

/// Asks the kernel to stamp what `socket` receives. On the listener too, at start: the
/// kernel turns receive stamps on a moment after the first socket asks (deferred work),
/// and sockets accepted from a listener that asked inherit it, so the first client's
/// first frames are stamped as well. Without it (an error), frames are stamped when read.
pub fn enable(socket: &impl AsRawFd) {
    let on: libc::c_int = 1;
    // SAFETY: a plain setsockopt on a socket we own, with a c_int option value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl Stamped {
    /// `tcp`, whose reads remember when their bytes arrived (see [`enable`]).
    pub fn new(tcp: TcpStream) -> (Stamped, Arrival) {
        enable(&tcp);
        let arrival = Arrival::default();
        (
            Stamped {
                inner: tcp,
                arrival: arrival.clone(),
            },
            arrival,
        )
    }
}

/// `recvmsg` into `out`, with the receive time of the last byte read if the kernel gave it.
fn recv_stamped(fd: std::os::fd::RawFd, out: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    let mut iov = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    // Room for one timespec control message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the iovec and control buffer outlive the call and their lengths are theirs.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`, with libc's
    // macros, within msg_controllen; the timespec is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, stamp))
}

impl AsyncRead for Stamped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let fd = this.inner.as_raw_fd();
            let unfilled = buf.initialize_unfilled();
            match this
                .inner
                .try_io(Interest::READABLE, || recv_stamped(fd, unfilled))
            {
                Ok((n, stamp)) => {
                    if let Some(ns) = stamp {
                        this.arrival.0.store(ns, Ordering::Relaxed);
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Stamped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes read long after they arrived carry their arrival, not the read.
    #[test]
    fn a_late_read_is_stamped_with_the_arrival() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            enable(&listener);
            // The kernel turns stamping on a moment later (see `enable`).
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
                .await
                .expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            let (mut stamped, arrival) = Stamped::new(server);
            let sent = Instant::now();
            client.write_all(b"hello").await.expect("write");
            std::thread::sleep(std::time::Duration::from_millis(30));
            let mut buf = [0u8; 5];
            stamped.read_exact(&mut buf).await.expect("read");
            let read = Instant::now();
            let at = arrival.instant();
            assert_eq!(&buf, b"hello");
            assert!(
                read.duration_since(at).as_millis() >= 25,
                "stamped at the read"
            );
            assert!(at.duration_since(sent).as_millis() < 5, "not the arrival");
        });
    }
}
