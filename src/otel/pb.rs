//! Protobuf wire primitives for the few messages tier1 writes (OTLP traces): varints, tags,
//! length-delimited fields and the `KeyValue` head, appended to a byte buffer whose room the
//! caller has reserved where it can.

/// Wire types.
pub(super) const VARINT: u32 = 0;
pub(super) const I64: u32 = 1;
pub(super) const LEN: u32 = 2;
pub(super) const I32: u32 = 5;

/// The length of `n` as a varint.
pub(super) fn varint_len(n: u64) -> usize {
    // One byte per 7 bits, at least one.
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// The length of a length-delimited field of `n` bytes with a one-byte tag (field < 16).
pub(super) fn field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

pub(super) fn varint(b: &mut Vec<u8>, n: u64) {
    varint_into(n, |byte| b.push(byte));
}

/// `n` as a protobuf varint, byte by byte into `push` (a `Vec`, or a buffer on the stack).
#[inline(always)]
pub(super) fn varint_into(mut n: u64, mut push: impl FnMut(u8)) {
    while n >= 0x80 {
        #[allow(clippy::cast_possible_truncation)]
        push((n as u8) | 0x80);
        n >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    push(n as u8);
}

pub(super) fn tag(b: &mut Vec<u8>, field: u32, wire: u32) {
    varint(b, u64::from((field << 3) | wire));
}

/// The tag and length of a length-delimited field of `n` bytes (its bytes follow).
pub(super) fn len(b: &mut Vec<u8>, field: u32, n: usize) {
    tag(b, field, LEN);
    varint(b, n as u64);
}

pub(super) fn bytes(b: &mut Vec<u8>, field: u32, data: &[u8]) {
    len(b, field, data.len());
    b.extend_from_slice(data);
}

/// A `KeyValue` as field `field`, up to its `AnyValue`'s content (`any` bytes, written next,
/// room for them reserved): the message's tag and length, the key (field 1), the value's tag and
/// length (field 2).
pub(super) fn key_value(b: &mut Vec<u8>, field: u32, key: &str, any: usize) {
    let kv = field_len(key.len()) + field_len(any);
    b.reserve(field_len(kv));
    len(b, field, kv);
    bytes(b, 1, key.as_bytes());
    len(b, 2, any);
}

#[cfg(test)]
mod tests {
    use super::varint_len;

    #[test]
    fn varint_lengths_are_protobufs() {
        for n in [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX >> 1, u64::MAX] {
            assert_eq!(varint_len(n), prost::encoding::encoded_len_varint(n), "{n}");
        }
    }
}
