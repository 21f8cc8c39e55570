//! A minimal WebSocket client (RFC 6455: masked text frames out, pings answered), so that
//! each message is seen exactly as the node sends it, for the tests of CometBFT's
//! WebSocket dialect.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A minimal WebSocket client (RFC 6455: masked text frames out, pings answered), so that
/// each message is seen exactly as the node sends it.
pub struct Ws {
    stream: TcpStream,
    /// Messages read while waiting for something else.
    stash: VecDeque<Value>,
    next_id: u64,
}

impl Ws {
    pub fn connect(port: u16) -> Result<Ws, String> {
        Ws::connect_at(port, "/")
    }

    /// Connects with the upgrade request on `path` (`/websocket`, as CometBFT's clients do).
    pub fn connect_at(port: u16, path: &str) -> Result<Ws, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        // Byte by byte, so that no frame after the head is consumed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).map_err(|e| format!("handshake: {e}"))?;
            head.push(byte[0]);
            if head.len() > 16 << 10 {
                return Err("handshake answer too long".into());
            }
        }
        let head = String::from_utf8_lossy(&head);
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("handshake refused: {}", head.lines().next().unwrap_or("")));
        }
        Ok(Ws { stream, stash: VecDeque::new(), next_id: 1 })
    }

    fn write_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).expect("WebSocket write");
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Option<()> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left)).expect("read timeout");
        self.stream.read_exact(buf).ok()
    }

    /// The next data message, answering pings on the way.
    fn read_message(&mut self, deadline: Instant) -> Value {
        self.try_read_message(deadline).expect("a WebSocket message in time")
    }

    /// The next data message before `deadline`, `None` if none came (a message cut by the
    /// deadline leaves the connection unusable).
    fn try_read_message(&mut self, deadline: Instant) -> Option<Value> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.read_exact(&mut head, deadline)?;
            let (fin, opcode, masked) = (head[0] & 0x80 != 0, head[0] & 0x0f, head[1] & 0x80 != 0);
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.read_exact(&mut n, deadline)?;
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.read_exact(&mut n, deadline)?;
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            let mut mask = [0u8; 4];
            if masked {
                self.read_exact(&mut mask, deadline)?;
            }
            let mut payload = vec![0u8; usize::try_from(len).expect("frame length")];
            self.read_exact(&mut payload, deadline)?;
            if masked {
                payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
            }
            match opcode {
                0x9 => self.write_frame(0xa, &payload),
                0xa => {}
                0x8 => panic!("the node closed the WebSocket: {payload:?}"),
                0x0..=0x2 => {
                    message.extend(payload);
                    if fin {
                        return Some(serde_json::from_slice(&message).expect("a JSON message"));
                    }
                }
                other => panic!("unexpected WebSocket opcode {other}"),
            }
        }
    }

    /// Sends a call and returns (request, answer); notifications read meanwhile are kept.
    pub fn call(&mut self, method: &str, params: Value) -> (Value, Value) {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.write_frame(0x1, request.to_string().as_bytes());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let message = self.read_message(deadline);
            if message.get("id") == Some(&json!(id)) {
                return (request, message);
            }
            self.stash.push_back(message);
        }
    }

    /// The next event of the subscription made by the call with `id` (a response to that
    /// id carrying `result.query`); other messages stay in the stash.
    pub fn event(&mut self, id: &Value) -> Value {
        self.event_within(id, Duration::from_secs(20)).expect("an event within 20 s")
    }

    /// Like [`Ws::event`], `None` if none came within `wait`.
    pub fn event_within(&mut self, id: &Value, wait: Duration) -> Option<Value> {
        let mine = |m: &Value| {
            m["id"] == *id && (m["result"].get("query").is_some() || m.get("error").is_some())
        };
        if let Some(at) = self.stash.iter().position(mine) {
            return self.stash.remove(at);
        }
        let deadline = Instant::now() + wait;
        loop {
            let message = self.try_read_message(deadline)?;
            if mine(&message) {
                return Some(message);
            }
            self.stash.push_back(message);
        }
    }
}
