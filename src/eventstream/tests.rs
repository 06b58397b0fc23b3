use super::*;

/// The event-stream test suite's `empty_message`: no headers, no payload.
const EMPTY: [u8; 16] = [0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff];

/// Its `int32_header`-less payload message: `{'foo':'bar'}`, no headers.
fn payload_only() -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0x1d, 0, 0, 0, 0, 0xfd, 0x52, 0x8c, 0x5a];
    m.extend_from_slice(b"{'foo':'bar'}");
    m.extend_from_slice(&[0xc3, 0x65, 0x39, 0x36]);
    m
}

fn event(kind: &str, payload: &str) -> Message {
    Message {
        headers: vec![
            (":event-type".into(), Value::String(kind.into())),
            (":content-type".into(), Value::String("application/json".into())),
            (":message-type".into(), Value::String("event".into())),
        ],
        payload: payload.as_bytes().to_vec(),
    }
}

/// A stream of three events and one message with every header type.
fn fixture() -> (Vec<u8>, Vec<Message>) {
    let every = Message {
        headers: vec![
            ("t".into(), Value::Bool(true)),
            ("f".into(), Value::Bool(false)),
            ("byte".into(), Value::Byte(-7)),
            ("short".into(), Value::Short(-300)),
            ("int".into(), Value::Int(70_000)),
            ("long".into(), Value::Long(-(1 << 40))),
            ("bytes".into(), Value::Bytes(vec![0, 255, 10])),
            ("str".into(), Value::String("é✓".into())),
            ("ts".into(), Value::Timestamp(1_700_000_000_000)),
            ("uuid".into(), Value::Uuid([9; 16])),
        ],
        payload: Vec::new(),
    };
    let messages = vec![
        event("messageStart", r#"{"role":"assistant","p":"abcd"}"#),
        every,
        event("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"ab"}"#),
        event("messageStop", r#"{"stopReason":"end_turn","p":"abcdefgh"}"#),
    ];
    (messages.iter().flat_map(Message::encode).collect(), messages)
}

/// Decodes `data` fed in pieces cut at `cuts`, until the end or an error.
fn decode(data: &[u8], cuts: &[usize], max: usize) -> (Vec<Message>, Option<Error>, bool) {
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([&data.len()]) {
        d.push(&data[at..cut.max(at)]);
        at = cut.max(at);
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e), d.partial()),
            }
        }
    }
    (out, None, d.partial())
}

#[test]
fn the_suites_vectors_decode_and_encode_byte_for_byte() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926, "the IEEE CRC-32 check value");
    let (m, err, partial) = decode(&EMPTY, &[], 1024);
    assert_eq!((m.len(), err, partial), (1, None, false));
    assert_eq!(m[0], Message { headers: Vec::new(), payload: Vec::new() });
    assert_eq!(m[0].encode(), EMPTY);
    let (m, err, _) = decode(&payload_only(), &[], 1024);
    assert_eq!(err, None);
    assert_eq!(m[0].payload, b"{'foo':'bar'}");
    assert_eq!(m[0].encode(), payload_only());
}

#[test]
fn every_split_point_gives_the_same_messages() {
    let (data, want) = fixture();
    assert_eq!(decode(&data, &[], 1 << 20).0, want);
    for cut in 0..=data.len() {
        let (got, err, partial) = decode(&data, &[cut], 1 << 20);
        assert_eq!((err, partial), (None, false), "cut at {cut}");
        assert_eq!(got, want, "cut at {cut}");
    }
    // Two cuts at every pair of points would be quadratic in tests; byte by byte covers the rest.
    let bytewise: Vec<usize> = (1..data.len()).collect();
    assert_eq!(decode(&data, &bytewise, 1 << 20).0, want);
    assert_eq!(want[1].header("str"), Some("é✓"));
    assert_eq!(want[0].header(":event-type"), Some("messageStart"));
    assert_eq!(want[1].header("int"), None, "not a string");
}

#[test]
fn a_stream_cut_short_leaves_a_partial_message() {
    let (data, want) = fixture();
    let (got, err, partial) = decode(&data[..data.len() - 1], &[], 1 << 20);
    assert_eq!((got.len(), err, partial), (want.len() - 1, None, true));
}

#[test]
fn a_bad_crc_stops_the_stream_for_good() {
    let (data, want) = fixture();
    let first = want[0].encode().len();
    // A payload byte of the second message: its message CRC fails.
    let mut bad = data.clone();
    bad[first + 20] ^= 1;
    let (got, err, _) = decode(&bad, &[], 1 << 20);
    assert_eq!((got.len(), err), (1, Some(Error::MessageCrc)));
    // A length byte of the first: its prelude CRC fails, before the length is believed.
    let mut bad = data.clone();
    bad[2] ^= 0x40;
    assert_eq!(decode(&bad, &[], 1 << 20).1, Some(Error::PreludeCrc));
    // The message CRC itself.
    let mut bad = data;
    bad[first - 1] ^= 0x80;
    let mut d = Decoder::new(1 << 20);
    d.push(&bad);
    assert_eq!(d.next_message(), Err(Error::MessageCrc));
    d.push(&EMPTY);
    assert_eq!(d.next_message(), Err(Error::MessageCrc), "the framing is lost: no resync");
    assert!(!d.partial());
}

#[test]
fn an_oversized_message_is_refused_from_its_prelude_without_buffering_it() {
    let big = event("contentBlockDelta", &"x".repeat(10_000)).encode();
    let mut d = Decoder::new(4096);
    // Only the prelude has come: the length alone refuses it.
    d.push(&big[..12]);
    assert_eq!(d.next_message(), Err(Error::TooLarge(big.len())));
    d.push(&big[12..]);
    assert!(d.buf.is_empty(), "nothing more is taken");
    // At the bound it passes.
    assert_eq!(decode(&big, &[], big.len()).0.len(), 1);
    assert_eq!(decode(&big, &[], big.len() - 1).1, Some(Error::TooLarge(big.len())));
}

#[test]
fn lengths_that_do_not_add_up_and_bad_headers_are_malformed() {
    // A prelude with a valid CRC whose total is under the minimum, or whose headers overrun it.
    let prelude = |total: u32, headers: u32| {
        let mut p = total.to_be_bytes().to_vec();
        p.extend_from_slice(&headers.to_be_bytes());
        let crc = crc32(&p);
        p.extend_from_slice(&crc.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    };
    assert_eq!(decode(&prelude(8, 0), &[], 1024).1, Some(Error::Malformed));
    assert_eq!(decode(&prelude(20, 5), &[], 1024).1, Some(Error::Malformed));
    // A header of an unknown type (with both CRCs right).
    let mut m = Message { headers: vec![("a".into(), Value::Bool(true))], payload: Vec::new() }.encode();
    m[13 + 1] = 42;
    let n = m.len();
    let crc = crc32(&m[..n - 4]);
    m[n - 4..].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(decode(&m, &[], 1024).1, Some(Error::Malformed));
    // A string header cut by the end of the headers block.
    for value in [Value::String("abc".into()), Value::Long(1), Value::Uuid([0; 16])] {
        let mut m = Message { headers: vec![("a".into(), value)], payload: Vec::new() }.encode();
        // Shrink the headers length by one, fixing both CRCs: the value runs into the payload.
        let h = be32(&m[4..8]) - 1;
        m[4..8].copy_from_slice(&(h as u32).to_be_bytes());
        let crc = crc32(&m[..8]);
        m[8..12].copy_from_slice(&crc.to_be_bytes());
        let n = m.len();
        let crc = crc32(&m[..n - 4]);
        m[n - 4..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode(&m, &[], 1024).1, Some(Error::Malformed));
    }
}
