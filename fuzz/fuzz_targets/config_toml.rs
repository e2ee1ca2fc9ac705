//! Config parsing: TOML text -> the typed, `deny_unknown_fields` config sections of
//! the library crates, then their validation.
//!
//! The `playlake` binary's own `FileConfig` (`pipeline/playlake/src/config.rs`) lives
//! in a binary-only crate whose dependencies include DataFusion, the AWS SDK and
//! rdkafka, and it embeds the sections below; this target fuzzes those sections as
//! they appear in `playlake.toml`: `[processor]` (`ProcessorConfig`),
//! `[source.dynamodb.mapping]` (`MappingConfig`) and the generator's settings
//! (`GeneratorConfig`, what `playlake produce` and the demo use).
//!
//! Invariants: never panics (errors are errors); a section that parses and validates
//! serializes back to TOML that parses and validates to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use playlake_fuzz::mapping::MappingConfig;
use playlake_fuzz::processor_config::{ProcessorConfig, Settings};
use playlake_generator::GeneratorConfig;
use serde::Deserialize;

/// `playlake.toml` with only the sections fuzzed here (its other keys are ignored);
/// `[generator]` is not a real section, it holds `GeneratorConfig`'s fields.
#[derive(Deserialize, Debug)]
struct File {
    processor: Option<ProcessorConfig>,
    source: Option<Source>,
    generator: Option<GeneratorConfig>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Source {
    dynamodb: Option<Dynamo>,
}

#[derive(Deserialize, Debug)]
struct Dynamo {
    mapping: Option<MappingConfig>,
}

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let text = toml::to_string(value).expect("a parsed config serializes");
    toml::from_str(&text).unwrap_or_else(|e| panic!("re-serialized config fails ({e}):\n{text}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<File>(text) else {
        return;
    };
    if let Some(processor) = file.processor {
        if let Ok(settings) = processor.validate() {
            let back: ProcessorConfig = round_trip(&processor);
            assert_eq!(back, processor);
            let settings_back: Settings = round_trip(&settings);
            assert_eq!(settings_back, settings);
        }
    }
    if let Some(mapping) = file.source.and_then(|s| s.dynamodb).and_then(|d| d.mapping) {
        let back: MappingConfig = round_trip(&mapping);
        assert_eq!(back, mapping);
    }
    if let Some(generator) = file.generator {
        if generator.validate().is_ok() {
            let _ = generator.end_time_ms();
            let _ = generator.settled_now_ms();
            let _ = generator.estimated_events();
            let back: GeneratorConfig = round_trip(&generator);
            // NaN fractions fail validation, so equality is meaningful.
            assert_eq!(back, generator);
        }
    }
});
