//! `${ADEPLOY_...}` placeholders in config text (metric queries today):
//! which names exist, which a text uses, and substituting their values.
//!
//! Why one function: a query, a baseline query and whatever text gains
//! placeholders next must agree on the syntax and on what an unknown or
//! unset name does. The syntax is deliberately narrow: only `${ADEPLOY_` +
//! capitals, digits and `_` + `}` is a placeholder, so PromQL braces,
//! shell `$VARS` and other templating (`${var}` of a dashboard tool) pass
//! through untouched.

/// The placeholders adeploy fills in, with what they stand for.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("ADEPLOY_SERVICE", "the service's name"),
    ("ADEPLOY_DEPLOYMENT_ID", "the deployment's id"),
    (
        "ADEPLOY_ENVIRONMENT",
        "the environment (local, development, staging, production)",
    ),
    ("ADEPLOY_VERSION", "the version being deployed"),
    ("ADEPLOY_PREVIOUS_VERSION", "the version it replaces"),
    (
        "ADEPLOY_HOST",
        "the fleet host of the step (empty for a local service)",
    ),
];

const PREFIX: &str = "${ADEPLOY_";

/// A placeholder that cannot be used or filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceholderError {
    /// `${ADEPLOY_X}` with a name adeploy does not know.
    #[error("unknown placeholder ${{{name}}} (known: {})", known())]
    Unknown { name: String },
    /// `${ADEPLOY_` without a closing `}` (or with other characters in the name).
    #[error("placeholder at byte {at} is not closed: write ${{ADEPLOY_NAME}}")]
    Unclosed { at: usize },
    /// A known placeholder with no value in this deployment (e.g. no previous
    /// version on the first deployment).
    #[error("placeholder ${{{name}}} has no value in this deployment")]
    Unset { name: String },
}

fn known() -> String {
    PLACEHOLDERS
        .iter()
        .map(|(n, _)| format!("${{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One piece of a text: literal, or a placeholder name (without `${` `}`).
enum Piece<'a> {
    Text(&'a str),
    Name(&'a str),
}

/// Splits `text` into literal pieces and placeholder names.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, PlaceholderError> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find(PREFIX) {
        out.push(Piece::Text(&rest[..i]));
        let after = &rest[i + 2..]; // from `ADEPLOY_`
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if after.as_bytes().get(len) != Some(&b'}') {
            return Err(PlaceholderError::Unclosed { at: offset + i });
        }
        let name = &after[..len];
        if !PLACEHOLDERS.iter().any(|(n, _)| *n == name) {
            return Err(PlaceholderError::Unknown {
                name: name.to_string(),
            });
        }
        out.push(Piece::Name(name));
        let consumed = i + 2 + len + 1;
        rest = &rest[consumed..];
        offset += consumed;
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The placeholder names `text` uses, in order (repeats included); an error
/// for an unknown or malformed one. For validating config text up front.
pub fn used(text: &str) -> Result<Vec<&str>, PlaceholderError> {
    Ok(pieces(text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Name(n) => Some(n),
            Piece::Text(_) => None,
        })
        .collect())
}

/// `text` with every placeholder replaced by `value(name)`; an error names
/// the first unknown, malformed or unset (`None`) one. Values are inserted
/// as they are: quoting them for the query language is the text's business
/// (`version="${ADEPLOY_VERSION}"`).
pub fn substitute<'v>(
    text: &str,
    value: impl Fn(&str) -> Option<&'v str>,
) -> Result<String, PlaceholderError> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Name(name) => {
                out.push_str(value(name).ok_or_else(|| PlaceholderError::Unset {
                    name: name.to_string(),
                })?)
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str) -> Option<&'static str> {
        match name {
            "ADEPLOY_VERSION" => Some("1.4.2"),
            "ADEPLOY_SERVICE" => Some("api"),
            _ => None,
        }
    }

    #[test]
    fn known_placeholders_are_replaced_and_the_rest_is_left_alone() {
        let q = r#"rate(x{job="${ADEPLOY_SERVICE}",version="${ADEPLOY_VERSION}"}[1m]) + ${other} + $HOME"#;
        assert_eq!(
            substitute(q, values).unwrap(),
            r#"rate(x{job="api",version="1.4.2"}[1m]) + ${other} + $HOME"#
        );
        assert_eq!(used(q).unwrap(), ["ADEPLOY_SERVICE", "ADEPLOY_VERSION"]);
        assert_eq!(
            substitute("no placeholders", values).unwrap(),
            "no placeholders"
        );
        assert_eq!(substitute("", values).unwrap(), "");
    }

    #[test]
    fn unknown_unclosed_and_unset_are_errors_naming_it() {
        assert_eq!(
            used("x{v=\"${ADEPLOY_VERSON}\"}").unwrap_err(),
            PlaceholderError::Unknown {
                name: "ADEPLOY_VERSON".into()
            }
        );
        assert!(
            used("${ADEPLOY_VERSON}")
                .unwrap_err()
                .to_string()
                .starts_with("unknown placeholder ${ADEPLOY_VERSON} (known: ${ADEPLOY_SERVICE}, ")
        );
        assert_eq!(
            used("ab${ADEPLOY_VERSION").unwrap_err(),
            PlaceholderError::Unclosed { at: 2 }
        );
        assert_eq!(
            used("${ADEPLOY_version}").unwrap_err(),
            PlaceholderError::Unclosed { at: 0 }
        );
        assert_eq!(
            substitute("${ADEPLOY_SERVICE}/${ADEPLOY_PREVIOUS_VERSION}", values).unwrap_err(),
            PlaceholderError::Unset {
                name: "ADEPLOY_PREVIOUS_VERSION".into()
            }
        );
    }
}
