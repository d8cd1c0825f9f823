//! TLS 1.3 records after the handshake, on the traffic keys rustls hands over
//! (`dangerous_into_kernel_connection`, its kTLS entry point). A connection then keeps rustls'
//! key schedule for key updates (`KernelConnection`, ~0.9 KB) and its two traffic keys as bytes,
//! not rustls' whole session (3.7 KB); the expanded AEAD keys (~0.5 KB each) exist only while it
//! is awake ([`Records::sleep`]). 10,000 idle TLS clients: docs/performance.md.
//!
//! Only record protection is done here, with ring's AEADs as rustls' ring provider uses them
//! (RFC 8446 §5.2-5.3): the nonce is the IV XOR the record's sequence number, the additional data
//! the record's header. What a client may send after its Finished is application data, a
//! KeyUpdate (§4.6.3) and alerts; anything else fails the connection with the alert §5-6 name.
//! Every protocol decision before that (handshake, versions, suites, tickets) stays rustls'.

use ring::aead;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};

use super::Outgoing;

/// A record's header: content type, legacy version, length.
const HEADER: usize = 5;
const TAG: usize = 16;
/// §5.1: the most plaintext one record carries.
pub const MAX_PLAIN: usize = 1 << 14;
/// §5.2: the most a protected record's body may be (content, type, padding, tag).
const MAX_BODY: usize = MAX_PLAIN + 256;
/// Records sent under one key before it is updated: far inside AES-GCM's confidentiality limit
/// (2^24.5 records, RFC 8446 §5.5), which rustls would otherwise have tracked.
const UPDATE_AFTER: u64 = 1 << 23;

const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const KEY_UPDATE: u8 = 24;

/// The alerts this layer sends (RFC 8446 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    UnexpectedMessage = 10,
    BadRecordMac = 20,
    RecordOverflow = 22,
    IllegalParameter = 47,
    DecodeError = 50,
    InternalError = 80,
}

/// Why the connection failed, and the alert the client is told (none for its own fatal alert).
#[derive(Debug, thiserror::Error)]
#[error("TLS: {what}")]
pub struct RecordError {
    pub alert: Option<Alert>,
    what: &'static str,
}

fn error(alert: Alert, what: &'static str) -> RecordError {
    RecordError {
        alert: Some(alert),
        what,
    }
}

/// What one record from the client was.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// Application data (possibly none).
    Data(&'a [u8]),
    /// close_notify: nothing after it is read.
    Closed,
    /// A KeyUpdate (taken), or a `user_canceled` warning.
    Control,
}

/// What rustls tolerates before it fails a connection (rustls 0.23 `TemperCounters`, after
/// BoringSSL): key updates without application data between them, warning alerts, empty records
/// in a row.
const KEY_UPDATES_IN_A_ROW: u8 = 32;
const WARNING_ALERTS: u8 = 4;
const EMPTY_RECORDS_IN_A_ROW: u8 = 32;

/// One direction's traffic key.
struct Direction {
    secrets: ConnectionTrafficSecrets,
    seq: u64,
    /// Expanded from `secrets` when first needed after waking.
    key: Option<Box<aead::LessSafeKey>>,
}

impl Direction {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Result<Direction, RecordError> {
        // The ring provider's TLS 1.3 suites; anything else is not taken over.
        algorithm(&secrets)?;
        Ok(Direction {
            secrets,
            seq,
            key: None,
        })
    }

    fn key(&mut self) -> Result<&aead::LessSafeKey, RecordError> {
        if self.key.is_none() {
            let (algorithm, key, _) = algorithm(&self.secrets)?;
            let key = aead::UnboundKey::new(algorithm, key)
                .map_err(|_| error(Alert::InternalError, "a traffic key of the wrong length"))?;
            self.key = Some(Box::new(aead::LessSafeKey::new(key)));
        }
        Ok(self.key.as_deref().expect("just made"))
    }

    /// §5.3: the IV XOR the sequence number, big-endian in the nonce's last eight bytes.
    fn nonce(&self) -> aead::Nonce {
        let (_, _, iv) = algorithm(&self.secrets).expect("checked when made");
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce.copy_from_slice(iv);
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        aead::Nonce::assume_unique_for_key(nonce)
    }

    /// A record was protected or opened under the current sequence number: never again.
    fn advance(&mut self) -> Result<(), RecordError> {
        self.seq = self.seq.checked_add(1).ok_or(error(
            Alert::InternalError,
            "record sequence number exhausted",
        ))?;
        Ok(())
    }

    fn update(&mut self, next: (u64, ConnectionTrafficSecrets)) -> Result<(), RecordError> {
        *self = Direction::new(next)?;
        Ok(())
    }
}

/// The AEAD, key and IV of a traffic secret.
fn algorithm(
    secrets: &ConnectionTrafficSecrets,
) -> Result<(&'static aead::Algorithm, &[u8], &[u8]), RecordError> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            Ok((&aead::AES_128_GCM, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            Ok((&aead::AES_256_GCM, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            Ok((&aead::CHACHA20_POLY1305, key.as_ref(), iv.as_ref()))
        }
        _ => Err(error(Alert::InternalError, "a cipher suite not taken over")),
    }
}

/// A TLS 1.3 session's record layer after its handshake.
pub struct Records {
    kernel: KernelConnection<ServerConnectionData>,
    rx: Direction,
    tx: Direction,
    /// The client's KeyUpdate asked for ours: it goes before our next record (§4.6.3).
    owe_update: bool,
    /// The client's close_notify came: what follows it is not read (§6.1).
    rx_closed: bool,
    /// Left of what rustls would tolerate ([`KEY_UPDATES_IN_A_ROW`] and the others).
    key_updates: u8,
    warnings: u8,
    empty: u8,
}

impl Records {
    pub fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> Result<Records, RecordError> {
        Ok(Records {
            kernel,
            rx: Direction::new(secrets.rx)?,
            tx: Direction::new(secrets.tx)?,
            owe_update: false,
            rx_closed: false,
            key_updates: KEY_UPDATES_IN_A_ROW,
            warnings: WARNING_ALERTS,
            empty: EMPTY_RECORDS_IN_A_ROW,
        })
    }

    /// Drops the expanded keys until the connection wakes (parked: [`super::super::park`]).
    pub fn sleep(&mut self) {
        self.rx.key = None;
        self.tx.key = None;
    }

    #[cfg(test)]
    pub fn keys_expanded(&self) -> bool {
        self.rx.key.is_some() || self.tx.key.is_some()
    }

    pub fn rx_closed(&self) -> bool {
        self.rx_closed
    }

    /// The length of the record at the front of `received` once it is all there. Only protected
    /// records come after the handshake: a change_cipher_spec is allowed only before the client's
    /// Finished (§5), and an unprotected alert or handshake message never.
    pub fn whole(received: &[u8]) -> Result<Option<usize>, RecordError> {
        let Some(header) = received.get(..HEADER) else {
            return Ok(None);
        };
        if header[0] != APPLICATION_DATA {
            return Err(error(
                Alert::UnexpectedMessage,
                "an unprotected record after the handshake",
            ));
        }
        // §5.1 lets a receiver ignore it; rustls, which a client was tested against, refuses it.
        if header[1..3] != [3, 3] {
            return Err(error(Alert::DecodeError, "a record of another version"));
        }
        let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if length > MAX_BODY {
            return Err(error(
                Alert::RecordOverflow,
                "a record over 2^14 + 256 bytes",
            ));
        }
        Ok((received.len() >= HEADER + length).then_some(HEADER + length))
    }

    /// Opens one whole record (as [`Records::whole`] measured it) in place.
    pub fn open<'r>(&mut self, record: &'r mut [u8]) -> Result<Record<'r>, RecordError> {
        let (header, body) = record.split_at_mut(HEADER);
        let nonce = self.rx.nonce();
        let plain = self
            .rx
            .key()?
            .open_in_place(nonce, aead::Aad::from(&*header), body)
            .map_err(|_| error(Alert::BadRecordMac, "a record that does not decrypt"))?;
        self.rx.advance()?;
        // §5.4: content, type and padding are at most 2^14 + 1 bytes; the content type is the
        // last byte that is not padding.
        if plain.len() > MAX_PLAIN + 1 {
            return Err(error(
                Alert::RecordOverflow,
                "over 2^14 + 1 bytes of plaintext",
            ));
        }
        let end = plain.iter().rposition(|&b| b != 0).ok_or(error(
            Alert::UnexpectedMessage,
            "a record without a content type",
        ))?;
        let (content, kind) = (&plain[..end], plain[end]);
        if content.is_empty() {
            self.empty = self
                .empty
                .checked_sub(1)
                .ok_or(error(Alert::UnexpectedMessage, "too many empty records"))?;
        } else {
            self.empty = EMPTY_RECORDS_IN_A_ROW;
        }
        match kind {
            // Any application data record, an empty one too (as rustls counts), ends a run of
            // key updates.
            APPLICATION_DATA => {
                self.key_updates = KEY_UPDATES_IN_A_ROW;
                Ok(Record::Data(content))
            }
            // As rustls reads alerts: an unknown level is refused, close_notify ends reading
            // whatever its level, a fatal alert ends the connection, and of the warnings TLS 1.3
            // allows only user_canceled (which close_notify follows, §6.1), four times.
            ALERT => match *content {
                [level, _] if level != 1 && level != 2 => {
                    Err(error(Alert::IllegalParameter, "an alert of no known level"))
                }
                [_, 0] => {
                    self.rx_closed = true;
                    Ok(Record::Closed)
                }
                [2, _] => Err(RecordError {
                    alert: None,
                    what: "the client sent a fatal alert",
                }),
                [1, 90] => {
                    self.warnings = self
                        .warnings
                        .checked_sub(1)
                        .ok_or(error(Alert::UnexpectedMessage, "too many warning alerts"))?;
                    Ok(Record::Control)
                }
                [1, _] => Err(error(Alert::DecodeError, "a warning alert TLS 1.3 has not")),
                _ => Err(error(Alert::DecodeError, "an alert that is not two bytes")),
            },
            // §5.1: a KeyUpdate ends its record, and is the only handshake message a client may
            // send after its Finished here (no post-handshake authentication is asked for).
            HANDSHAKE => match content {
                [KEY_UPDATE, 0, 0, 1, request] => {
                    if *request > 1 {
                        return Err(error(Alert::IllegalParameter, "a KeyUpdate's request"));
                    }
                    self.key_updates = self.key_updates.checked_sub(1).ok_or(error(
                        Alert::UnexpectedMessage,
                        "too many key updates without data",
                    ))?;
                    let next = self
                        .kernel
                        .update_rx_secret()
                        .map_err(|_| error(Alert::InternalError, "the key update failed"))?;
                    self.rx.update(next)?;
                    self.owe_update |= *request == 1;
                    Ok(Record::Control)
                }
                [KEY_UPDATE, ..] => Err(error(Alert::DecodeError, "a malformed KeyUpdate")),
                _ => Err(error(
                    Alert::UnexpectedMessage,
                    "a handshake message after the handshake",
                )),
            },
            _ => Err(error(Alert::UnexpectedMessage, "an unknown content type")),
        }
    }

    /// Protects `data` as application data records into `out`, after the KeyUpdate owed (or due:
    /// [`UPDATE_AFTER`]).
    pub fn seal(&mut self, data: &[u8], out: &mut Outgoing) -> Result<(), RecordError> {
        if self.owe_update || self.tx.seq >= UPDATE_AFTER {
            self.protect(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out)?;
            let next = self
                .kernel
                .update_tx_secret()
                .map_err(|_| error(Alert::InternalError, "the key update failed"))?;
            self.tx.update(next)?;
            self.owe_update = false;
        }
        for chunk in data.chunks(MAX_PLAIN) {
            self.protect(APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    pub fn close_notify(&mut self, out: &mut Outgoing) -> Result<(), RecordError> {
        self.protect(ALERT, &[1, 0], out)
    }

    /// A fatal alert, the last record sent.
    pub fn alert(&mut self, alert: Alert, out: &mut Outgoing) -> Result<(), RecordError> {
        self.protect(ALERT, &[2, alert as u8], out)
    }

    /// One record of `kind` holding `content` (at most [`MAX_PLAIN`]), unpadded.
    fn protect(&mut self, kind: u8, content: &[u8], out: &mut Outgoing) -> Result<(), RecordError> {
        let length = content.len() + 1 + TAG;
        let record = &mut out.room(HEADER + length)[..HEADER + length];
        let (header, body) = record.split_at_mut(HEADER);
        header[0] = APPLICATION_DATA;
        header[1..3].copy_from_slice(&[3, 3]);
        header[3..5].copy_from_slice(&(length as u16).to_be_bytes());
        let (payload, tag_room) = body.split_at_mut(content.len() + 1);
        payload[..content.len()].copy_from_slice(content);
        payload[content.len()] = kind;
        let nonce = self.tx.nonce();
        let tag = self
            .tx
            .key()?
            .seal_in_place_separate_tag(nonce, aead::Aad::from(&*header), payload)
            .map_err(|_| error(Alert::InternalError, "a record could not be protected"))?;
        tag_room.copy_from_slice(tag.as_ref());
        self.tx.advance()?;
        out.wrote(HEADER + length);
        Ok(())
    }
}
