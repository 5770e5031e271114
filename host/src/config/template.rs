//! `${NAME}` placeholders in health-check expectations.
//!
//! A health check proves the *new* version answers when what it expects
//! names this deployment: `expect_body: "deployment=${ADEPLOY_DEPLOYMENT_ID}"`
//! fails against an old instance that still holds the port. Only the
//! variables in [`HEALTH_VARIABLES`] exist (a typo is a config error, not a
//! literal `${ADEPLOY_VERISON}` that can never match), and there is no
//! escape syntax: `$` not followed by `{` is an ordinary character.

/// The variables a health expectation may use, with what they hold.
pub const HEALTH_VARIABLES: [(&str, &str); 3] = [
    ("ADEPLOY_DEPLOYMENT_ID", "the deployment's id"),
    (
        "ADEPLOY_VERSION",
        "the service's version (`version`, or `--set-version`)",
    ),
    ("ADEPLOY_SERVICE", "the service's name"),
];

/// A text with `${NAME}` placeholders, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(&'static str),
}

impl Template {
    /// Parses `text`. Errors name the problem: an unknown variable (with the
    /// known ones) or a `${` without its `}`.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!(
                    "`${{` without a closing `}}` in {:?}",
                    super::one_line(text)
                ));
            };
            let name = &after[..end];
            let Some((known, _)) = HEALTH_VARIABLES.iter().find(|(n, _)| *n == name) else {
                return Err(format!(
                    "unknown variable ${{{}}} (known: {})",
                    super::one_line(name),
                    HEALTH_VARIABLES
                        .iter()
                        .map(|(n, _)| format!("${{{n}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            pieces.push(Piece::Var(known));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces })
    }

    /// The variables used, in order of first use.
    pub fn variables(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for p in &self.pieces {
            if let Piece::Var(v) = p
                && !out.contains(v)
            {
                out.push(v);
            }
        }
        out
    }

    /// The text with every variable replaced by `lookup(name)` passed
    /// through `escape` (identity for plain text, `regex::escape` for a
    /// regular expression). `Err(name)` for a variable without a value.
    pub fn render(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
        escape: impl Fn(&str) -> String,
    ) -> Result<String, &'static str> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => out.push_str(&escape(&lookup(v).ok_or(*v)?)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "ADEPLOY_DEPLOYMENT_ID" => Some("deploy_1".into()),
            "ADEPLOY_VERSION" => Some("1.2.3".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_are_replaced_and_checked() {
        let t = Template::parse("v=${ADEPLOY_VERSION} id=${ADEPLOY_DEPLOYMENT_ID} $x {y}").unwrap();
        assert_eq!(t.variables(), ["ADEPLOY_VERSION", "ADEPLOY_DEPLOYMENT_ID"]);
        assert_eq!(
            t.render(env, str::to_string).unwrap(),
            "v=1.2.3 id=deploy_1 $x {y}"
        );
        assert_eq!(
            t.render(env, |v| v.replace('.', "\\.")).unwrap(),
            "v=1\\.2\\.3 id=deploy_1 $x {y}"
        );
        let needs_service = Template::parse("${ADEPLOY_SERVICE}").unwrap();
        assert_eq!(
            needs_service.render(env, str::to_string),
            Err("ADEPLOY_SERVICE")
        );

        let err = Template::parse("v=${ADEPLOY_VERISON}").unwrap_err();
        assert_eq!(
            err,
            "unknown variable ${ADEPLOY_VERISON} (known: ${ADEPLOY_DEPLOYMENT_ID}, ${ADEPLOY_VERSION}, ${ADEPLOY_SERVICE})"
        );
        assert!(
            Template::parse("${ADEPLOY_VERSION")
                .unwrap_err()
                .contains("closing")
        );
        assert_eq!(Template::parse("").unwrap().variables(), Vec::<&str>::new());
    }
}
