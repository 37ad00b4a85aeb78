//! Redis Cluster's hash slots: CRC16 (XMODEM) of a key, or of its hash tag, modulo 16384, and
//! the short tags `hashtag()` gives for a slot.

use std::sync::OnceLock;

pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with, a byte at a time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)])
}

/// The slot of `key`: only what is inside its first `{...}` counts, if that is not empty.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// What tags are made of, in the order they are tried: RedisGears' tag of slot 0 is `06S`.
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The shortest tag of every slot (the first in length, then alphabet, order). Three characters
/// reach all 16384 slots.
fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); usize::from(SLOTS)];
        let mut missing = tags.len();
        let mut visit = |tag: &[u8]| {
            let slot = &mut tags[usize::from(crc16(tag) % SLOTS)];
            if slot.is_empty() {
                *slot = String::from_utf8_lossy(tag).into_owned();
                missing -= 1;
            }
        };
        for &a in ALPHABET {
            visit(&[a]);
        }
        for &a in ALPHABET {
            for &b in ALPHABET {
                visit(&[a, b]);
            }
        }
        for &a in ALPHABET {
            for &b in ALPHABET {
                for &c in ALPHABET {
                    visit(&[a, b, c]);
                }
            }
        }
        debug_assert_eq!(missing, 0, "three characters reach every slot");
        tags
    })
}

/// A short string whose slot is `slot` (`'{%s}' % tag` keeps keys there).
pub fn hashtag_of(slot: u16) -> &'static str {
    tags().get(usize::from(slot % SLOTS)).map_or("06S", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_slots_are_redis_clusters() {
        // The check value of CRC16/XMODEM, and slots CLUSTER KEYSLOT gives.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"), "an empty tag hashes the whole key");
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn every_slot_has_a_short_tag_that_hashes_to_it() {
        assert_eq!(hashtag_of(0), "06S");
        for slot in 0..SLOTS {
            let tag = hashtag_of(slot);
            assert!((1..=3).contains(&tag.len()), "{slot}: {tag}");
            assert_eq!(key_slot(format!("x{{{tag}}}y").as_bytes()), slot);
        }
    }
}
