//! Client ids in Faye's format: 160 bits from a cryptographically secure
//! generator, written in base 36 and left-padded with `0` to 31 characters.

/// Length of every generated client id.
pub const CLIENT_ID_LEN: usize = 31;

/// A fresh random client id such as `b402jxy4hyata2xl8q1v1f8vprhfudr`.
///
/// The bits come from the thread-local ChaCha generator that the operating
/// system seeds and periodically reseeds: as unpredictable as reading the OS
/// generator, without a system call per handshake.
pub fn generate() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    encode_base36(bytes)
}

fn encode_base36(mut n: [u8; 20]) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; CLIENT_ID_LEN];
    // 36^31 > 2^160, so 31 digits always suffice; repeated long division by 36.
    for slot in out.iter_mut().rev() {
        let mut rem: u32 = 0;
        for byte in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*byte);
            *byte = (cur / 36) as u8;
            rem = cur % 36;
        }
        *slot = DIGITS[rem as usize];
    }
    out.iter().map(|&b| b as char).collect()
}

/// True when `s` has the shape of a generated id (used to reject junk early).
pub fn looks_valid(s: &str) -> bool {
    s.len() == CLIENT_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let a = generate();
        let b = generate();
        assert!(looks_valid(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn base36_edges() {
        assert_eq!(encode_base36([0; 20]), "0".repeat(31));
        let mut one = [0u8; 20];
        one[19] = 35;
        assert_eq!(encode_base36(one), format!("{}z", "0".repeat(30)));
        // 2^160 - 1 in base 36 has 31 digits and starts with a non-zero digit.
        let max = encode_base36([0xff; 20]);
        assert_eq!(max.len(), 31);
        assert_ne!(&max[..1], "0");
    }
}
