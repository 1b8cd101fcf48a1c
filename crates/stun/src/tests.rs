#![allow(clippy::unwrap_used)]

use super::*;

const RFC5769_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769 §2.1: a Binding request with USERNAME, MESSAGE-INTEGRITY and FINGERPRINT.
const RFC5769_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];

/// RFC 5769 §2.2: the IPv4 Binding success response (XOR-MAPPED-ADDRESS 192.0.2.1:32853).
const RFC5769_RESPONSE_V4: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

const RFC5769_ID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// A classic Binding request as a TR-111 device sends it from its connection-request socket:
/// 16-byte transaction id, CONNECTION-REQUEST-BINDING (the 20-byte value with its trailing
/// space), no other attribute.
const TR111_CLASSIC_REQUEST: [u8; 44] = [
    0x00, 0x01, 0x00, 0x18, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
    0x16, 0x17, 0x18, 0x19, 0xc0, 0x01, 0x00, 0x14, b'd', b's', b'l', b'f', b'o', b'r', b'u', b'm',
    b'.', b'o', b'r', b'g', b'/', b'T', b'R', b'-', b'1', b'1', b'1', b' ',
];

#[test]
fn rfc5769_request_decodes_and_verifies() {
    let m = decode(&RFC5769_REQUEST).unwrap();
    assert_eq!((m.class, m.method), (Class::Request, BINDING));
    assert!(m.is_rfc5389());
    assert_eq!(&m.transaction[4..], &RFC5769_ID);
    assert_eq!(m.username(), Some("evtj:h6vY"));
    assert_eq!(
        m.get(Attr::SOFTWARE),
        Some(&Attr::Software("STUN test client".into()))
    );
    assert_eq!(
        check_integrity(&RFC5769_REQUEST, RFC5769_PASSWORD),
        Integrity::Valid
    );
    assert_eq!(
        check_integrity(&RFC5769_REQUEST, b"wrong"),
        Integrity::Invalid
    );
    assert_eq!(check_fingerprint(&RFC5769_REQUEST), Some(true));
    // PRIORITY (0x0024) is comprehension-required and unknown here.
    assert_eq!(m.unknown_required(), vec![0x0024]);
}

#[test]
fn rfc5769_response_decodes_and_verifies() {
    let m = decode(&RFC5769_RESPONSE_V4).unwrap();
    assert_eq!((m.class, m.method), (Class::Success, BINDING));
    assert_eq!(
        m.get(Attr::XOR_MAPPED_ADDRESS),
        Some(&Attr::XorMappedAddress("192.0.2.1:32853".parse().unwrap()))
    );
    assert_eq!(
        check_integrity(&RFC5769_RESPONSE_V4, RFC5769_PASSWORD),
        Integrity::Valid
    );
    assert_eq!(check_fingerprint(&RFC5769_RESPONSE_V4), Some(true));
    let mut bad = RFC5769_RESPONSE_V4;
    bad[45] ^= 1;
    assert_eq!(check_integrity(&bad, RFC5769_PASSWORD), Integrity::Invalid);
    assert_eq!(check_fingerprint(&bad), Some(false));
}

#[test]
fn encoding_the_rfc5769_response_values_gives_its_attributes() {
    let m = Message::rfc5389(Class::Success, BINDING, RFC5769_ID)
        .with(Attr::Software("test vector".into()))
        .with(Attr::XorMappedAddress("192.0.2.1:32853".parse().unwrap()));
    let bytes = m.encode(Some(RFC5769_PASSWORD));
    assert_eq!(bytes.len(), RFC5769_RESPONSE_V4.len());
    // Header, SOFTWARE (but its padding byte: the vector pads with a space) and
    // XOR-MAPPED-ADDRESS are the vector's bytes.
    assert_eq!(&bytes[..35], &RFC5769_RESPONSE_V4[..35]);
    assert_eq!(&bytes[36..52], &RFC5769_RESPONSE_V4[36..52]);
    assert_eq!(check_integrity(&bytes, RFC5769_PASSWORD), Integrity::Valid);
    assert_eq!(check_fingerprint(&bytes), Some(true));
    assert_eq!(decode(&bytes).unwrap().attrs[..2], m.attrs[..]);
}

#[test]
fn classic_tr111_request_decodes_and_round_trips() {
    let m = decode(&TR111_CLASSIC_REQUEST).unwrap();
    assert!(!m.is_rfc5389());
    assert_eq!((m.class, m.method), (Class::Request, BINDING));
    assert_eq!(m.attrs, vec![Attr::ConnectionRequestBinding]);
    assert!(m.unknown_required().is_empty());
    assert_eq!(m.encode(None), TR111_CLASSIC_REQUEST.to_vec());
    assert_eq!(
        check_integrity(&TR111_CLASSIC_REQUEST, b"x"),
        Integrity::Absent
    );
    // No FINGERPRINT in classic messages.
    assert_eq!(check_fingerprint(&TR111_CLASSIC_REQUEST), None);
}

#[test]
fn classic_integrity_pads_to_64_bytes_and_binding_change_is_kept() {
    let m = Message::classic(Class::Request, BINDING, [9; 16])
        .with(Attr::ConnectionRequestBinding)
        .with(Attr::BindingChange)
        .with(Attr::Username("00259E-HG8245-X1".into()));
    let bytes = m.encode(Some(b"stun-pass"));
    assert_eq!(check_integrity(&bytes, b"stun-pass"), Integrity::Valid);
    assert_eq!(check_integrity(&bytes, b"stun-pas"), Integrity::Invalid);
    // By hand: HMAC over the message before MESSAGE-INTEGRITY, zero-padded to 64 bytes.
    let at = bytes.len() - 24;
    let mut text = bytes[..at].to_vec();
    assert_eq!(at, 68);
    text.resize(128, 0);
    assert_eq!(&bytes[at + 4..], &hmac_sha1(b"stun-pass", &text));
    let back = decode(&bytes).unwrap();
    assert!(back.has(Attr::BINDING_CHANGE) && back.has(Attr::CONNECTION_REQUEST_BINDING));
    assert_eq!(back.username(), Some("00259E-HG8245-X1"));
    // The classic username is padded to a multiple of 4 and read back without the padding.
    let m = Message::classic(Class::Request, BINDING, [9; 16]).with(Attr::Username("abcde".into()));
    assert_eq!(decode(&m.encode(None)).unwrap().username(), Some("abcde"));
}

#[test]
fn responses_keep_the_flavour_of_the_request() {
    let req = decode(&TR111_CLASSIC_REQUEST).unwrap();
    let from: SocketAddr = "203.0.113.7:40001".parse().unwrap();
    let resp = req
        .response(Class::Success)
        .with(Attr::MappedAddress(from))
        .with(Attr::SourceAddress("198.51.100.1:3478".parse().unwrap()));
    let bytes = resp.encode(None);
    assert_eq!(&bytes[4..20], &TR111_CLASSIC_REQUEST[4..20]);
    let back = decode(&bytes).unwrap();
    assert_eq!(back.class, Class::Success);
    assert_eq!(
        back.get(Attr::MAPPED_ADDRESS),
        Some(&Attr::MappedAddress(from))
    );
    // An RFC 5389 response carries XOR-MAPPED-ADDRESS (IPv6 too) and FINGERPRINT.
    let req = Message::rfc5389(Class::Request, BINDING, [3; 12]);
    let v6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
    let bytes = req
        .response(Class::Success)
        .with(Attr::XorMappedAddress(v6))
        .encode(None);
    assert_eq!(check_fingerprint(&bytes), Some(true));
    assert_eq!(
        decode(&bytes).unwrap().get(Attr::XOR_MAPPED_ADDRESS),
        Some(&Attr::XorMappedAddress(v6))
    );
    // Error responses: 401 and 420 with the unknown attributes.
    let e = req
        .response(Class::Error)
        .with(Attr::ErrorCode {
            code: 420,
            reason: "Unknown Attribute".into(),
        })
        .with(Attr::UnknownAttributes(vec![0x0024]));
    let back = decode(&e.encode(None)).unwrap();
    assert_eq!(
        back.get(Attr::ERROR_CODE),
        Some(&Attr::ErrorCode {
            code: 420,
            reason: "Unknown Attribute".into()
        })
    );
    assert_eq!(
        back.get(Attr::UNKNOWN_ATTRIBUTES),
        Some(&Attr::UnknownAttributes(vec![0x0024]))
    );
}

#[test]
fn malformed_datagrams_are_errors_not_panics() {
    // Truncated at every length.
    for n in 0..RFC5769_REQUEST.len() {
        assert!(decode(&RFC5769_REQUEST[..n]).is_err(), "prefix {n}");
        let _ = check_integrity(&RFC5769_REQUEST[..n], RFC5769_PASSWORD);
        let _ = check_fingerprint(&RFC5769_REQUEST[..n]);
    }
    // Trailing bytes.
    let mut long = RFC5769_REQUEST.to_vec();
    long.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decode(&long), Err(DecodeError::TrailingBytes));
    // Not STUN (first bits set), length not a multiple of 4.
    let mut b = TR111_CLASSIC_REQUEST;
    b[0] = 0x80;
    assert_eq!(decode(&b), Err(DecodeError::NotStun));
    let mut b = TR111_CLASSIC_REQUEST;
    b[3] = 0x17;
    assert_eq!(decode(&b), Err(DecodeError::NotStun));
    // An attribute longer than the message.
    let mut b = TR111_CLASSIC_REQUEST;
    b[23] = 0x40;
    assert_eq!(decode(&b), Err(DecodeError::BadAttribute(0xC001)));
    // A wrong CONNECTION-REQUEST-BINDING value, an address of a bad family.
    let mut b = TR111_CLASSIC_REQUEST;
    b[24] = b'X';
    assert_eq!(decode(&b), Err(DecodeError::BadAttribute(0xC001)));
    let bad_addr = [
        0x01, 0x01, 0x00, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x00, 0x01,
        0x00, 0x08, 0x00, 0x07, 0x00, 0x50, 1, 2, 3, 4,
    ];
    assert_eq!(decode(&bad_addr), Err(DecodeError::BadAttribute(0x0001)));
    // An attribute after MESSAGE-INTEGRITY.
    let mut b = Message::classic(Class::Request, BINDING, [1; 16]).encode(Some(b"k"));
    b.extend_from_slice(&[0xc0, 0x02, 0x00, 0x00]);
    let len = (b.len() - 20) as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        decode(&b),
        Err(DecodeError::AttributeAfterIntegrity(0xC002))
    );
    // Unknown comprehension-required attribute: decoded, reported for a 420.
    let m = Message::classic(Class::Request, BINDING, [1; 16]).with(Attr::Other {
        kind: 0x7777,
        value: vec![1, 2, 3, 4],
    });
    assert_eq!(
        decode(&m.encode(None)).unwrap().unknown_required(),
        vec![0x7777]
    );
    // Oversized.
    assert_eq!(
        decode(&[0u8; MAX_MESSAGE + 1]),
        Err(DecodeError::TrailingBytes)
    );
}

#[test]
fn pseudo_random_bytes_never_panic() {
    // A small deterministic generator: no dependency, same bytes every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 96) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if b.len() >= 20 && next() % 2 == 0 {
            // Mostly valid framing so the attribute parser is reached.
            b[0] &= 0x3f;
            let l = ((b.len() - 20) & !3) as u16;
            b.truncate(20 + usize::from(l));
            b[2..4].copy_from_slice(&l.to_be_bytes());
        }
        let _ = decode(&b);
        let _ = check_integrity(&b, b"k");
        let _ = check_fingerprint(&b);
    }
}

#[test]
fn message_types_round_trip() {
    for class in [
        Class::Request,
        Class::Indication,
        Class::Success,
        Class::Error,
    ] {
        for method in [BINDING, 0x003, 0x0FFF] {
            assert_eq!(split_type(message_type(class, method)), (class, method));
        }
    }
    assert_eq!(message_type(Class::Success, BINDING), 0x0101);
    assert_eq!(message_type(Class::Error, BINDING), 0x0111);
}
