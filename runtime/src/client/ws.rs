//! A minimal WebSocket client (RFC 6455) over an already-upgraded connection: enough for the
//! daemon's tty stream. Client frames are masked; fragmented messages are reassembled; pings
//! are answered by the caller ignoring them (the daemon does not require pongs).
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest message accepted from the daemon.
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Close,
}

pub(crate) const OP_CONT: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Random bytes from the kernel (mask keys, the handshake key).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: getrandom writes at most N - filled bytes into the buffer.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if n <= 0 {
            break;
        }
        filled += n as usize;
    }
    b
}

/// Reading half.
pub struct WsReader<R> {
    io: R,
}

/// Writing half.
pub struct WsWriter<W> {
    io: W,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    pub fn new(io: R) -> Self {
        WsReader { io }
    }

    async fn frame(&mut self) -> io::Result<(bool, u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.io.read_exact(&mut h).await?;
        let fin = h[0] & 0x80 != 0;
        let op = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let mut len = (h[1] & 0x7f) as u64;
        if len == 126 {
            let mut b = [0u8; 2];
            self.io.read_exact(&mut b).await?;
            len = u16::from_be_bytes(b) as u64;
        } else if len == 127 {
            let mut b = [0u8; 8];
            self.io.read_exact(&mut b).await?;
            len = u64::from_be_bytes(b);
        }
        if len as usize > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "WebSocket frame too large",
            ));
        }
        let mut mask = [0u8; 4];
        if masked {
            self.io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        self.io.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        Ok((fin, op, payload))
    }

    /// The next message; `None` when the connection ended without a close frame.
    pub async fn recv(&mut self) -> io::Result<Option<Message>> {
        let mut buf: Vec<u8> = Vec::new();
        let mut kind: Option<u8> = None;
        loop {
            let (fin, op, payload) = match self.frame().await {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            };
            match op {
                OP_PING | OP_PONG => continue,
                OP_CLOSE => return Ok(Some(Message::Close)),
                OP_TEXT | OP_BINARY => {
                    kind = Some(op);
                    buf = payload;
                }
                OP_CONT if kind.is_some() => buf.extend_from_slice(&payload),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected WebSocket opcode {op}"),
                    ))
                }
            }
            if buf.len() > MAX_MESSAGE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "WebSocket message too large",
                ));
            }
            if fin {
                return Ok(Some(match kind {
                    Some(OP_TEXT) => Message::Text(
                        String::from_utf8(buf)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                    ),
                    _ => Message::Binary(buf),
                }));
            }
        }
    }
}

/// Encode one masked client frame.
pub fn encode_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | op);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask: [u8; 4] = random_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    pub fn new(io: W) -> Self {
        WsWriter { io }
    }
    async fn write(&mut self, op: u8, payload: &[u8]) -> io::Result<()> {
        self.io.write_all(&encode_frame(op, payload)).await?;
        self.io.flush().await
    }
    pub async fn binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.write(OP_BINARY, data).await
    }
    pub async fn text(&mut self, text: &str) -> io::Result<()> {
        self.write(OP_TEXT, text.as_bytes()).await
    }
    pub async fn close(&mut self) -> io::Result<()> {
        self.write(OP_CLOSE, &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_through_the_reader() {
        for size in [0usize, 5, 125, 126, 1000, 70_000] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let frame = encode_frame(OP_BINARY, &payload);
            let mut r = WsReader::new(&frame[..]);
            assert_eq!(r.recv().await.unwrap(), Some(Message::Binary(payload)));
        }
        // Fragmented text, a ping in between, then close.
        let mut bytes = Vec::new();
        let mut first = encode_frame(OP_TEXT, b"hel");
        first[0] &= 0x7f; // not FIN
        bytes.extend(first);
        bytes.extend(encode_frame(OP_PING, b"p"));
        bytes.extend(encode_frame(OP_CONT, b"lo"));
        bytes.extend(encode_frame(OP_CLOSE, b""));
        let mut r = WsReader::new(&bytes[..]);
        assert_eq!(r.recv().await.unwrap(), Some(Message::Text("hello".into())));
        assert_eq!(r.recv().await.unwrap(), Some(Message::Close));
        assert_eq!(r.recv().await.unwrap(), None);
    }
}
