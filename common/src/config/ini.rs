//! Reading one section of an ini, JSON or YAML file into raw `key = value` entries, as uWSGI 2.0
//! reads them.
//!
//! Ini, per uWSGI: a line whose first non-blank character is `;` or `#` is a comment; there
//! are no inline comments (`master = true ; x` has the value `true ; x`); the key and value
//! are trimmed; a bare key has the empty value (for a flag: true); a value is not unquoted,
//! except that uwsgid, like the old reader, drops one pair of enclosing double quotes.
//! JSON and YAML: the section is an object whose values are strings, numbers, booleans or
//! lists of them (a list is the key repeated).

use std::path::Path;

use super::Error;

/// One `key = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raw {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Which reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ini,
    Json,
    Yaml,
}

impl Format {
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json" | "js") => Format::Json,
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Ini,
        }
    }
}

/// The entries of `section` in `text`. `Ok(None)`: the file has no such section.
pub fn section(text: &str, section: &str, format: Format) -> Result<Option<Vec<Raw>>, Error> {
    match format {
        Format::Ini => ini_section(text, section),
        Format::Json => {
            // Checked as JSON, then read by the YAML reader (JSON is YAML's flow style),
            // which keeps the keys in file order.
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| Error::NotJson(e.to_string()))?;
            let v: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| Error::NotJson(e.to_string()))?;
            structured(v, section)
        }
        Format::Yaml => {
            let v: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| Error::NotYaml(e.to_string()))?;
            structured(v, section)
        }
    }
}

fn ini_section(text: &str, want: &str) -> Result<Option<Vec<Raw>>, Error> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut found = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some((name, _)) = rest.split_once(']') else {
                return Err(Error::UnterminatedHeader {
                    line: n + 1,
                    text: line.to_string(),
                });
            };
            let name = name.trim();
            inside = name == want;
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (line, ""),
        };
        if key.is_empty() {
            return Err(Error::NoKey {
                line: n + 1,
                text: line.to_string(),
            });
        }
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        out.push(Raw {
            key: key.to_string(),
            value: value.to_string(),
            line: n + 1,
        });
    }
    Ok(found.then_some(out))
}

fn structured(v: serde_yaml_ng::Value, want: &str) -> Result<Option<Vec<Raw>>, Error> {
    use serde_yaml_ng::Value;
    let Value::Mapping(top) = v else {
        return Err(Error::TopLevel);
    };
    let Some(sec) = top.get(want) else {
        return Ok(None);
    };
    let Value::Mapping(sec) = sec else {
        return Err(Error::SectionNotObject(want.to_string()));
    };
    let scalar = |k: &str, v: &Value| -> Result<String, Error> {
        Ok(match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            _ => return Err(Error::BadValue(k.to_string())),
        })
    };
    let mut out = Vec::new();
    for (i, (k, v)) in sec.iter().enumerate() {
        let key = match k {
            Value::String(s) => s.clone(),
            other => scalar("key", other)?,
        };
        let values = match v {
            Value::Sequence(items) => items.iter().collect::<Vec<_>>(),
            one => vec![one],
        };
        for item in values {
            out.push(Raw {
                value: scalar(&key, item)?,
                key: key.clone(),
                line: i + 1,
            });
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_rules() {
        let t = "[a]\nx=1\n[uwsgi]\n; c\n  # c\nmaster\nk = v ; not a comment\nq = \"quoted\"\n";
        let s = ini_section(t, "uwsgi").unwrap().unwrap();
        assert_eq!(s[0].key, "master");
        assert_eq!(s[0].value, "");
        assert_eq!(s[1].value, "v ; not a comment");
        assert_eq!(s[2].value, "quoted");
        assert_eq!(s[2].line, 8);
        assert!(ini_section(t, "nope").unwrap().is_none());
        assert!(ini_section("[uwsgi\n", "uwsgi")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        assert!(ini_section("[uwsgi]\n = 3\n", "uwsgi")
            .unwrap_err()
            .to_string()
            .contains("no option name"));
    }

    #[test]
    fn yaml_and_json() {
        let y = "uwsgi:\n  processes: 3\n  env: [A=1, B=2]\n  master: true\n";
        let s = section(y, "uwsgi", Format::Yaml).unwrap().unwrap();
        let kv: Vec<_> = s
            .iter()
            .map(|r| (r.key.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            [
                ("processes", "3"),
                ("env", "A=1"),
                ("env", "B=2"),
                ("master", "true")
            ]
        );
        let j = r#"{"uwsgi": {"processes": 3, "env": ["A=1"]}}"#;
        let s = section(j, "uwsgi", Format::Json).unwrap().unwrap();
        assert_eq!(s.len(), 2);
    }
}
