//! Validated domain values: names, tags, image references, initiators and deployment ids.
//!
//! Each type can only hold a valid value; parsing one from a string either succeeds or returns
//! [`Error::InvalidInput`] naming the value and the fix.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $validate:path) => {
        $(#[$meta])*
        ///
        /// Cloning is cheap: the text is shared, not copied.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps a value.
            pub fn new(value: impl AsRef<str>) -> Result<Self> {
                let value = value.as_ref();
                $validate(value)?;
                Ok(Self(Arc::from(value)))
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Lowercase DNS-label-like names: apps and processes.
fn validate_label(what: &'static str, value: &str, allow_underscore: bool) -> Result<()> {
    let allowed = if allow_underscore {
        "lowercase letters, digits, '-' and '_'"
    } else {
        "lowercase letters, digits and '-'"
    };
    if value.is_empty() {
        return Err(Error::invalid(
            what,
            value,
            format!("must not be empty; use {allowed}"),
        ));
    }
    if value.len() > 63 {
        return Err(Error::invalid(
            what,
            value,
            format!("is {} characters long; the limit is 63", value.len()),
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Error::invalid(
            what,
            value,
            "must start with a lowercase letter (a-z)",
        ));
    }
    if let Some(bad) = value.chars().find(|&c| {
        !(c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (allow_underscore && c == '_'))
    }) {
        return Err(Error::invalid(
            what,
            value,
            format!("contains {bad:?}; use only {allowed}"),
        ));
    }
    if value.ends_with(['-', '_']) {
        return Err(Error::invalid(what, value, "must not end with '-' or '_'"));
    }
    Ok(())
}

fn validate_app(value: &str) -> Result<()> {
    validate_label("app name", value, false)
}

fn validate_process(value: &str) -> Result<()> {
    validate_label("process name", value, true)
}

fn validate_tag(value: &str) -> Result<()> {
    const WHAT: &str = "docker tag";
    if value.is_empty() {
        return Err(Error::invalid(
            WHAT,
            value,
            "must not be empty; omit it to deploy \"latest\"",
        ));
    }
    if value.len() > 128 {
        return Err(Error::invalid(
            WHAT,
            value,
            format!(
                "is {} characters long; Docker allows at most 128",
                value.len()
            ),
        ));
    }
    if value.starts_with("sha256:") || value.contains("@sha256:") {
        return Err(Error::invalid(
            WHAT,
            value,
            "is an image digest, not a tag; deployments name images by tag (the product's \
             docker_tag), so an untagged image cannot be deployed by its digest: tag it first \
             (`docker tag` and push, or ECR's PutImage with an imageTag), then deploy that tag",
        ));
    }
    let first_ok = value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok {
        return Err(Error::invalid(
            WHAT,
            value,
            "must start with a letter, a digit or '_'",
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Error::invalid(
            WHAT,
            value,
            format!("contains {bad:?}; Docker tags allow only letters, digits, '_', '.' and '-'"),
        ));
    }
    Ok(())
}

fn validate_digest(value: &str) -> Result<()> {
    const WHAT: &str = "image digest";
    let Some((algo, hex)) = value.split_once(':') else {
        return Err(Error::invalid(
            WHAT,
            value,
            "expected \"sha256:<64 hex digits>\"",
        ));
    };
    let expected_len = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(Error::invalid(
                WHAT,
                value,
                format!("unknown algorithm {algo:?}; expected sha256 or sha512"),
            ));
        }
    };
    if hex.len() != expected_len || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(Error::invalid(
            WHAT,
            value,
            format!("expected {expected_len} lowercase hex digits after \"{algo}:\""),
        ));
    }
    Ok(())
}

/// The longest initiator accepted, in characters.
pub const MAX_INITIATOR_LEN: usize = 128;

fn validate_initiator(value: &str) -> Result<()> {
    const WHAT: &str = "initiator";
    if value.trim().is_empty() {
        return Err(Error::invalid(
            WHAT,
            value,
            "must not be blank; name the person or system deploying (e.g. initiator=john.doe)",
        ));
    }
    let len = value.chars().count();
    if len > MAX_INITIATOR_LEN {
        return Err(Error::invalid(
            WHAT,
            value,
            format!("is {len} characters long; the limit is {MAX_INITIATOR_LEN}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(
            WHAT,
            value,
            "contains control characters (newlines, escapes); use plain text",
        ));
    }
    if let Some(c) = value.chars().find(|&c| is_invisible_format(c)) {
        return Err(Error::invalid(
            WHAT,
            value.escape_default().to_string(),
            format!(
                "contains the invisible formatting character U+{:04X} (bidirectional override, \
                 zero-width or similar), which makes an audit line read other than it is; use \
                 plain text",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// Unicode format characters (category Cf) that reorder or hide text: bidirectional
/// embeddings, overrides and isolates, zero-width characters, the soft hyphen, the BOM.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

string_newtype!(
    /// An application name: 1-63 of `a-z`, `0-9`, `-`, starting with a letter.
    AppName,
    validate_app
);
string_newtype!(
    /// A process name (`default`, `worker`, `scheduler`, …): 1-63 of `a-z`, `0-9`, `-`, `_`,
    /// starting with a letter.
    ProcessName,
    validate_process
);
string_newtype!(
    /// A Docker tag, by Docker's grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. Defaults to `latest`.
    DockerTag,
    validate_tag
);
string_newtype!(
    /// A content digest such as `sha256:…` (64 lowercase hex digits).
    Digest,
    validate_digest
);
string_newtype!(
    /// Who or what started a deployment, for the audit trail: free text up to 128 characters,
    /// no control characters.
    Initiator,
    validate_initiator
);

impl Default for DockerTag {
    fn default() -> Self {
        DockerTag(Arc::from("latest"))
    }
}

impl ProcessName {
    /// The web process, `default`.
    pub fn default_process() -> Self {
        ProcessName(Arc::from("default"))
    }
}

impl Initiator {
    /// The initiator recorded when none is given.
    pub fn unknown() -> Self {
        Initiator(Arc::from("unknown"))
    }
}

impl Default for Initiator {
    fn default() -> Self {
        Initiator::unknown()
    }
}

/// A Docker image: repository and tag, and its digest once resolved.
///
/// Parsed from `repository[:tag][@digest]`; a deployment resolves the tag to a digest once,
/// before anything changes, so every process runs the same bytes even if the tag moves.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// Repository, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/myapp`.
    pub repository: String,
    /// The tag.
    pub tag: DockerTag,
    /// The digest, once resolved.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// An unresolved reference.
    pub fn new(repository: impl Into<String>, tag: DockerTag) -> Result<Self> {
        let repository = repository.into();
        validate_repository(&repository)?;
        Ok(ImageRef {
            repository,
            tag,
            digest: None,
        })
    }

    /// The same reference, pinned to a digest.
    #[must_use]
    pub fn with_digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }

    /// `repository@digest` when resolved (what a platform should run), else `repository:tag`.
    pub fn pinned(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{}", self.repository, d),
            None => format!("{}:{}", self.repository, self.tag),
        }
    }
}

fn validate_repository(value: &str) -> Result<()> {
    const WHAT: &str = "image repository";
    if value.is_empty() {
        return Err(Error::invalid(WHAT, value, "must not be empty"));
    }
    if value.len() > 255 {
        return Err(Error::invalid(WHAT, value, "is longer than 255 characters"));
    }
    if let Some(bad) = value.chars().find(|&c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/' | ':'))
    }) {
        return Err(Error::invalid(
            WHAT,
            value,
            format!(
                "contains {bad:?}; repositories use lowercase letters, digits, '.', '_', '-', '/'"
            ),
        ));
    }
    Ok(())
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::new(d)?)),
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag (a ':' before it is a registry port).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], DockerTag::new(&rest[slash + i + 1..])?),
            None => (rest, DockerTag::default()),
        };
        let mut image = ImageRef::new(repo, tag)?;
        image.digest = digest;
        Ok(image)
    }
}

/// A deployment's id: a ULID, so ids sort by creation time and are unique without coordination.
///
/// Ids made in one process are strictly increasing, even within one millisecond (a monotonic
/// generator), so a later deployment always sorts after an earlier one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeploymentId(ulid::Ulid);

impl DeploymentId {
    /// A new id for a deployment starting now, greater than every id made before it in this
    /// process.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        static GENERATOR: std::sync::Mutex<ulid::Generator> =
            std::sync::Mutex::new(ulid::Generator::new());
        let mut generator = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
        // Within a millisecond (or should the clock step back) the generator increments the
        // previous id; it fails only after 2^80 ids in one millisecond.
        DeploymentId(generator.generate().unwrap_or_else(|_| ulid::Ulid::new()))
    }

    /// The wall-clock time the id was created at (millisecond precision).
    pub fn created_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.timestamp_ms())
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("dep-{}", self.0.to_string().to_lowercase()))
    }
}

impl fmt::Debug for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for DeploymentId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let body = s.strip_prefix("dep-").unwrap_or(s);
        ulid::Ulid::from_string(&body.to_uppercase())
            .map(DeploymentId)
            .map_err(|e| {
                Error::invalid(
                    "deployment id",
                    s,
                    format!("{e}; ids look like dep-01jabcdefghjkmnpqrstvwxyz0"),
                )
            })
    }
}

impl Serialize for DeploymentId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeploymentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_and_process_names() {
        assert!(AppName::new("myapp-staging").is_ok());
        assert!(ProcessName::new("default").is_ok());
        assert!(ProcessName::new("web_2").is_ok());
        let e = AppName::new("MyApp").unwrap_err().to_string();
        assert!(e.contains("\"MyApp\"") && e.contains("lowercase"), "{e}");
        assert!(AppName::new("").is_err());
        assert!(AppName::new("a-").is_err());
        assert!(AppName::new("my_app").is_err());
        assert!(AppName::new("a".repeat(64)).is_err());
        assert!(ProcessName::new("9lives").is_err());
    }

    #[test]
    fn docker_tags_follow_docker_grammar() {
        assert_eq!(DockerTag::default().as_str(), "latest");
        for ok in ["v1.2.3-abc123", "_x", "A", &"a".repeat(128)] {
            assert!(DockerTag::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".v1", "-v1", "v1 2", "v1/2", "v1:2", &"a".repeat(129)] {
            assert!(DockerTag::new(bad).is_err(), "{bad}");
        }
        let e = DockerTag::new("v1@x").unwrap_err().to_string();
        assert!(e.contains("'@'"), "{e}");
    }

    #[test]
    fn a_digest_given_as_a_tag_is_refused_naming_the_fix() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for given in [digest.clone(), format!("myapp@{digest}")] {
            let e = DockerTag::new(&given).unwrap_err().to_string();
            assert!(e.contains(&given), "{e}");
            assert!(e.contains("not a tag") && e.contains("tag it first"), "{e}");
        }
    }

    #[test]
    fn initiators_are_bounded_and_plain() {
        assert!(Initiator::new("john.doe").is_ok());
        assert!(Initiator::new("github-actions[bot] (run 42)").is_ok());
        assert!(Initiator::new("  ").is_err());
        assert!(Initiator::new("evil\nlog line").is_err());
        assert!(Initiator::new("\u{1b}[31mred").is_err());
        assert!(Initiator::new("x".repeat(129)).is_err());
        assert!(Initiator::new("é".repeat(128)).is_ok());
        assert!(Initiator::new("José Núñez 山田").is_ok());
    }

    #[test]
    fn initiators_refuse_invisible_reordering_characters() {
        for bad in [
            "\u{202e}eod.nhoj",
            "john\u{200b}.doe",
            "\u{2066}ci\u{2069}",
            "\u{feff}bot",
            "a\u{00ad}b",
        ] {
            let e = Initiator::new(bad).unwrap_err().to_string();
            assert!(e.contains("U+"), "{bad:?}: {e}");
            assert!(
                !e.contains('\u{202e}'),
                "the message must not carry the character: {e}"
            );
        }
    }

    #[test]
    fn image_refs_parse_and_print() {
        let i: ImageRef = "registry.local:5000/team/app:v1".parse().unwrap();
        assert_eq!(i.repository, "registry.local:5000/team/app");
        assert_eq!(i.tag.as_str(), "v1");
        let i: ImageRef = "app".parse().unwrap();
        assert_eq!(i.tag.as_str(), "latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let i: ImageRef = format!("app:v2@{d}").parse().unwrap();
        assert_eq!(i.digest.as_ref().unwrap().as_str(), d);
        assert_eq!(i.pinned(), format!("app@{d}"));
        assert_eq!(i.to_string(), format!("app:v2@{d}"));
        assert!("app@sha256:xyz".parse::<ImageRef>().is_err());
        assert!("App:v1".parse::<ImageRef>().is_err());
    }

    #[test]
    fn deployment_ids_strictly_increase_within_a_millisecond() {
        let ids: Vec<DeploymentId> = (0..10_000).map(|_| DeploymentId::new()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
            assert!(pair[0].to_string() < pair[1].to_string());
        }
        // From several threads at once, too: no two equal, each thread's in order.
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| (0..1_000).map(|_| DeploymentId::new()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let ids = h.join().unwrap();
            assert!(ids.windows(2).all(|p| p[0] < p[1]));
            all.extend(ids);
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4_000);
    }

    #[test]
    fn deployment_ids_sort_by_time_and_round_trip() {
        let a = DeploymentId::new();
        std::thread::sleep(Duration::from_millis(2));
        let b = DeploymentId::new();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        let parsed: DeploymentId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        assert!("dep-nope".parse::<DeploymentId>().is_err());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<DeploymentId>(&json).unwrap(), a);
    }
}
