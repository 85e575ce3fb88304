//! bore's wire format, written from its protocol description: JSON messages, each
//! ended by a NUL byte, at most 256 bytes, on a TCP control connection; an optional
//! HMAC-SHA256 challenge before anything else. Kept apart from the client and the relay
//! so both speak exactly the same bytes, and so a stock `bore` binary interoperates.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

/// The control port a bore relay listens on unless told otherwise.
pub const DEFAULT_CONTROL_PORT: u16 = 7835;

/// Longest frame either side accepts; bore's own limit, so its messages always fit.
const MAX_FRAME: usize = 256;

/// How long a handshake message may take to arrive.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// From the client on a control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The answer to the relay's challenge.
    Authenticate(String),
    /// Asks for a public port (0: any).
    Hello(u16),
    /// Takes over the public connection `id`; the stream becomes its proxy.
    Accept(Uuid),
}

/// From the relay on a control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// Sent first when the relay needs a secret.
    Challenge(Uuid),
    /// The public port the client was given.
    Hello(u16),
    /// Keeps the control connection alive (every 500 ms from bore's server).
    Heartbeat,
    /// A public connection waits under `id`.
    Connection(Uuid),
    /// The relay refused; the connection ends.
    Error(String),
}

/// The wire could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("relay connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame over 256 bytes or that is not one of the protocol's messages.
    #[error("the peer does not speak bore's protocol: {0}")]
    Protocol(String),
    /// A handshake message did not come in time.
    #[error("timed out waiting for the peer's handshake")]
    Timeout,
}

/// A TCP stream read frame by frame, keeping bytes read past the last frame so the
/// stream can become a raw proxy without losing any.
pub struct Framed {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Framed {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Sends one message and its NUL.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), WireError> {
        let mut bytes =
            serde_json::to_vec(message).map_err(|e| WireError::Protocol(e.to_string()))?;
        bytes.push(0);
        self.stream.write_all(&bytes).await?;
        Ok(())
    }

    /// The next message, or `None` when the peer closed cleanly between frames.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == 0) {
                let frame: Vec<u8> = self.buffer.drain(..=end).take(end).collect();
                return serde_json::from_slice(&frame)
                    .map(Some)
                    .map_err(|e| WireError::Protocol(e.to_string()));
            }
            if self.buffer.len() > MAX_FRAME {
                return Err(WireError::Protocol(format!(
                    "a frame longer than {MAX_FRAME} bytes"
                )));
            }
            let mut chunk = [0u8; 512];
            let read = self.stream.read(&mut chunk).await?;
            if read == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(WireError::Protocol("the peer closed mid-frame".into()))
                };
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// [`Framed::recv`] within [`HANDSHAKE_TIMEOUT`].
    pub async fn recv_handshake<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.recv())
            .await
            .map_err(|_| WireError::Timeout)?
    }

    /// The stream and the bytes already read past the last frame.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buffer)
    }
}

/// The shared secret as bore uses it: HMAC-SHA256 keyed with SHA-256 of the secret,
/// over the challenge UUID's 16 bytes, hex-encoded.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The fewest characters a secret given to agora may have. The challenge answer
/// travels over plain TCP, so whoever sees one can guess secrets offline at leisure:
/// a short or guessable one falls quickly.
pub const MIN_SECRET_LEN: usize = 16;

impl Secret {
    /// The key derived from `secret`, whatever its strength (a stock bore peer's);
    /// what a user types goes through [`Secret::parse`].
    pub fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// The key derived from a secret a user gave, refused when it is trivially weak
    /// (shorter than [`MIN_SECRET_LEN`], or one character repeated), with how to make
    /// a good one. `name` is where it came from, for the message.
    pub fn parse(secret: &str, name: &str) -> Result<Self, String> {
        let length = secret.chars().count();
        let mut chars = secret.chars();
        let first = chars.next();
        let repeated = first.is_some_and(|c| chars.all(|d| d == c));
        if length < MIN_SECRET_LEN || repeated {
            return Err(format!(
                "the bore secret in {name} is too weak ({length} characters{}); the relay's challenge can be guessed offline, so use at least {MIN_SECRET_LEN} random characters, e.g. from: openssl rand -hex 16",
                if repeated { ", one repeated" } else { "" }
            ));
        }
        Ok(Self::new(secret))
    }

    /// The MAC over `challenge` (HMAC takes keys of any length, so this is never None).
    fn mac(&self, challenge: &Uuid) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).ok()?;
        mac.update(challenge.as_bytes());
        Some(mac)
    }

    /// The answer to `challenge`.
    pub fn answer(&self, challenge: &Uuid) -> String {
        self.mac(challenge)
            .map(|m| hex::encode(m.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Whether `answer` proves the secret, compared in constant time.
    pub fn accepts(&self, challenge: &Uuid, answer: &str) -> bool {
        match (hex::decode(answer), self.mac(challenge)) {
            (Ok(tag), Some(mac)) => mac.verify_slice(&tag).is_ok(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn messages_are_spelled_as_bore_spells_them() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            serde_json::to_string(&ClientMessage::Hello(0)).unwrap(),
            r#"{"Hello":0}"#
        );
        assert_eq!(
            serde_json::to_string(&ServerMessage::Heartbeat).unwrap(),
            r#""Heartbeat""#
        );
        assert_eq!(
            serde_json::to_string(&ClientMessage::Accept(id)).unwrap(),
            r#"{"Accept":"01234567-89ab-cdef-0123-456789abcdef"}"#
        );
    }

    #[test]
    fn only_the_same_secret_answers_a_challenge() {
        let challenge = Uuid::new_v4();
        let secret = Secret::new("s3cret");
        let answer = secret.answer(&challenge);
        assert_eq!(answer.len(), 64);
        assert!(secret.accepts(&challenge, &answer));
        assert!(!Secret::new("other").accepts(&challenge, &answer));
        assert!(!secret.accepts(&Uuid::new_v4(), &answer));
        assert!(!secret.accepts(&challenge, "not hex"));
    }

    #[test]
    fn weak_secrets_are_refused_naming_the_length_and_a_good_one() {
        for weak in ["", "s3cret", "relay-secret", "aaaaaaaaaaaaaaaaaaaaaaaa"] {
            let err = Secret::parse(weak, "AGORA_BORE_SECRET").unwrap_err();
            assert!(err.contains("AGORA_BORE_SECRET"), "{err}");
            assert!(err.contains("at least 16"), "{err}");
            assert!(err.contains("openssl rand -hex 16"), "{err}");
        }
        let challenge = Uuid::new_v4();
        let good = Secret::parse("0123456789abcdef", "x").unwrap();
        assert!(Secret::new("0123456789abcdef").accepts(&challenge, &good.answer(&challenge)));
    }

    #[tokio::test]
    async fn frames_split_across_reads_and_bytes_past_them_survive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"{\"Hel").await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(b"lo\":42}\0\"Heartbeat\"\0raw bytes")
                .await
                .unwrap();
        });
        let mut framed = Framed::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(
            framed.recv::<ServerMessage>().await.unwrap(),
            Some(ServerMessage::Hello(42))
        );
        assert_eq!(
            framed.recv::<ServerMessage>().await.unwrap(),
            Some(ServerMessage::Heartbeat)
        );
        writer.await.unwrap();
        let (mut stream, mut rest) = framed.into_parts();
        stream.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"raw bytes");
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(&[b'x'; 600]).await;
        });
        let mut framed = Framed::new(TcpStream::connect(addr).await.unwrap());
        let err = framed.recv::<ServerMessage>().await.unwrap_err();
        assert!(err.to_string().contains("longer than 256"), "{err}");
    }
}
