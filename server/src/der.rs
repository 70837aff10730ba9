//! The little DER (X.690) the certificate code needs: writing a PKCS#10
//! certificate request for a P-256 key, and reading a certificate's serial
//! number and validity. Hand-written because a CSR is a few fixed
//! structures (rcgen would add ~170 KB to a 3 MiB binary) and reading two
//! fields of a certificate needs no general parser.

/// One TLV: `tag`, then the DER length, then `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A DER object identifier from its encoded content bytes.
fn oid(content: &[u8]) -> Vec<u8> {
    tlv(0x06, content)
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]; // 1.2.840.10045.2.1
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]; // 1.2.840.10045.3.1.7
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]; // 1.2.840.10045.4.3.2
const OID_EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e]; // 1.2.840.113549.1.9.14
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3

/// The part of a PKCS#10 request that is signed (RFC 2986
/// `CertificationRequestInfo`): the first name as subject CN (when it fits
/// the 64 characters X.520 allows), every name as a `dNSName` SAN, and the
/// uncompressed P-256 public key.
pub fn csr_info(names: &[String], public_key: &[u8]) -> Vec<u8> {
    let subject = match names.first().filter(|n| n.len() <= 64) {
        Some(cn) => {
            let atv = seq(&[&oid(OID_COMMON_NAME), &tlv(0x0c, cn.as_bytes())]);
            seq(&[&tlv(0x31, &atv)])
        }
        None => seq(&[]),
    };
    let mut key_bits = vec![0u8];
    key_bits.extend_from_slice(public_key);
    let spki = seq(&[&seq(&[&oid(OID_EC_PUBLIC_KEY), &oid(OID_P256)]), &tlv(0x03, &key_bits)]);
    let general_names: Vec<u8> = names.iter().flat_map(|n| tlv(0x82, n.as_bytes())).collect();
    let san = seq(&[&oid(OID_SUBJECT_ALT_NAME), &tlv(0x04, &tlv(0x30, &general_names))]);
    let extensions = seq(&[&san]);
    let attribute = seq(&[&oid(OID_EXTENSION_REQUEST), &tlv(0x31, &extensions)]);
    seq(&[&tlv(0x02, &[0]), &subject, &spki, &tlv(0xa0, &attribute)])
}

/// The whole request: `info` and its ECDSA-SHA256 signature (ASN.1 form).
pub fn csr(info: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut sig_bits = vec![0u8];
    sig_bits.extend_from_slice(signature);
    seq(&[info, &seq(&[&oid(OID_ECDSA_SHA256)]), &tlv(0x03, &sig_bits)])
}

/// Reads TLVs off a DER buffer.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next TLV: (tag, content).
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        self.0 = &rest[len..];
        Some((tag, &rest[..len]))
    }
}

/// What the server needs to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The serial number, hex.
    pub serial: String,
    /// Validity, Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    /// The ACME renewal information (ARI, RFC 9773 4.1) identifier:
    /// base64url of the authority key identifier, ".", base64url of the
    /// serial's DER bytes. `None` without an authority key identifier.
    pub ari_id: Option<String>,
}

/// Serial and validity of a DER X.509 certificate (RFC 5280 4.1).
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (_, cert) = Reader(der).next()?;
    let (_, tbs) = Reader(cert).next()?;
    let mut tbs = Reader(tbs);
    let mut field = tbs.next()?;
    if field.0 == 0xa0 {
        field = tbs.next()?; // the version
    }
    let serial_der = field.1;
    let serial: String = serial_der.iter().map(|b| format!("{b:02x}")).collect();
    tbs.next()?; // signature algorithm
    tbs.next()?; // issuer
    let (_, validity) = tbs.next()?;
    let mut validity = Reader(validity);
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    tbs.next()?; // subject
    tbs.next()?; // subject public key info
                 // Then [1], [2] (unique identifiers) and [3] the extensions.
    let mut aki = None;
    while let Some((tag, content)) = tbs.next() {
        if tag == 0xa3 {
            aki = authority_key_id(content);
        }
    }
    let ari_id = aki.map(|key_id| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(key_id), b64.encode(serial_der))
    });
    Some(CertInfo { serial, not_before, not_after, ari_id })
}

/// The keyIdentifier of the authority key identifier extension (OID
/// 2.5.29.35, RFC 5280 4.2.1.1) in `[3] Extensions`.
fn authority_key_id(explicit: &[u8]) -> Option<&[u8]> {
    const AKI: &[u8] = &[0x55, 0x1d, 0x23];
    let (_, extensions) = Reader(explicit).next()?;
    let mut extensions = Reader(extensions);
    while let Some((_, extension)) = extensions.next() {
        let mut fields = Reader(extension);
        let (tag, oid) = fields.next()?;
        if tag != 0x06 || oid != AKI {
            continue;
        }
        let mut value = fields.next()?;
        if value.0 == 0x01 {
            value = fields.next()?; // critical
        }
        let (_, aki) = Reader(value.1).next()?;
        let mut aki = Reader(aki);
        while let Some((tag, content)) = aki.next() {
            if tag == 0x80 {
                return Some(content);
            }
        }
        return None;
    }
    None
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time((tag, text): (u8, &[u8])) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy: u64 = text[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let num = |i: usize| rest.get(i..i + 2)?.parse::<u64>().ok();
    let (month, day, hour, minute, second) = (num(0)?, num(2)?, num(4)?, num(6)?, num(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_encoded_short_and_long() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn times_of_both_kinds_are_read() {
        assert_eq!(time((0x17, b"700101000000Z")), Some(0));
        assert_eq!(time((0x17, b"261202185231Z")), Some(1_796_237_551));
        assert_eq!(time((0x18, b"20261202185231Z")), Some(1_796_237_551));
        assert_eq!(time((0x18, b"2026120218523Z")), None);
        assert_eq!(time((0x17, b"261302185231Z")), None);
    }

    #[test]
    fn the_ari_identifier_is_rfc_9773s() {
        // RFC 9773 4.1's example: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:
        // B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21.
        let key_id = [
            0x69, 0x88, 0x5b, 0x6b, 0x87, 0x46, 0x40, 0x41, 0xe1, 0xb3, 0x7b, 0x84, 0x7b, 0xa0, 0xae, 0x2c, 0xde, 0x01,
            0xc8, 0xd4,
        ];
        let aki = seq(&[&tlv(0x80, &key_id)]);
        let extension = seq(&[&tlv(0x06, &[0x55, 0x1d, 0x23]), &tlv(0x04, &aki)]);
        let other = seq(&[&tlv(0x06, &[0x55, 0x1d, 0x13]), &tlv(0x01, &[0xff]), &tlv(0x04, &seq(&[]))]);
        let extensions = tlv(0xa3, &seq(&[&other, &extension]));
        let validity = seq(&[&tlv(0x17, b"260101000000Z"), &tlv(0x17, b"260401000000Z")]);
        let tbs = seq(&[
            &tlv(0xa0, &tlv(0x02, &[2])),
            &tlv(0x02, &[0x00, 0x87, 0x65, 0x43, 0x21]),
            &seq(&[]),
            &seq(&[]),
            &validity,
            &seq(&[]),
            &seq(&[]),
            &extensions,
        ]);
        let cert = seq(&[&tbs, &seq(&[]), &tlv(0x03, &[0])]);
        let info = cert_info(&cert).expect("parsed");
        assert_eq!(info.ari_id.as_deref(), Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));
        assert_eq!(info.serial, "0087654321");
        // Without the extension: no identifier, the rest still read.
        let bare = seq(&[
            &seq(&[&tlv(0x02, &[5]), &seq(&[]), &seq(&[]), &validity, &seq(&[]), &seq(&[])]),
            &seq(&[]),
            &tlv(0x03, &[0]),
        ]);
        assert_eq!(cert_info(&bare).map(|i| i.ari_id), Some(None));
    }

    #[test]
    fn a_truncated_certificate_is_none_not_a_panic() {
        let info = csr_info(&["a.example.com".into()], &[4; 65]);
        for n in 0..info.len() {
            let _ = cert_info(&info[..n]);
        }
        assert_eq!(cert_info(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
