//! Identifiers derived from an Inform's `DeviceId`: the device ID used as the
//! primary key of a CPE (the `<OUI>-<ProductClass>-<SerialNumber>` form used by
//! GenieACS exports) and the default HTTP user name of TR-069 §3.4.4.

/// Appends `field` to `out`, percent-encoding (UTF-8 bytes, upper-case hex)
/// every byte for which `keep` is false.
fn push_escaped(out: &mut String, field: &str, keep: fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in field.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
}

fn join(oui: &str, product_class: &str, serial: &str, keep: fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(oui.len() + product_class.len() + serial.len() + 8);
    push_escaped(&mut out, oui, keep);
    out.push('-');
    if !product_class.is_empty() {
        push_escaped(&mut out, product_class, keep);
        out.push('-');
    }
    push_escaped(&mut out, serial, keep);
    out
}

/// The device ID: `OUI-ProductClass-SerialNumber`, or `OUI-SerialNumber`
/// when the product class is empty. In each field every byte outside
/// `[A-Za-z0-9_.]` is percent-encoded, so `-` inside a field becomes `%2D`
/// and the separators stay unambiguous: `("9075BC", "G-1425G-A",
/// "ALCLFC265D6F")` gives `"9075BC-G%2D1425G%2DA-ALCLFC265D6F"`.
pub fn device_id(oui: &str, product_class: &str, serial: &str) -> String {
    join(oui, product_class, serial, |b| {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
    })
}

/// The default CPE user name of TR-069 §3.4.4: `OUI-ProductClass-SerialNumber`
/// (or `OUI-SerialNumber` without a product class), with every byte outside
/// `[A-Za-z0-9_]` percent-encoded.
pub fn cpe_username(oui: &str, product_class: &str, serial: &str) -> String {
    join(oui, product_class, serial, |b| {
        b.is_ascii_alphanumeric() || b == b'_'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_escapes_dashes_inside_fields() {
        assert_eq!(
            device_id("9075BC", "G-1425G-A", "ALCLFC265D6F"),
            "9075BC-G%2D1425G%2DA-ALCLFC265D6F"
        );
        assert_eq!(
            device_id("00259E", "EG8145V5", "48575443A94196A5"),
            "00259E-EG8145V5-48575443A94196A5"
        );
    }

    #[test]
    fn device_id_keeps_dots_and_underscores_and_encodes_utf8() {
        assert_eq!(device_id("ABCDEF", "a_b.c", "x y"), "ABCDEF-a_b.c-x%20y");
        assert_eq!(device_id("ABCDEF", "Caf\u{e9}", "1"), "ABCDEF-Caf%C3%A9-1");
        assert_eq!(
            device_id("00a859", "BCM Serials", "s/n%"),
            "00a859-BCM%20Serials-s%2Fn%25"
        );
    }

    #[test]
    fn empty_product_class_is_left_out() {
        assert_eq!(device_id("202BC1", "", "000000"), "202BC1-000000");
        assert_eq!(cpe_username("202BC1", "", "000000"), "202BC1-000000");
    }

    #[test]
    fn username_also_escapes_dots() {
        assert_eq!(
            cpe_username("00D09E", "ATA.2", "S-1"),
            "00D09E-ATA%2E2-S%2D1"
        );
        assert_eq!(cpe_username("00D09E", "\u{e9}", "a_b"), "00D09E-%C3%A9-a_b");
    }
}
