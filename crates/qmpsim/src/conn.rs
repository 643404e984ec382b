//! One task per socket: accept a client, speak (or misspeak) QMP to it until it leaves, then
//! accept the next. One client at a time per socket, as QEMU's monitor chardev: a second
//! client waits in the listen backlog until the first one is gone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};

use crate::monitor::{greeting, Session};
use crate::state::GuestState;
use crate::Behaviour;

/// The interval between two bytes of a `drip` reply.
pub const DRIP_INTERVAL: Duration = Duration::from_secs(2);
/// The size of every `huge` reply line, newline excluded.
pub const HUGE_REPLY_BYTES: usize = 2 << 20;
/// Longest command line a session accepts (QEMU's own limit is larger; nobody sends this).
const MAX_LINE: u64 = 1 << 20;

/// Accepts clients on `listener` forever, one at a time.
pub(crate) async fn serve_socket(listener: UnixListener, name: String, behaviour: Behaviour) {
    let state = Arc::new(Mutex::new(match &behaviour {
        Behaviour::Healthy(g) => g.clone(),
        Behaviour::Liar => GuestState::liar(&name),
        _ => GuestState::new(&name),
    }));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and the like: wait for fds to come back rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Errors mean the client left: go back to accepting.
        let _ = session(stream, &behaviour, &state).await;
    }
}

async fn session(
    stream: UnixStream,
    behaviour: &Behaviour,
    state: &Arc<Mutex<GuestState>>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    match behaviour {
        Behaviour::NoGreeting => return drain(&mut r).await,
        Behaviour::CloseAfterGreeting => return send(&mut w, &greeting()).await,
        _ => send(&mut w, &greeting()).await?,
    }
    if matches!(behaviour, Behaviour::HangAfterGreeting) {
        return drain(&mut r).await;
    }
    let mut session = Session::new(state.clone());
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        let n = (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(()); // gone, or a line too long: hang up as on a broken client
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let replies = session.handle(&line);
        match behaviour {
            Behaviour::Garbage if first => {
                w.write_all(b"\xff\xfe{\"return\": \xc3\x28 not json \x80\n")
                    .await?;
            }
            Behaviour::Flood => return flood(&mut w).await,
            Behaviour::Drip => {
                for l in replies {
                    for b in l.bytes().chain(std::iter::once(b'\n')) {
                        w.write_all(&[b]).await?;
                        w.flush().await?;
                        tokio::time::sleep(DRIP_INTERVAL).await;
                    }
                }
            }
            Behaviour::Huge if !first => {
                for l in replies {
                    send(&mut w, &pad(&l)).await?;
                }
            }
            _ => {
                for l in replies {
                    send(&mut w, &l).await?;
                }
            }
        }
        first = false;
    }
}

async fn send(w: &mut OwnedWriteHalf, line: &str) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(line.len() + 1);
    b.extend_from_slice(line.as_bytes());
    b.push(b'\n');
    w.write_all(&b).await
}

/// Reads and ignores everything until the client leaves.
async fn drain(r: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    while r.read(&mut buf).await? > 0 {}
    Ok(())
}

/// An endless reply line: `{"return": "xxxx...` with no end and no newline.
async fn flood(w: &mut OwnedWriteHalf) -> std::io::Result<()> {
    w.write_all(b"{\"return\": \"").await?;
    let chunk = vec![b'x'; 64 << 10];
    loop {
        w.write_all(&chunk).await?;
    }
}

/// The same JSON message grown to [`HUGE_REPLY_BYTES`] with blanks after its first `{`:
/// still valid, still the same value, but 2 MiB on one line.
fn pad(line: &str) -> String {
    let fill = HUGE_REPLY_BYTES.saturating_sub(line.len());
    let mut out = String::with_capacity(HUGE_REPLY_BYTES);
    out.push('{');
    out.push_str(&" ".repeat(fill));
    out.push_str(&line[1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_reply_is_the_same_json_at_two_mib() {
        let l = r#"{"return": {"actual": 1}, "id": 3}"#;
        let p = pad(l);
        assert_eq!(p.len(), HUGE_REPLY_BYTES);
        let a: serde_json::Value = serde_json::from_str(l).expect("json");
        let b: serde_json::Value = serde_json::from_str(&p).expect("json");
        assert_eq!(a, b);
    }
}
