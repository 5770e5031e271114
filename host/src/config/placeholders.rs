//! `${ADEPLOY_...}` placeholders in config text: metric queries and
//! baselines (`services.<svc>.analysis`) and health-check expectations
//! (`expect_body`, `expect_body_regex`, `expect_headers`). Which names
//! exist, which a text uses, and substituting their values.
//!
//! Why one module: a query, a baseline query and a health expectation must
//! agree on the syntax and on what an unknown or unset name does, or the same
//! `${ADEPLOY_VERSION}` would mean different things in two places of one
//! config. The syntax is deliberately narrow: only `${ADEPLOY_` + capitals,
//! digits and `_` + `}` is a placeholder, so PromQL braces, shell `$VARS`
//! and other templating (`${var}` of a dashboard tool) pass through
//! untouched; a typo in a name (`${ADEPLOY_VERISON}`) is a config error, not
//! a literal that can never match. The values are those of the step's
//! command environment (`exec::command_env`), so what a command sees, what a
//! health check expects and what a query asks for cannot drift apart.

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
        "the fleet host of the step (`localhost` for a local service)",
    ),
    (
        "ADEPLOY_HOST_ADDRESS",
        "the fleet host's address (`127.0.0.1` for a local service)",
    ),
    (
        "ADEPLOY_PORT",
        "a blue-green container's slot port (the new container's)",
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

/// A text with placeholders, checked once (at config load) and rendered per
/// step: the form health expectations use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Owned>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(String),
    Name(&'static str),
}

impl Template {
    /// Parses `text`; an error names an unknown or malformed placeholder.
    pub fn parse(text: &str) -> Result<Template, PlaceholderError> {
        let pieces = pieces(text)?
            .into_iter()
            .filter_map(|p| match p {
                Piece::Text("") => None,
                Piece::Text(t) => Some(Owned::Text(t.to_string())),
                Piece::Name(n) => PLACEHOLDERS
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(k, _)| Owned::Name(k)),
            })
            .collect();
        Ok(Template { pieces })
    }

    /// The placeholder names used, in order of first use.
    pub fn variables(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for p in &self.pieces {
            if let Owned::Name(n) = p
                && !out.contains(n)
            {
                out.push(n);
            }
        }
        out
    }

    /// The text with every placeholder replaced by `lookup(name)` passed
    /// through `escape` (identity for plain text, `regex::escape` for a
    /// regular expression). `Err(name)` for a placeholder without a value.
    pub fn render(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
        escape: impl Fn(&str) -> String,
    ) -> Result<String, &'static str> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Owned::Text(t) => out.push_str(t),
                Owned::Name(n) => out.push_str(&escape(&lookup(n).ok_or(*n)?)),
            }
        }
        Ok(out)
    }
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

    #[test]
    fn templates_render_with_escaping_and_name_what_is_missing() {
        let env = |name: &str| match name {
            "ADEPLOY_DEPLOYMENT_ID" => Some("deploy_1".to_string()),
            "ADEPLOY_VERSION" => Some("1.2.3".to_string()),
            _ => None,
        };
        let t = Template::parse("v=${ADEPLOY_VERSION} id=${ADEPLOY_DEPLOYMENT_ID} $x {y} ${other}")
            .unwrap();
        assert_eq!(t.variables(), ["ADEPLOY_VERSION", "ADEPLOY_DEPLOYMENT_ID"]);
        assert_eq!(
            t.render(env, str::to_string).unwrap(),
            "v=1.2.3 id=deploy_1 $x {y} ${other}"
        );
        assert_eq!(
            t.render(env, |v| v.replace('.', "\\.")).unwrap(),
            "v=1\\.2\\.3 id=deploy_1 $x {y} ${other}"
        );
        let needs = Template::parse("${ADEPLOY_PREVIOUS_VERSION}").unwrap();
        assert_eq!(
            needs.render(env, str::to_string),
            Err("ADEPLOY_PREVIOUS_VERSION")
        );
        assert!(
            Template::parse("v=${ADEPLOY_VERISON}")
                .unwrap_err()
                .to_string()
                .starts_with("unknown placeholder ${ADEPLOY_VERISON} (known: ")
        );
        assert!(matches!(
            Template::parse("${ADEPLOY_VERSION"),
            Err(PlaceholderError::Unclosed { at: 0 })
        ));
        assert_eq!(Template::parse("").unwrap().variables(), Vec::<&str>::new());
    }
}
