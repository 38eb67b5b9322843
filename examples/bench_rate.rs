//! An open-loop, fixed-rate HTTP/1.1 load generator for `scripts/bench.sh` (what wrk2 does;
//! wrk2 is not packaged here, and `h2load --rps` fires each tick's requests together: measured,
//! 20 requests within 35 µs every 10 ms, so its latencies were the time to drain a burst).
//!
//! Request `k` is due at `start + k / rate`, on connection `k mod connections`: arrivals are
//! evenly spaced. Latency is measured from when a request was due, not when it was sent, so a
//! stall is charged to every request it delayed (no coordinated omission).
//!
//! `bench_rate ADDR PATH RATE SECONDS CONNECTIONS BODY_FILE [HEADER...]` (ADDR = host:port,
//! HEADER = "name: value"); after one second of warm-up, prints
//! `N P50_MS P99_MS NON_200 SENT LATE_P99_MS`: requests recorded, latency percentiles, answers
//! other than 200, requests sent in all (warm-up included), and the 99th percentile of how
//! late the generator itself sent a request (its own sleep overshoot or CPU starvation: when
//! that is a sizeable share of P99_MS, the run measured the generator).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Warm-up before requests are recorded.
const WARM_UP: Duration = Duration::from_secs(1);

struct Args {
    addr: String,
    request: Vec<u8>,
    rate: f64,
    seconds: f64,
    connections: usize,
}

fn args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [addr, path, rate, seconds, connections, body_file, headers @ ..] = &a[..] else {
        return Err("usage: bench_rate ADDR PATH RATE SECONDS CONNECTIONS BODY_FILE [HEADER...]".into());
    };
    let number = |s: &str, what: &str| s.parse::<f64>().map_err(|_| format!("{what}: not a number: {s}"));
    let body = std::fs::read(body_file).map_err(|e| format!("{body_file}: {e}"))?;
    let mut request = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n", body.len());
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);
    let connections: usize = connections.parse().map_err(|_| format!("connections: not a count: {connections}"))?;
    let (rate, seconds) = (number(rate, "rate")?, number(seconds, "seconds")?);
    if !(rate.is_finite() && rate > 0.0 && seconds.is_finite() && seconds > 0.0 && connections > 0) {
        return Err("rate, seconds and connections must be positive".into());
    }
    Ok(Args { addr: addr.clone(), request, rate, seconds, connections })
}

/// One answer: its status; the body is read (by `content-length`) and dropped.
fn read_response(reader: &mut BufReader<TcpStream>) -> Result<u16, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line: {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<u64>().ok();
        }
    }
    let length = length.ok_or("an answer without content-length (chunked is not supported)")?;
    std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink()).map_err(|e| format!("read: {e}"))?;
    Ok(status)
}

/// One recorded request: latency from when it was due, how late it was sent (µs), status.
type Row = (u64, u64, u16);

/// Connection `index`'s share of the schedule: the recorded rows, and how many were sent.
fn run(args: &Args, index: usize, start: Instant) -> Result<(Vec<Row>, usize), String> {
    let stream = TcpStream::connect(&args.addr).map_err(|e| format!("connect {}: {e}", args.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let end = start + WARM_UP + Duration::from_secs_f64(args.seconds);
    let mut due = start + Duration::from_secs_f64(index as f64 / args.rate);
    let mut out = Vec::with_capacity((args.seconds * args.rate / args.connections as f64) as usize + 1);
    let mut sent = 0;
    while due < end {
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            #[expect(clippy::disallowed_methods, reason = "pacing a plain thread: nanosleep is the precise tool")]
            std::thread::sleep(wait);
        }
        let late = due.elapsed();
        writer.write_all(&args.request).map_err(|e| format!("write: {e}"))?;
        let status = read_response(&mut reader)?;
        sent += 1;
        if due >= start + WARM_UP {
            let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            out.push((micros(due.elapsed()), micros(late), status));
        }
        due += interval;
    }
    Ok((out, sent))
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_rate: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now() + Duration::from_millis(100);
    let results: Vec<Result<(Vec<Row>, usize), String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.connections)
            .map(|i| {
                let args = &args;
                s.spawn(move || run(args, i, start))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("a worker panicked".into()))).collect()
    });
    let (mut latencies, mut lateness) = (Vec::new(), Vec::new());
    let (mut bad, mut sent) = (0usize, 0usize);
    for r in results {
        match r {
            Ok((rows, n)) => {
                sent += n;
                bad += rows.iter().filter(|(_, _, s)| *s != 200).count();
                latencies.extend(rows.iter().map(|(l, _, _)| *l));
                lateness.extend(rows.iter().map(|(_, late, _)| *late));
            }
            Err(e) => {
                eprintln!("bench_rate: {e}");
                std::process::exit(1);
            }
        }
    }
    if latencies.is_empty() {
        eprintln!("bench_rate: nothing recorded");
        std::process::exit(1);
    }
    latencies.sort_unstable();
    lateness.sort_unstable();
    let at = |v: &[u64], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    let (p50, p99, late) = (at(&latencies, 0.50), at(&latencies, 0.99), at(&lateness, 0.99));
    println!("{} {p50:.3} {p99:.3} {bad} {sent} {late:.3}", latencies.len());
}
