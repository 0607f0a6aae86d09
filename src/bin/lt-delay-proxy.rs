//! `lt-delay-proxy`: a TCP proxy on loopback that holds every byte coming back from the
//! relay for a fixed time. Put it in front of one side of `lt ab` to check that the
//! comparison reports that side worse by about that much (see docs/comparing-builds.md).
//!
//! `lt-delay-proxy --listen PORT --to 127.0.0.1:PORT --delay 20ms`

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

/// Forwards TCP connections from 127.0.0.1:LISTEN to TO, delaying the replies.
#[derive(Debug, Parser)]
#[command(name = "lt-delay-proxy", version)]
struct Args {
    /// Port to listen on (127.0.0.1 only).
    #[arg(long)]
    listen: u16,
    /// Where to forward: a loopback address and port.
    #[arg(long)]
    to: SocketAddr,
    /// How long to hold each chunk the upstream sends back: `20ms`, `1s`.
    #[arg(long, value_parser = parse_delay)]
    delay: Duration,
}

/// A delay under an hour, read as every lt duration is (`20ms`, `1s`; see
/// `lt::units::duration`).
fn parse_delay(s: &str) -> Result<Duration, String> {
    match lt::units::duration(s)? {
        d if d < Duration::from_secs(3600) => Ok(d),
        _ => Err(format!(
            "{s:?} is not a delay under an hour, such as 20ms or 1s"
        )),
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!(
                "lt-delay-proxy: {}",
                e.to_string().lines().next().unwrap_or("")
            );
            return ExitCode::from(2);
        }
    };
    // A test aid, never a path to anyone else's host.
    if !args.to.ip().is_loopback() {
        eprintln!(
            "lt-delay-proxy: --to must be a loopback address, not {}",
            args.to
        );
        return ExitCode::from(2);
    }
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, args.listen)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "lt-delay-proxy: listening on 127.0.0.1:{}: {e}",
                args.listen
            );
            return ExitCode::from(1);
        }
    };
    for client in listener.incoming().flatten() {
        let (to, delay) = (args.to, args.delay);
        thread::spawn(move || serve(client, to, delay));
    }
    ExitCode::SUCCESS
}

/// One connection: requests go up at once, replies come back `delay` late, in order.
fn serve(client: TcpStream, to: SocketAddr, delay: Duration) {
    let Ok(upstream) = TcpStream::connect(to) else {
        // Upstream not listening (yet): the client sees a closed connection and retries.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(client_r), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    thread::spawn(move || pump(client_r, upstream_w));
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let mut upstream_r = upstream;
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match upstream_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let mut client_w = client;
    for (due, chunk) in rx {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        if client_w.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = client_w.shutdown(Shutdown::Both);
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
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
}
