//! Strict YAML reading for Glyphoxa's configuration and campaign files.
//!
//! Every error names the offending key by its path (`providers.llm.base_url`)
//! and its line and column, so a DM can find and fix it. Unknown keys are
//! rejected by the target types (`#[serde(deny_unknown_fields)]`); duplicate
//! keys, several documents and malformed YAML are errors too.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;

/// Where in a YAML text something is: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line number.
    pub line: u64,
    /// 1-based column number.
    pub column: u64,
}

impl Position {
    /// The position of a value read through [`serde_saphyr::Spanned`]; `None`
    /// when the parser did not know it.
    pub fn of<T>(spanned: &serde_saphyr::Spanned<T>) -> Option<Self> {
        from_location(spanned.referenced)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A YAML file that could not be read into the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Dotted path of the offending key, e.g. `npcs[1].voice.speed`; empty
    /// for errors about the document as a whole.
    pub path: String,
    /// What is wrong, without the position.
    pub message: String,
    /// Where it is wrong, when known.
    pub position: Option<Position>,
}

impl YamlError {
    /// An error about the value at `path`, at `position` if known.
    pub fn new(path: impl Into<String>, message: impl Into<String>, position: Option<Position>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            position,
        }
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(position) = self.position {
            write!(f, " ({position})")?;
        }
        Ok(())
    }
}

impl std::error::Error for YamlError {}

/// How `${NAME}` references in a YAML text are expanded.
#[derive(Debug, Clone, Default)]
pub enum Interpolation {
    /// `$` has no special meaning.
    #[default]
    None,
    /// `${NAME}`, `$NAME` and `${NAME:-default}` are replaced by the value of
    /// `NAME` from this map, an unset name by the empty string (Docker
    /// Compose rules; `$$` is a literal `$`). Works in plain, quoted and
    /// block scalars.
    Variables(HashMap<String, String>),
}

/// Reads one YAML document into `T`, rejecting anything `T` does not
/// describe. An empty document reads as an empty mapping.
pub fn from_str<T: DeserializeOwned>(text: &str, interpolation: Interpolation) -> Result<T, YamlError> {
    let mut options = serde_saphyr::Options::default();
    if let Interpolation::Variables(variables) = interpolation {
        options = options.with_properties(variables);
        options.property_syntax = serde_saphyr::PropertySyntax::DockerCompose;
    }
    let mut failed_at: Option<String> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
            failed_at = Some(err.path().to_string());
            err.into_inner()
        })
    });
    result.map_err(|err| {
        let path = failed_at
            .filter(|path| path != ".")
            .map(|path| path.trim_end_matches(".?").to_string())
            .unwrap_or_default();
        convert_error(path, &err)
    })
}

fn from_location(location: serde_saphyr::Location) -> Option<Position> {
    (location.line() > 0).then(|| Position {
        line: location.line(),
        column: location.column(),
    })
}

fn convert_error(path: String, err: &serde_saphyr::Error) -> YamlError {
    let position = err.location().and_then(from_location);
    let mut message = err.without_snippet().to_string();
    if let Some(position) = position {
        // The parser appends the position in its own words; we keep our own.
        let suffix = format!(" at line {}, column {}", position.line, position.column);
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    YamlError::new(path, message.trim().to_string(), position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        items: Vec<u8>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn unknown_key_names_path_and_line() {
        let err = from_str::<Outer>("inner:\n  name: a\n  colour: red\n", Interpolation::None).unwrap_err();
        assert_eq!(err.path, "inner.colour");
        assert_eq!(err.position, Some(Position { line: 3, column: 3 }));
        assert!(err.message.contains("unknown field `colour`"), "{err}");
        assert_eq!(
            err.to_string(),
            "inner.colour: unknown field `colour`, expected one of name, port (line 3, column 3)"
        );
    }

    #[test]
    fn wrong_type_names_path_and_line() {
        let err = from_str::<Outer>("items: [1, 2, 300]\n", Interpolation::None).unwrap_err();
        assert_eq!(err.path, "items[2]");
        assert_eq!(err.position.map(|p| p.line), Some(1));
    }

    #[test]
    fn empty_document_is_empty_mapping() {
        let parsed = from_str::<Outer>("", Interpolation::None).unwrap();
        assert_eq!(
            parsed,
            Outer {
                inner: None,
                items: vec![]
            }
        );
        let parsed = from_str::<Outer>("# only a comment\n", Interpolation::None).unwrap();
        assert_eq!(parsed.inner, None);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = from_str::<Outer>("inner:\n  name: a\n  name: b\n", Interpolation::None).unwrap_err();
        assert!(err.message.contains("duplicate"), "{err}");
        assert_eq!(err.position.map(|p| p.line), Some(3));
    }

    #[test]
    fn malformed_yaml_is_an_error_not_a_panic() {
        for text in [
            "inner: [1, 2\n",
            "inner:\n  name: \"unterminated\n",
            "\t- x\n",
            ": :\n",
            "inner: {name: a}\n---\ninner: {name: b}\n",
        ] {
            assert!(from_str::<Outer>(text, Interpolation::None).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn interpolation_expands_set_and_unset_variables() {
        let mut vars = HashMap::new();
        vars.insert("NAME".to_string(), "grimble: #1".to_string());
        vars.insert("PORT".to_string(), "8080".to_string());
        let text = "inner:\n  name: \"${NAME}/${UNSET}x\"\n  port: ${PORT}\n";
        let parsed = from_str::<Outer>(text, Interpolation::Variables(vars)).unwrap();
        assert_eq!(
            parsed.inner,
            Some(Inner {
                name: "grimble: #1/x".into(),
                port: 8080
            })
        );
    }

    #[test]
    fn without_interpolation_dollar_is_literal() {
        let parsed = from_str::<Outer>("inner:\n  name: ${NAME}\n", Interpolation::None).unwrap();
        assert_eq!(parsed.inner.unwrap().name, "${NAME}");
    }
}
