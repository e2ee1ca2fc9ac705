//! DynamoDB attribute unmarshalling (`playlake-dynamodb`'s `attribute.rs`) and the
//! playback mapping (`mapping.rs`) applied to the resulting image.
//!
//! Input: an arbitrary item, built from a mirror of `Attribute` that derives
//! `Arbitrary` (numbers mostly shaped like DynamoDB's: up to 38 significant digits,
//! exponents around -130..126, sometimes any text).
//!
//! Invariants: never panics; `N` keeps every digit: it becomes either a JSON number
//! whose decimal value equals the input's exactly, or the input text itself; `S`, `B`
//! (base64), `BOOL`, `NULL`, `SS`, `NS`, `BS`, `L` and `M` map to the JSON they must,
//! maps with sorted keys; `item_to_json` does not depend on the order of the item's
//! attributes; the mapping of the item either gives a valid event or a reason.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use playlake_fuzz::attribute::{item_to_json, number_to_json, to_json, Attribute};
use playlake_fuzz::mapping::{map_change, EpochUnit, Mapped, MappingConfig};
use playlake_schemas::{ChangeEvent, ChangeEventName, TimestampMs};
use serde_json::Value;

/// DynamoDB nests documents at most 32 levels deep.
const MAX_DEPTH: usize = 32;

#[derive(Arbitrary, Debug)]
enum Mirror {
    S(String),
    N(Num),
    B(Vec<u8>),
    Bool(bool),
    Null,
    M(Vec<(String, Mirror)>),
    L(Vec<Mirror>),
    Ss(Vec<String>),
    Ns(Vec<Num>),
    Bs(Vec<Vec<u8>>),
}

/// A number as DynamoDB would send it, or any text.
#[derive(Arbitrary, Debug)]
enum Num {
    Shaped {
        negative: bool,
        int: Vec<Digit>,
        frac: Option<Vec<Digit>>,
        exp: Option<(bool, i16)>,
        space: bool,
    },
    Integer(i128),
    Float(f64),
    Text(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Digit(u8);

impl Num {
    fn text(&self) -> String {
        match self {
            Num::Shaped {
                negative,
                int,
                frac,
                exp,
                space,
            } => {
                let digits = |d: &[Digit]| -> String {
                    d.iter()
                        .take(40)
                        .map(|d| char::from(b'0' + d.0 % 10))
                        .collect()
                };
                let mut s = String::new();
                if *space {
                    s.push(' ');
                }
                if *negative {
                    s.push('-');
                }
                let int = digits(int);
                s.push_str(if int.is_empty() { "0" } else { &int });
                if let Some(frac) = frac {
                    s.push('.');
                    s.push_str(&digits(frac));
                }
                if let Some((upper, e)) = exp {
                    s.push(if *upper { 'E' } else { 'e' });
                    s.push_str(&(e % 200).to_string());
                }
                s
            }
            Num::Integer(i) => i.to_string(),
            Num::Float(f) => f.to_string(),
            Num::Text(t) => t.clone(),
        }
    }
}

impl Mirror {
    fn build(&self, depth: usize) -> Attribute {
        let deeper = |m: &Mirror| {
            if depth >= MAX_DEPTH {
                Attribute::Null
            } else {
                m.build(depth + 1)
            }
        };
        match self {
            Mirror::S(s) => Attribute::S(s.clone()),
            Mirror::N(n) => Attribute::N(n.text()),
            Mirror::B(b) => Attribute::B(b.clone()),
            Mirror::Bool(b) => Attribute::Bool(*b),
            Mirror::Null => Attribute::Null,
            Mirror::M(entries) => Attribute::M(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), deeper(v)))
                    .collect(),
            ),
            Mirror::L(items) => Attribute::L(items.iter().map(deeper).collect()),
            Mirror::Ss(items) => Attribute::Ss(items.clone()),
            Mirror::Ns(items) => Attribute::Ns(items.iter().map(Num::text).collect()),
            Mirror::Bs(items) => Attribute::Bs(items.clone()),
        }
    }
}

/// A decimal value in canonical form (sign, digits without leading/trailing zeros,
/// power of ten of the last digit), written independently of `attribute.rs`.
#[derive(Debug, PartialEq, Eq)]
struct Canonical {
    negative: bool,
    digits: String,
    exponent: i128,
}

fn canonical(text: &str) -> Option<Canonical> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i128>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    let digits = significant.trim_end_matches('0');
    if digits.is_empty() {
        return Some(Canonical {
            negative: false,
            digits: String::new(),
            exponent: 0,
        });
    }
    let exponent = exp - frac.len() as i128 + (significant.len() - digits.len()) as i128;
    Some(Canonical {
        negative,
        digits: digits.to_owned(),
        exponent,
    })
}

fn check_number(text: &str, json: &Value) {
    match json {
        Value::Number(n) => {
            let want = canonical(text)
                .unwrap_or_else(|| panic!("{text:?} became the number {n} but is no decimal"));
            let got = canonical(&n.to_string()).expect("JSON numbers are decimals");
            assert_eq!(got, want, "{text:?} became {n}: a digit was lost");
            // A reader parsing the JSON text as a double gets the same value too.
            if let (Some(f), Ok(g)) = (n.as_f64(), text.trim().parse::<f64>()) {
                if n.is_f64() {
                    assert_eq!(f, g, "{text:?}");
                }
            }
        }
        Value::String(s) => assert_eq!(s, text.trim(), "a number kept as text must be verbatim"),
        other => panic!("{text:?} became {other}"),
    }
}

fn check(attr: &Attribute, json: &Value) {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match (attr, json) {
        (Attribute::S(s), Value::String(j)) => assert_eq!(s, j),
        (Attribute::N(n), j) => check_number(n, j),
        (Attribute::B(b), Value::String(j)) => assert_eq!(&b64(b), j),
        (Attribute::Bool(b), Value::Bool(j)) => assert_eq!(b, j),
        (Attribute::Null, Value::Null) => {}
        (Attribute::M(entries), Value::Object(j)) => {
            // Duplicate names (impossible in DynamoDB) keep one of the values.
            let names: std::collections::BTreeSet<&String> = entries.iter().map(|e| &e.0).collect();
            assert_eq!(names.len(), j.len());
            assert!(
                j.keys().zip(j.keys().skip(1)).all(|(a, b)| a < b),
                "sorted keys"
            );
            for (name, value) in entries {
                if entries.iter().filter(|e| &e.0 == name).count() == 1 {
                    check(value, &j[name]);
                }
            }
        }
        (Attribute::L(items), Value::Array(j)) => {
            assert_eq!(items.len(), j.len());
            items.iter().zip(j).for_each(|(a, v)| check(a, v));
        }
        (Attribute::Ss(items), Value::Array(j)) => {
            assert_eq!(items.len(), j.len());
            for (s, v) in items.iter().zip(j) {
                assert_eq!(Some(s.as_str()), v.as_str());
            }
        }
        (Attribute::Ns(items), Value::Array(j)) => {
            assert_eq!(items.len(), j.len());
            items.iter().zip(j).for_each(|(n, v)| check_number(n, v));
        }
        (Attribute::Bs(items), Value::Array(j)) => {
            assert_eq!(items.len(), j.len());
            for (b, v) in items.iter().zip(j) {
                assert_eq!(Some(b64(b).as_str()), v.as_str());
            }
        }
        (a, j) => panic!("{a:?} became {j}"),
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    item: Vec<(String, Mirror)>,
    /// Which attribute names the mapping reads (indexes into the item, or fixed names).
    uuid: u8,
    stream_id: u8,
    position_end: Option<u8>,
    event_time: Option<u8>,
    seconds: bool,
    approximate_creation_time_ms: i64,
}

fuzz_target!(|data: &[u8]| {
    // The whole input as one `N` value's text, as a stream record could carry it.
    if let Ok(text) = std::str::from_utf8(data) {
        check_number(text, &number_to_json(text));
    }
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    let item: Vec<(String, Attribute)> = input
        .item
        .iter()
        .map(|(k, v)| (k.clone(), v.build(0)))
        .collect();
    for (_, attr) in &item {
        check(attr, &to_json(attr));
    }
    let json = item_to_json(item.iter().map(|(k, v)| (k, v)));
    let reversed = item_to_json(item.iter().rev().map(|(k, v)| (k, v)));
    let unique: std::collections::BTreeSet<&String> = item.iter().map(|e| &e.0).collect();
    if unique.len() == item.len() {
        assert_eq!(json.to_string(), reversed.to_string(), "order-independent");
        for (name, attr) in &item {
            check(attr, &json[name]);
        }
    }

    // The playback mapping over the unmarshalled image.
    let name = |i: u8| -> String {
        item.get(usize::from(i))
            .map(|e| e.0.clone())
            .unwrap_or_else(|| format!("a{i}"))
    };
    let config = MappingConfig {
        uuid: name(input.uuid),
        stream_id: name(input.stream_id),
        user_id: None,
        event_type: None,
        default_event_type: None,
        event_time: input.event_time.map(name),
        event_time_unit: if input.seconds {
            EpochUnit::Seconds
        } else {
            EpochUnit::Milliseconds
        },
        position_start: None,
        position_end: input.position_end.map(name),
        event_id: None,
    };
    let change = ChangeEvent {
        table: "t".into(),
        event_id: "ev".into(),
        event_name: ChangeEventName::Insert,
        sequence_number: Some("1".into()),
        shard_id: Some("s".into()),
        approximate_creation_time: TimestampMs(input.approximate_creation_time_ms),
        keys: Value::Object(Default::default()),
        new_image: Some(json),
        old_image: None,
        ttl_expired: false,
        snapshot: false,
    };
    match map_change(&change, &config) {
        Mapped::Event(e) => assert_eq!(e.event_id, "ev"),
        Mapped::Invalid(reason) => {
            // `<reason_code>: <message>`, like the processor's DLQ reasons.
            let code = reason.split(':').next().unwrap_or_default();
            assert!(
                playlake_schemas::InvalidEvent::REASON_CODES.contains(&code),
                "{reason}"
            );
        }
        Mapped::Skip => panic!("an INSERT is never skipped"),
    }
});
