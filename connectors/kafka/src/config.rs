//! Client configuration shared by every Kafka client playlake creates.
//!
//! A [`KafkaConfig`] holds the brokers, the client id and the operator's
//! `--kafka-option key=value` pass-through (SASL, TLS, timeouts). The producer, the
//! consumers and the admin client all start from [`KafkaConfig::client_config`], then
//! add the settings playlake's delivery guarantees rest on (idempotence, manual
//! offsets, partition EOF). Those settings are *reserved*: an option that tries to
//! override one is refused when it is parsed, with the reason, so that a typo in a
//! deployment cannot quietly turn exactly-once into at-most-once.
//!
//! Secret values (`sasl.password`, `ssl.key.password`, ...) never leave this module
//! in clear text: `Debug` and [`KafkaConfig::redacted_options`] replace them.

use std::fmt;
use std::str::FromStr;

use rdkafka::ClientConfig;

use crate::error::KafkaError;

/// The placeholder that replaces a secret value in `Debug` output and logs.
pub const REDACTED: &str = "[redacted]";

/// Settings playlake sets itself and an operator may not override, with the reason.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set the brokers with --brokers / PLAYLAKE_BROKERS instead"),
    ("metadata.broker.list", "set the brokers with --brokers / PLAYLAKE_BROKERS instead"),
    ("client.id", "playlake names each client after its stage"),
    ("group.id", "each stage chooses its own consumer group"),
    (
        "enable.auto.commit",
        "input positions live in the stage's checkpoint; group offsets are committed only after a checkpoint, as advisory lag markers",
    ),
    (
        "enable.auto.offset.store",
        "offsets are stored explicitly after a checkpoint, never on delivery",
    ),
    (
        "enable.partition.eof",
        "drain mode detects the end of a partition from librdkafka's partition EOF",
    ),
    (
        "enable.idempotence",
        "the idempotent producer keeps retries from duplicating or reordering records",
    ),
    ("acks", "records are acknowledged only once every in-sync replica has them (acks=all)"),
    (
        "request.required.acks",
        "records are acknowledged only once every in-sync replica has them (acks=all)",
    ),
    (
        "partitioner",
        "keys must land where playlake_transport::partition_for_key says (murmur2_random)",
    ),
    (
        "transactional.id",
        "playlake's exactly-once does not use Kafka transactions (see DESIGN.md)",
    ),
];

/// Substrings of option names whose values are secrets.
const SECRET_MARKERS: &[&str] = &[
    "password",
    "secret",
    "jaas",
    "key.pem",
    "oauthbearer.config",
];

/// Whether the value of this option is a secret that must not be logged.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|marker| key.contains(marker))
}

/// One `--kafka-option key=value` pass-through setting, already validated.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOption {
    pub key: String,
    pub value: String,
}

impl KafkaOption {
    /// Parses and validates `key=value`: the key must be non-empty and not one of the
    /// settings playlake's guarantees depend on.
    pub fn parse(option: &str) -> Result<Self, KafkaError> {
        let Some((key, value)) = option.split_once('=') else {
            return Err(KafkaError::InvalidOption {
                // Without '=' the whole text might be a secret pasted in the wrong place.
                option: redact_unparsed(option),
                reason: "expected key=value, for example --kafka-option security.protocol=SASL_SSL"
                    .to_string(),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(KafkaError::InvalidOption {
                option: format!("={}", redact_value(key, value)),
                reason: "the key before '=' is empty; write it as librdkafka names it, for example sasl.mechanism=PLAIN".to_string(),
            });
        }
        Self::new(key, value)
    }

    /// Validates an option given as a separate key and value (from a config file).
    pub fn new(key: &str, value: &str) -> Result<Self, KafkaError> {
        let key = key.trim();
        if let Some((_, reason)) = RESERVED
            .iter()
            .find(|(reserved, _)| reserved.eq_ignore_ascii_case(key))
        {
            return Err(KafkaError::ReservedOption {
                key: key.to_string(),
                reason: (*reason).to_string(),
            });
        }
        Ok(Self {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// The value as it may appear in logs.
    pub fn display_value(&self) -> &str {
        redact_value(&self.key, &self.value)
    }
}

impl FromStr for KafkaOption {
    type Err = KafkaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for KafkaOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.display_value())
    }
}

impl fmt::Display for KafkaOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

fn redact_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        REDACTED
    } else {
        value
    }
}

fn redact_unparsed(option: &str) -> String {
    if is_secret(option) {
        REDACTED.to_string()
    } else {
        option.to_string()
    }
}

/// How to reach the Kafka cluster: shared by the producer, the consumers and the
/// admin client.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` bootstrap brokers (`--brokers`).
    pub brokers: String,
    /// Names the clients in broker logs and quotas; stages append their role.
    pub client_id: String,
    /// Validated `--kafka-option` settings (SASL, TLS, tuning), applied in order.
    pub options: Vec<KafkaOption>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "playlake".to_string(),
            options: Vec::new(),
        }
    }

    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Adds `--kafka-option` settings given as `key=value` text.
    pub fn with_options<I, S>(mut self, options: I) -> Result<Self, KafkaError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for option in options {
            self.options.push(KafkaOption::parse(option.as_ref())?);
        }
        Ok(self)
    }

    /// Adds one already-split option (from a config file).
    pub fn with_option(mut self, key: &str, value: &str) -> Result<Self, KafkaError> {
        self.options.push(KafkaOption::new(key, value)?);
        Ok(self)
    }

    /// Checks what can be checked without a broker.
    pub fn validate(&self) -> Result<(), KafkaError> {
        if self.brokers.trim().is_empty() {
            return Err(KafkaError::InvalidOption {
                option: "--brokers".to_string(),
                reason: "no brokers given; pass --brokers host:port or set PLAYLAKE_BROKERS"
                    .to_string(),
            });
        }
        Ok(())
    }

    /// `key=value` pairs safe to log.
    pub fn redacted_options(&self) -> Vec<String> {
        self.options.iter().map(ToString::to_string).collect()
    }

    /// The base librdkafka configuration: brokers, client id, pass-through options.
    /// `role` is appended to the client id (`playlake-producer`).
    pub(crate) fn client_config(&self, role: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("{}-{role}", self.client_id));
        for option in &self.options {
            config.set(&option.key, &option.value);
        }
        config
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("options", &self.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value() {
        let option = KafkaOption::parse("security.protocol=SASL_SSL").unwrap();
        assert_eq!(option.key, "security.protocol");
        assert_eq!(option.value, "SASL_SSL");
        // The value may itself contain '='.
        let option = KafkaOption::parse("sasl.oauthbearer.extensions=a=b").unwrap();
        assert_eq!(option.value, "a=b");
    }

    #[test]
    fn rejects_missing_equals_with_a_hint() {
        let err = KafkaOption::parse("security.protocol").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("security.protocol"), "{text}");
        assert!(text.contains("key=value"), "{text}");
    }

    #[test]
    fn rejects_empty_key() {
        let err = KafkaOption::parse("=x").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn refuses_reserved_settings_with_reason() {
        for key in [
            "enable.auto.commit",
            "ENABLE.AUTO.OFFSET.STORE",
            "enable.idempotence",
            "acks",
            "partitioner",
            "group.id",
        ] {
            let err = KafkaOption::parse(&format!("{key}=false")).unwrap_err();
            assert!(
                matches!(err, KafkaError::ReservedOption { .. }),
                "{key}: {err}"
            );
            assert!(err.to_string().contains("cannot be overridden"), "{err}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let config = KafkaConfig::new("localhost:9092")
            .with_options([
                "sasl.password=hunter2",
                "ssl.key.password=s3cr3t",
                "sasl.username=me",
            ])
            .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("sasl.username=me"), "{debug}");
        let logged = config.redacted_options().join(",");
        assert!(!logged.contains("hunter2"), "{logged}");
        // A secret pasted without '=' is not echoed in the error either.
        let err = KafkaOption::parse("sasl.password:hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn client_config_carries_options() {
        let config = KafkaConfig::new("b:9092")
            .with_client_id("test")
            .with_option("socket.timeout.ms", "1000")
            .unwrap();
        let client = config.client_config("producer");
        assert_eq!(client.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(client.get("client.id"), Some("test-producer"));
        assert_eq!(client.get("socket.timeout.ms"), Some("1000"));
    }
}
