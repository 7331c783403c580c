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

fn encode_base36(bytes: [u8; 20]) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    // 36^6 fits in 32 bits, so the 160-bit number is divided six digits at a
    // time over 32-bit limbs: 6 rounds of 5 divisions instead of 620 byte steps.
    const CHUNK: u64 = 36u64.pow(6);
    let mut limbs = [0u32; 5];
    for (limb, quad) in limbs.iter_mut().zip(bytes.chunks_exact(4)) {
        *limb = u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]);
    }
    let mut out = [b'0'; CLIENT_ID_LEN];
    let mut end = CLIENT_ID_LEN;
    while end > 0 {
        let mut rem: u64 = 0;
        for limb in limbs.iter_mut() {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / CHUNK) as u32;
            rem = cur % CHUNK;
        }
        // 36^31 > 2^160: the last round writes the single leading digit.
        for _ in 0..6 {
            if end == 0 {
                break;
            }
            end -= 1;
            out[end] = DIGITS[(rem % 36) as usize];
            rem /= 36;
        }
    }
    out.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), CLIENT_ID_LEN);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn base36_edges() {
        assert_eq!(encode_base36([0; 20]), "0".repeat(31));
        let mut one = [0u8; 20];
        one[19] = 35;
        assert_eq!(encode_base36(one), format!("{}z", "0".repeat(30)));
        // 2^160 - 1 in base 36 has 31 digits and starts with a non-zero digit.
        assert_eq!(encode_base36([0xff; 20]), "twj4yidkw7a8pn4g709kzmfoaol3x8f");
        let mut counting = [0u8; 20];
        for (i, b) in counting.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        assert_eq!(encode_base36(counting), "048krpivsh77eyzu17ix0nomouxjt3o");
    }
}
