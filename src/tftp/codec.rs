//! TFTP packets (RFC 1350) with option negotiation (RFC 2347: OACK; RFC 2348 blksize; RFC
//! 2349 timeout and tsize), and the sending side of a read transfer as a state machine.
//! No I/O and no clock: the server feeds datagrams and timeouts in and sends what comes
//! out, so every rule here is tested without a socket.

pub const RRQ: u16 = 1;
pub const WRQ: u16 = 2;
pub const DATA: u16 = 3;
pub const ACK: u16 = 4;
pub const ERROR: u16 = 5;
pub const OACK: u16 = 6;

/// Error codes of RFC 1350 and RFC 2347.
pub mod code {
    pub const NOT_DEFINED: u16 = 0;
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const OPTION_REFUSED: u16 = 8;
}

/// The default block size.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// RFC 2348 bounds.
pub const MIN_BLKSIZE: u16 = 8;
pub const MAX_BLKSIZE: u16 = 65464;
/// The longest request accepted (a file name and a few options).
pub const MAX_REQUEST: usize = 1024;

/// Transfer mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    /// Lines end in CR LF, a bare CR is CR NUL.
    Netascii,
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub filename: String,
    pub mode: Mode,
    /// Options as sent (names lower-cased), in order; unknown ones are kept and ignored.
    pub options: Vec<(String, String)>,
}

impl Request {
    fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request),
    Wrq(Request),
    Data { block: u16, data: &'a [u8] },
    Ack(u16),
    Error { code: u16, message: String },
    Oack(Vec<(String, String)>),
}

/// Why a datagram is not a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooShort,
    UnknownOpcode(u16),
    /// A request without its terminating NUL bytes, or not text.
    Malformed(&'static str),
    UnknownMode(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort => f.write_str("packet too short"),
            DecodeError::UnknownOpcode(o) => write!(f, "unknown opcode {o}"),
            DecodeError::Malformed(w) => write!(f, "malformed packet: {w}"),
            DecodeError::UnknownMode(m) => write!(f, "unsupported mode {m:?}"),
        }
    }
}

fn strings(body: &[u8]) -> Result<Vec<&str>, DecodeError> {
    if body.last() != Some(&0) {
        return Err(DecodeError::Malformed("a string is not NUL-terminated"));
    }
    body[..body.len() - 1]
        .split(|b| *b == 0)
        .map(|s| std::str::from_utf8(s).map_err(|_| DecodeError::Malformed("not text")))
        .collect()
}

fn request(body: &[u8]) -> Result<Request, DecodeError> {
    if body.len() > MAX_REQUEST {
        return Err(DecodeError::Malformed("request too long"));
    }
    let parts = strings(body)?;
    if parts.len() < 2 || parts.len() % 2 != 0 {
        return Err(DecodeError::Malformed(
            "a request is file name, mode, option pairs",
        ));
    }
    let mode = match parts[1].to_ascii_lowercase().as_str() {
        "octet" => Mode::Octet,
        "netascii" => Mode::Netascii,
        m => return Err(DecodeError::UnknownMode(m.to_string())),
    };
    let options = parts[2..]
        .chunks(2)
        .map(|kv| (kv[0].to_ascii_lowercase(), kv[1].to_string()))
        .collect();
    Ok(Request {
        filename: parts[0].to_string(),
        mode,
        options,
    })
}

/// Decode one datagram.
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::TooShort);
    }
    let op = u16::from_be_bytes([buf[0], buf[1]]);
    let body = &buf[2..];
    let u16_at = |b: &[u8]| -> Result<u16, DecodeError> {
        if b.len() < 2 {
            Err(DecodeError::TooShort)
        } else {
            Ok(u16::from_be_bytes([b[0], b[1]]))
        }
    };
    match op {
        RRQ => Ok(Packet::Rrq(request(body)?)),
        WRQ => Ok(Packet::Wrq(request(body)?)),
        DATA => Ok(Packet::Data {
            block: u16_at(body)?,
            data: &body[2..],
        }),
        ACK => Ok(Packet::Ack(u16_at(body)?)),
        ERROR => {
            let code = u16_at(body)?;
            let msg = &body[2..];
            let msg = msg.strip_suffix(&[0]).unwrap_or(msg);
            Ok(Packet::Error {
                code,
                message: String::from_utf8_lossy(msg).into_owned(),
            })
        }
        OACK => {
            if body.is_empty() {
                return Ok(Packet::Oack(Vec::new()));
            }
            let parts = strings(body)?;
            if parts.len() % 2 != 0 {
                return Err(DecodeError::Malformed("options come in pairs"));
            }
            Ok(Packet::Oack(
                parts
                    .chunks(2)
                    .map(|kv| (kv[0].to_string(), kv[1].to_string()))
                    .collect(),
            ))
        }
        other => Err(DecodeError::UnknownOpcode(other)),
    }
}

/// Encode a DATA packet.
pub fn data(block: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn ack(block: u16) -> Vec<u8> {
    let mut out = ACK.to_be_bytes().to_vec();
    out.extend_from_slice(&block.to_be_bytes());
    out
}

pub fn error(code: u16, message: &str) -> Vec<u8> {
    let mut out = ERROR.to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend(message.bytes().filter(|b| *b != 0));
    out.push(0);
    out
}

pub fn oack(options: &[(String, String)]) -> Vec<u8> {
    let mut out = OACK.to_be_bytes().to_vec();
    for (k, v) in options {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

pub fn rrq(filename: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = RRQ.to_be_bytes().to_vec();
    for s in [filename, mode]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out
}

/// Convert to netascii: LF → CR LF, a bare CR → CR NUL.
pub fn to_netascii(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 32);
    for &c in b {
        match c {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            c => out.push(c),
        }
    }
    out
}

/// What the options negotiated: the values in effect and the OACK to send (none when the
/// client asked for no option we take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    /// Seconds; `None` = the server's default.
    pub timeout: Option<u8>,
    pub oack: Option<Vec<(String, String)>>,
}

/// Negotiate a read request's options: `blksize` is granted up to `max_blksize` (a value
/// outside RFC 2348's 8..=65464 is ignored, as the RFC allows), `timeout` 1..=255 as asked,
/// `tsize` answered with the file's size. Unknown options are left out of the OACK.
pub fn negotiate(req: &Request, size: u64, max_blksize: u16) -> Negotiated {
    let mut oack = Vec::new();
    let mut blksize = DEFAULT_BLKSIZE;
    if let Some(b) = req
        .option("blksize")
        .and_then(|v| v.trim().parse::<u32>().ok())
    {
        if (u32::from(MIN_BLKSIZE)..=u32::from(MAX_BLKSIZE)).contains(&b) {
            blksize = u16::try_from(b).unwrap_or(DEFAULT_BLKSIZE).min(max_blksize);
            oack.push(("blksize".to_string(), blksize.to_string()));
        }
    }
    let mut timeout = None;
    if let Some(t) = req
        .option("timeout")
        .and_then(|v| v.trim().parse::<u8>().ok())
    {
        if t >= 1 {
            timeout = Some(t);
            oack.push(("timeout".to_string(), t.to_string()));
        }
    }
    if req.option("tsize").is_some() {
        oack.push(("tsize".to_string(), size.to_string()));
    }
    Negotiated {
        blksize,
        timeout,
        oack: (!oack.is_empty()).then_some(oack),
    }
}

/// What the sender does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this datagram (and wait for the answer).
    Send(Vec<u8>),
    /// Read `len` bytes of the file from `offset` (fewer only at its end) and hand them to
    /// [`Sender::fill`], which gives the DATA datagram to send.
    Read { offset: u64, len: usize },
    /// Nothing to send (a duplicate or stray packet): keep waiting.
    Wait,
    /// The last block was acknowledged.
    Done,
    /// The client ended the transfer with an error, or broke the protocol: send this
    /// datagram if any and stop.
    Abort(Option<Vec<u8>>),
}

/// The sending side of a read transfer: the file's size, the block size, and where we are.
/// It holds no file: it asks for each block ([`Step::Read`]) when the previous one is
/// acknowledged, so the server can read the file block by block, and keeps only the last
/// datagram (for retransmission).
#[derive(Debug, Clone)]
pub struct Sender {
    size: u64,
    blksize: usize,
    /// Blocks sent so far counting from 1 (not wrapped); 0 while an OACK awaits ACK 0.
    block: u64,
    last: Vec<u8>,
    oack: Option<Vec<u8>>,
}

impl Sender {
    /// A transfer of a file of `size` bytes with the negotiated options; [`Sender::start`]
    /// gives the first step.
    pub fn new(size: u64, n: &Negotiated) -> Sender {
        Sender {
            size,
            blksize: usize::from(n.blksize.max(MIN_BLKSIZE)),
            block: 0,
            last: Vec::new(),
            oack: n.oack.as_ref().map(|o| oack(o)),
        }
    }

    /// The OACK (answered by ACK 0), or the read of block 1.
    pub fn start(&mut self) -> Step {
        match self.oack.take() {
            // Block stays 0: ACK 0 asks for block 1.
            Some(o) => {
                self.last = o.clone();
                Step::Send(o)
            }
            None => {
                self.block = 1;
                self.read(1)
            }
        }
    }

    fn blocks(&self) -> u64 {
        self.size / self.blksize as u64 + 1
    }

    /// Where block `n` (from 1) lies in the file.
    fn read(&self, n: u64) -> Step {
        let offset = ((n - 1) * self.blksize as u64).min(self.size);
        let len = (self.size - offset).min(self.blksize as u64) as usize;
        Step::Read { offset, len }
    }

    /// The DATA datagram of the block last asked for, with its `payload` (what
    /// [`Step::Read`] asked for); kept for retransmission.
    pub fn fill(&mut self, payload: &[u8]) -> Vec<u8> {
        let payload = &payload[..payload.len().min(self.blksize)];
        // Block numbers wrap to 0 after 65535 (what tftp-hpa and most clients expect).
        self.last = data((self.block % 65536) as u16, payload);
        self.last.clone()
    }

    /// The datagram to send again after a timeout.
    pub fn retransmit(&self) -> Vec<u8> {
        self.last.clone()
    }

    /// Feed a datagram from the client.
    pub fn on_packet(&mut self, buf: &[u8]) -> Step {
        match decode(buf) {
            Ok(Packet::Ack(n)) => {
                if u64::from(n) != self.block % 65536 {
                    // A duplicate ACK of the previous block: never answer it with a resend
                    // (the "Sorcerer's Apprentice" bug); the timeout resends.
                    return Step::Wait;
                }
                if self.block == self.blocks() {
                    return Step::Done;
                }
                self.block += 1;
                self.read(self.block)
            }
            Ok(Packet::Error { .. }) => Step::Abort(None),
            Ok(_) | Err(_) => Step::Abort(Some(error(code::ILLEGAL_OPERATION, "expected an ACK"))),
        }
    }

    /// Blocks acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.block.saturating_sub(1)
    }

    /// Bytes of the file the client has acknowledged so far (all of them once
    /// [`Step::Done`] came).
    pub fn acked_bytes(&self, done: bool) -> u64 {
        if done {
            self.size
        } else {
            (self.acked() * self.blksize as u64).min(self.size)
        }
    }
}

/// Answer a [`Step::Read`] from a file held in memory.
pub fn slice(file: &[u8], offset: u64, len: usize) -> &[u8] {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(file.len());
    &file[start..(start + len).min(file.len())]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Resolve a step's reads from `file`.
    fn step(s: &mut Sender, file: &[u8], st: Step) -> Step {
        match st {
            Step::Read { offset, len } => Step::Send(s.fill(slice(file, offset, len))),
            other => other,
        }
    }

    fn run(file: &[u8], n: &Negotiated) -> Vec<u8> {
        let mut s = Sender::new(file.len() as u64, n);
        let mut got = Vec::new();
        let first = s.start();
        let Step::Send(mut pkt) = step(&mut s, file, first) else {
            panic!()
        };
        loop {
            let (ackno, done_now) = match decode(&pkt).unwrap() {
                Packet::Oack(_) => (0, false),
                Packet::Data { block, data } => {
                    got.extend_from_slice(data);
                    (block, data.len() < usize::from(n.blksize))
                }
                p => panic!("{p:?}"),
            };
            let next = s.on_packet(&ack(ackno));
            match step(&mut s, file, next) {
                Step::Send(p) => pkt = p,
                Step::Done => {
                    assert!(done_now);
                    assert_eq!(s.acked_bytes(true), file.len() as u64);
                    return got;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn requests_round_trip() {
        let b = rrq(
            "SEP0004F2AABBCC.cnf.xml",
            "octet",
            &[("blksize", "1428"), ("tsize", "0")],
        );
        let Packet::Rrq(r) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(r.filename, "SEP0004F2AABBCC.cnf.xml");
        assert_eq!(r.mode, Mode::Octet);
        assert_eq!(
            r.options,
            vec![
                ("blksize".into(), "1428".into()),
                ("tsize".into(), "0".into())
            ]
        );
        let b = rrq("x", "NETASCII", &[("BlkSize", "1024")]);
        let Packet::Rrq(r) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(r.mode, Mode::Netascii);
        assert_eq!(r.option("blksize"), Some("1024"));
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        for b in [
            &b""[..],
            b"\x00",
            b"\x00\x01",
            b"\x00\x01file",
            b"\x00\x01file\x00",
            b"\x00\x01file\x00mail\x00",
            b"\x00\x01file\x00octet\x00blksize\x00",
            b"\x00\x01\xff\xfe\x00octet\x00",
            b"\x00\x03\x00",
            b"\x00\x04\x00",
            b"\x00\x09\x00\x00",
        ] {
            assert!(decode(b).is_err(), "{b:?}");
        }
        assert!(decode(
            &[0, 1]
                .iter()
                .copied()
                .chain(std::iter::repeat_n(b'a', 2000))
                .chain([0, b'o', 0])
                .collect::<Vec<_>>()
        )
        .is_err());
        assert_eq!(
            decode(b"\x00\x05\x00\x01nope\x00").unwrap(),
            Packet::Error {
                code: 1,
                message: "nope".into()
            }
        );
    }

    #[test]
    fn options_are_negotiated_within_bounds() {
        let req = |opts: &[(&str, &str)]| {
            let Packet::Rrq(r) = decode(&rrq("f", "octet", opts)).unwrap() else {
                panic!()
            };
            r
        };
        let n = negotiate(
            &req(&[("blksize", "1428"), ("tsize", "0"), ("timeout", "3")]),
            5000,
            8192,
        );
        assert_eq!(n.blksize, 1428);
        assert_eq!(n.timeout, Some(3));
        assert_eq!(
            n.oack.unwrap(),
            vec![
                ("blksize".to_string(), "1428".to_string()),
                ("timeout".to_string(), "3".to_string()),
                ("tsize".to_string(), "5000".to_string())
            ]
        );
        assert_eq!(
            negotiate(&req(&[("blksize", "65464")]), 1, 8192).blksize,
            8192
        );
        let n = negotiate(&req(&[("blksize", "4")]), 1, 8192);
        assert_eq!((n.blksize, n.oack), (512, None));
        assert_eq!(negotiate(&req(&[("blksize", "99999")]), 1, 8192).oack, None);
        assert_eq!(negotiate(&req(&[("timeout", "0")]), 1, 8192).oack, None);
        assert_eq!(negotiate(&req(&[("windowsize", "4")]), 1, 8192).oack, None);
    }

    #[test]
    fn transfers_deliver_the_file_exactly() {
        let plain = Negotiated {
            blksize: 512,
            timeout: None,
            oack: None,
        };
        let with_oack = Negotiated {
            blksize: 1428,
            timeout: None,
            oack: Some(vec![("blksize".into(), "1428".into())]),
        };
        for len in [0usize, 1, 511, 512, 513, 1024, 1428, 1429, 5000] {
            let file: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            assert_eq!(run(&file, &plain), file, "{len}");
            assert_eq!(run(&file, &with_oack), file, "{len} with oack");
        }
    }

    #[test]
    fn block_numbers_wrap_after_65535() {
        let n = Negotiated {
            blksize: 8,
            timeout: None,
            oack: None,
        };
        let file: Vec<u8> = (0..8 * 70_000 + 3).map(|i| (i % 251) as u8).collect();
        assert_eq!(run(&file, &n), file);
    }

    #[test]
    fn duplicates_wait_and_errors_abort() {
        let n = Negotiated {
            blksize: 512,
            timeout: None,
            oack: None,
        };
        let file = vec![1u8; 2000];
        let mut s = Sender::new(2000, &n);
        assert_eq!(
            s.start(),
            Step::Read {
                offset: 0,
                len: 512
            }
        );
        let first = s.fill(slice(&file, 0, 512));
        assert_eq!(&first[..4], &[0, 3, 0, 1]);
        assert_eq!(
            s.on_packet(&ack(1)),
            Step::Read {
                offset: 512,
                len: 512
            }
        );
        s.fill(slice(&file, 512, 512));
        assert_eq!(s.acked_bytes(false), 512);
        // A delayed duplicate ACK 1 does not trigger a second block 2.
        assert_eq!(s.on_packet(&ack(1)), Step::Wait);
        assert_eq!(&s.retransmit()[..4], &[0, 3, 0, 2]);
        assert_eq!(s.on_packet(&error(0, "cancelled")), Step::Abort(None));
        assert!(matches!(
            s.on_packet(b"\x00\x03\x00\x01x"),
            Step::Abort(Some(_))
        ));
        assert!(matches!(s.on_packet(b"junk"), Step::Abort(Some(_))));
    }

    #[test]
    fn netascii_conversion() {
        assert_eq!(to_netascii(b"a\nb\rc\r\n"), b"a\r\nb\r\0c\r\0\r\n");
    }
}
