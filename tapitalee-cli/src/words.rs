//! The product document's `key=value` words (`docker_tag=v1.2.3 process=worker`): one small
//! parser, refusing unknown keys (with a did-you-mean), malformed words and repeated keys
//! before anything changes.

use std::collections::BTreeMap;

use crate::exit::CliError;

/// The words a command was given, by key. Keys are the command's own, validated.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Words {
    values: BTreeMap<&'static str, String>,
}

impl Words {
    /// Parses `words` against the keys `command` accepts.
    pub fn parse(
        command: &str,
        keys: &[&'static str],
        words: &[String],
    ) -> Result<Words, CliError> {
        let valid = || {
            if keys.is_empty() {
                format!("`tapit {command}` takes no key=value parameters")
            } else {
                format!("valid keys for `tapit {command}`: {}", keys.join(", "))
            }
        };
        let mut values = BTreeMap::new();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                let hint = match closest(word, keys) {
                    Some(k) => format!("; did you mean `{k}={word}`?"),
                    None => String::new(),
                };
                return Err(CliError::usage(format!(
                    "malformed parameter {word:?}: parameters are key=value words{hint}\n{}",
                    valid()
                )));
            };
            let Some(&known) = keys.iter().find(|k| **k == key) else {
                let hint = match closest(key, keys) {
                    Some(k) => format!(" (did you mean `{k}`?)"),
                    None => String::new(),
                };
                return Err(CliError::usage(format!(
                    "unknown parameter `{key}`{hint}\n{}",
                    valid()
                )));
            };
            if value.is_empty() {
                return Err(CliError::usage(format!(
                    "parameter `{key}` has no value: write {key}=VALUE"
                )));
            }
            if values.insert(known, value.to_owned()).is_some() {
                return Err(CliError::usage(format!(
                    "parameter `{key}` is given twice; give it once"
                )));
            }
        }
        Ok(Words { values })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key` converted by `parse`, whose error becomes a usage error naming the
    /// key.
    pub fn parsed<T, E: std::fmt::Display>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, CliError> {
        self.get(key)
            .map(|v| parse(v).map_err(|e| CliError::usage(format!("bad value for `{key}`: {e}"))))
            .transpose()
    }

    /// The deployment named by `id=`, if given. A malformed id is a usage error that says where
    /// ids are listed.
    pub fn deployment_id(&self) -> Result<Option<tapitalee::DeploymentId>, CliError> {
        self.parsed("id", |s: &str| {
            s.parse::<tapitalee::DeploymentId>()
                .map_err(|e| format!("{e} (`tapit list deploys` lists the app's deployments)"))
        })
    }

    /// The value of `key`, which must be one of `choices`.
    pub fn choice(
        &self,
        key: &str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, CliError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        if let Some(c) = choices.iter().find(|c| **c == v) {
            return Ok(Some(c));
        }
        let hint = match closest(v, choices) {
            Some(c) => format!(" (did you mean `{c}`?)"),
            None => String::new(),
        };
        Err(CliError::usage(format!(
            "bad value for `{key}`: {v:?}{hint}; expected one of: {}",
            choices.join(", ")
        )))
    }
}

/// The candidate closest to `word` by edit distance, if close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1) || c.starts_with(&word) && word.len() >= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["docker_tag", "initiator", "process"];

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_known_keys() {
        let w = Words::parse(
            "create deploy",
            KEYS,
            &words(&["docker_tag=v1.2.3", "process=web"]),
        )
        .unwrap();
        assert_eq!(w.get("docker_tag"), Some("v1.2.3"));
        assert_eq!(w.get("process"), Some("web"));
        assert_eq!(w.get("initiator"), None);
    }

    #[test]
    fn values_may_contain_equals() {
        let w = Words::parse("x", KEYS, &words(&["initiator=a=b"])).unwrap();
        assert_eq!(w.get("initiator"), Some("a=b"));
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let e = Words::parse("create deploy", KEYS, &words(&["dockr_tag=v1"])).unwrap_err();
        assert_eq!(e.code(), 2);
        let m = e.to_string();
        assert!(
            m.contains("unknown parameter `dockr_tag` (did you mean `docker_tag`?)"),
            "{m}"
        );
        assert!(m.contains("docker_tag, initiator, process"), "{m}");
    }

    #[test]
    fn malformed_and_repeated_and_empty_are_refused() {
        for bad in [&["v1.2.3"][..], &["process=a", "process=b"], &["process="]] {
            let e = Words::parse("create deploy", KEYS, &words(bad)).unwrap_err();
            assert_eq!(e.code(), 2, "{bad:?}");
        }
        let e = Words::parse("create deploy", KEYS, &words(&["process"])).unwrap_err();
        assert!(e.to_string().contains("did you mean `process=process`?"));
    }

    #[test]
    fn choices_suggest() {
        let w = Words::parse("x", &["strategy"], &words(&["strategy=canery"])).unwrap();
        let e = w
            .choice("strategy", &["rolling", "blue-green", "canary"])
            .unwrap_err();
        assert!(e.to_string().contains("did you mean `canary`?"), "{e}");
    }

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("zzzzzz", KEYS), None);
    }
}
