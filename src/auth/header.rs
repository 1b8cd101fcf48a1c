//! Parser for the HTTP authentication header grammar (RFC 7235 §2.1, §4).
//!
//! `WWW-Authenticate` carries a list of challenges and `Authorization` carries
//! one set of credentials; both use the same shape:
//!
//! ```text
//! challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param  = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! The parser is deliberately lenient about what real devices send: any amount
//! of whitespace around `=` and `,`, empty list elements, parameter names in
//! any case (they are returned lower-cased), and unquoted values that contain
//! characters outside the strict `token` set (for example `uri=/acs?x=1`).
//! It is strict where leniency would be ambiguous: an unterminated quoted
//! string or a parameter without a value is an error.

use super::AuthError;

/// One challenge (or one set of credentials): a scheme plus either a token68
/// blob or a list of `name=value` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme exactly as sent (compare with [`Challenge::is_scheme`]).
    pub scheme: String,
    /// A token68 value, as used by `Basic` credentials.
    pub token68: Option<String>,
    /// Parameters in the order sent; names are lower-cased, quoted values
    /// are unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// True when the scheme equals `scheme`, ignoring ASCII case.
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The first value of parameter `name` (which must be given lower-case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The name of the first parameter that occurs more than once, if any.
    pub fn duplicate_param(&self) -> Option<&str> {
        self.params.iter().enumerate().find_map(|(i, (name, _))| {
            self.params[..i]
                .iter()
                .any(|(earlier, _)| earlier == name)
                .then_some(name.as_str())
        })
    }
}

/// Parses a header value holding one or more challenges, such as a
/// `WWW-Authenticate` value `Basic realm="a", Digest realm="b", nonce="n"`.
pub fn parse_challenges(input: &str) -> Result<Vec<Challenge>, AuthError> {
    let mut parser = Parser {
        input: input.as_bytes(),
        text: input,
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        parser.skip_separators();
        if parser.at_end() {
            break;
        }
        out.push(parser.challenge()?);
    }
    if out.is_empty() {
        return Err(AuthError::Malformed("the header value is empty".into()));
    }
    Ok(out)
}

/// Parses a header value holding exactly one set of credentials, such as an
/// `Authorization` value.
pub fn parse_credentials(input: &str) -> Result<Challenge, AuthError> {
    let mut all = parse_challenges(input)?;
    if all.len() != 1 {
        return Err(AuthError::Malformed(format!(
            "expected one authentication scheme, found {} ({})",
            all.len(),
            all.iter()
                .map(|c| c.scheme.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    all.pop()
        .ok_or_else(|| AuthError::Malformed("the header value is empty".into()))
}

struct Parser<'a> {
    input: &'a [u8],
    text: &'a str,
    pos: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n' | b',')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        // Token characters are ASCII, so these are char boundaries.
        &self.text[start..self.pos]
    }

    fn error(&self, what: &str) -> AuthError {
        AuthError::Malformed(format!("{what} at byte {}", self.pos))
    }

    fn challenge(&mut self) -> Result<Challenge, AuthError> {
        let scheme = self.token().to_string();
        if scheme.is_empty() {
            return Err(self.error("expected an authentication scheme"));
        }
        let mut challenge = Challenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        self.skip_ws();
        if self.at_end() || self.peek() == Some(b',') {
            return Ok(challenge);
        }
        if let Some(t68) = self.try_token68() {
            challenge.token68 = Some(t68);
            return Ok(challenge);
        }
        // Digest credentials carry up to ten parameters: one allocation, not four.
        challenge.params.reserve(10);
        self.params(&mut challenge.params)?;
        Ok(challenge)
    }

    /// Consumes a token68 if one stands here, alone up to the end of the
    /// element; otherwise leaves the position unchanged.
    fn try_token68(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_token68_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.pos += 1;
        }
        let end = self.pos;
        self.skip_ws();
        // `name=` followed by a value is a parameter, not a token68.
        if self.at_end() || self.peek() == Some(b',') {
            return Some(self.text[start..end].to_string());
        }
        self.pos = start;
        None
    }

    fn params(&mut self, out: &mut Vec<(String, String)>) -> Result<(), AuthError> {
        loop {
            self.skip_separators();
            if self.at_end() {
                return Ok(());
            }
            let name_start = self.pos;
            let name = self.token().to_ascii_lowercase();
            if name.is_empty() {
                return Err(self.error("expected a parameter name"));
            }
            self.skip_ws();
            if self.peek() != Some(b'=') {
                // A bare token after a comma starts the next challenge.
                if out.is_empty() {
                    return Err(self.error(&format!("parameter '{name}' has no value")));
                }
                self.pos = name_start;
                return Ok(());
            }
            self.pos += 1;
            self.skip_ws();
            let value = match self.peek() {
                Some(b'"') => self.quoted()?,
                _ => {
                    let v = self.unquoted();
                    if v.is_empty() {
                        return Err(self.error(&format!("parameter '{name}' has no value")));
                    }
                    v
                }
            };
            out.push((name, value));
            self.skip_ws();
            match self.peek() {
                None | Some(b',') => {}
                Some(_) => {
                    return Err(self.error("expected ',' between parameters"));
                }
            }
        }
    }

    fn quoted(&mut self) -> Result<String, AuthError> {
        let open = self.pos;
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => {
                    self.pos = open;
                    return Err(self.error("unterminated quoted string"));
                }
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => {
                            value.push(c);
                            self.pos += 1;
                        }
                        None => {
                            self.pos = open;
                            return Err(self.error("unterminated quoted string"));
                        }
                    }
                }
                Some(c) => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
        // The input is a &str and escapes only drop ASCII backslashes, so the
        // bytes stay valid UTF-8; the lossy path is never taken in practice.
        Ok(String::from_utf8(value)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn unquoted(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b',' || c == b'"' || c.is_ascii_whitespace() {
                break;
            }
            self.pos += 1;
        }
        // Stops only on ASCII bytes, so the slice ends on a char boundary.
        self.text[start..self.pos].to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn several_challenges_in_one_value() {
        let got = parse_challenges(
            r#"Basic realm="cpe", Digest realm="cpe, inc", qop="auth,auth-int", nonce=abc"#,
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_scheme("basic"));
        assert_eq!(got[0].param("realm"), Some("cpe"));
        assert!(got[1].is_scheme("DIGEST"));
        assert_eq!(got[1].param("realm"), Some("cpe, inc"));
        assert_eq!(got[1].param("qop"), Some("auth,auth-int"));
        assert_eq!(got[1].param("nonce"), Some("abc"));
    }

    #[test]
    fn token68_credentials() {
        let c = parse_credentials("Basic dXNlcjpwYXNz").unwrap();
        assert_eq!(c.token68.as_deref(), Some("dXNlcjpwYXNz"));
        let c = parse_credentials("basic   dXNlcjpwYQ==  ").unwrap();
        assert_eq!(c.token68.as_deref(), Some("dXNlcjpwYQ=="));
        assert!(c.params.is_empty());
    }

    #[test]
    fn odd_spacing_case_and_escapes() {
        let c = parse_credentials(
            "Digest   USERNAME = \"a\\\"b\" ,, Realm=r ,uri=\"/x?y=1,2\"\t,nc=00000001,",
        )
        .unwrap();
        assert_eq!(c.param("username"), Some("a\"b"));
        assert_eq!(c.param("realm"), Some("r"));
        assert_eq!(c.param("uri"), Some("/x?y=1,2"));
        assert_eq!(c.param("nc"), Some("00000001"));
    }

    #[test]
    fn empty_quoted_value_is_allowed() {
        let c = parse_credentials(r#"Digest opaque="", realm="r""#).unwrap();
        assert_eq!(c.param("opaque"), Some(""));
    }

    #[test]
    fn errors_are_reported() {
        assert!(parse_challenges("").is_err());
        assert!(parse_challenges("  ,  ").is_err());
        assert!(parse_credentials(r#"Digest realm="unterminated"#).is_err());
        assert!(parse_credentials("Digest realm=, nonce=x").is_err());
        assert!(parse_credentials(r#"Digest realm="a", nonce="#).is_err());
        assert!(parse_credentials(r#"Digest realm="a" nonce="b""#).is_err());
        assert!(parse_credentials(r#"Digest realm="a", username"#).is_err());
        assert!(parse_credentials(r#"Basic a, Digest realm="x""#).is_err());
        let err = parse_credentials("=oops").unwrap_err().to_string();
        assert!(err.contains("authentication scheme"), "{err}");
    }

    #[test]
    fn duplicate_parameters_are_detected() {
        let c = parse_credentials(r#"Digest realm="a", nonce=1, Realm="b""#).unwrap();
        assert_eq!(c.duplicate_param(), Some("realm"));
        let c = parse_credentials(r#"Digest realm="a", nonce=1"#).unwrap();
        assert_eq!(c.duplicate_param(), None);
    }
}
