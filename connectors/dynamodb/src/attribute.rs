//! DynamoDB attribute values -> plain JSON, without losing a digit.
//!
//! Data flow: both AWS SDKs (DynamoDB for the backfill's Scan, DynamoDB Streams for
//! stream records) have their own `AttributeValue` type; the I/O layer converts either
//! into [`Attribute`], and [`to_json`] turns that into the JSON the change events
//! carry (`keys`, `new_image`, `old_image`). Keeping this pure makes every type
//! testable without a network.
//!
//! The rules (also in `schemas/json/change_event.schema.json`):
//! - `S` -> string, `BOOL` -> boolean, `NULL` -> null, `M` -> object, `L` -> array;
//! - `B` -> base64 string (standard alphabet, padded), `BS` -> array of those;
//! - `SS` -> array of strings, `NS` -> array of numbers by the rule below;
//! - `N` -> a JSON number when an `i64` or `u64` holds it, or when an `f64` reads
//!   back as the same decimal value (so a reader parsing doubles gets exactly the
//!   stored number); otherwise the decimal string as DynamoDB gave it. DynamoDB
//!   numbers have up to 38 significant digits, which no double holds.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

/// One DynamoDB attribute value, independent of the SDK it came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Attribute {
    S(String),
    /// The decimal text, as DynamoDB sends it.
    N(String),
    B(Vec<u8>),
    Bool(bool),
    Null,
    M(Vec<(String, Attribute)>),
    L(Vec<Attribute>),
    Ss(Vec<String>),
    Ns(Vec<String>),
    Bs(Vec<Vec<u8>>),
}

/// A whole item or key (attribute name -> value) as a JSON object.
pub fn item_to_json<'a, I>(attributes: I) -> Value
where
    I: IntoIterator<Item = (&'a String, &'a Attribute)>,
{
    let mut entries: Vec<(&String, &Attribute)> = attributes.into_iter().collect();
    // The SDKs hand items over as hash maps; sorting makes the JSON text (and so the
    // bytes on Kafka) the same for every copy of one change.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Value::Object(
        entries
            .into_iter()
            .map(|(name, value)| (name.clone(), to_json(value)))
            .collect::<Map<String, Value>>(),
    )
}

/// One attribute as plain JSON.
pub fn to_json(attribute: &Attribute) -> Value {
    match attribute {
        Attribute::S(s) => Value::String(s.clone()),
        Attribute::N(n) => number_to_json(n),
        Attribute::B(b) => Value::String(base64_encode(b)),
        Attribute::Bool(b) => Value::Bool(*b),
        Attribute::Null => Value::Null,
        Attribute::M(entries) => {
            let mut sorted: Vec<&(String, Attribute)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                sorted
                    .into_iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
            )
        }
        Attribute::L(items) => Value::Array(items.iter().map(to_json).collect()),
        Attribute::Ss(items) => Value::Array(items.iter().cloned().map(Value::String).collect()),
        Attribute::Ns(items) => Value::Array(items.iter().map(|n| number_to_json(n)).collect()),
        Attribute::Bs(items) => Value::Array(
            items
                .iter()
                .map(|b| Value::String(base64_encode(b)))
                .collect(),
        ),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A DynamoDB number as JSON: a number when that is exact, else the decimal string.
pub fn number_to_json(text: &str) -> Value {
    let trimmed = text.trim();
    if let Ok(i) = trimmed.parse::<i64>() {
        return Value::Number(Number::from(i));
    }
    if let Ok(u) = trimmed.parse::<u64>() {
        return Value::Number(Number::from(u));
    }
    if let (Ok(f), Some(wanted)) = (trimmed.parse::<f64>(), Decimal::parse(trimmed)) {
        // The JSON text of a double is the shortest text that reads back as `f`, as
        // serde_json writes it; when that is the same decimal value as the input, the
        // text keeps every digit and a double reader loses nothing. (When two
        // shortest texts exist, serde_json's choice may differ from `{f:e}`'s, so the
        // check must use serde_json's.)
        if let Some(n) = Number::from_f64(f) {
            if Decimal::parse(&n.to_string()) == Some(wanted) {
                // Whole numbers written with an exponent (`1.5E3`) stay integers.
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    return Value::Number(Number::from(f as i64));
                }
                return Value::Number(n);
            }
        }
    }
    Value::String(trimmed.to_string())
}

/// A decimal number in canonical form: sign, significant digits without leading or
/// trailing zeros, and the power of ten of the last digit. Zero is `digits` empty.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let all = format!("{int_part}{frac_part}");
        let exponent = exp.checked_sub(i64::try_from(frac_part.len()).ok()?)?;
        let leading = all.trim_start_matches('0');
        let digits = leading.trim_end_matches('0');
        let exponent = exponent.checked_add(i64::try_from(leading.len() - digits.len()).ok()?)?;
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits: String::new(),
                exponent: 0,
            });
        }
        Some(Decimal {
            negative,
            digits: digits.to_string(),
            exponent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_keep_every_digit() {
        assert_eq!(number_to_json("42"), json!(42));
        assert_eq!(number_to_json("-7"), json!(-7));
        assert_eq!(
            number_to_json("18446744073709551615"),
            json!(18446744073709551615u64)
        );
        assert_eq!(number_to_json("0.5"), json!(0.5));
        assert_eq!(number_to_json("0.1"), json!(0.1));
        assert_eq!(number_to_json("1.5E3"), json!(1500));
        assert_eq!(number_to_json("-0"), json!(0));
        assert_eq!(number_to_json("1e-130"), json!(1e-130));
        // 38 significant digits: no double holds this.
        let big = "12345678901234567890123456789012345678";
        assert_eq!(number_to_json(big), json!(big));
        assert_eq!(
            number_to_json("0.12345678901234567890123"),
            json!("0.12345678901234567890123")
        );
        assert_eq!(
            number_to_json("99999999999999999999"),
            json!("99999999999999999999")
        );
        assert_eq!(
            number_to_json("9007199254740993"),
            json!(9007199254740993i64)
        );
        // A very large exponent that a double cannot reach stays text.
        assert_eq!(number_to_json("1E+125"), json!(1e125));
        assert_eq!(number_to_json("1E+400"), json!("1E+400"));
    }

    #[test]
    fn json_text_of_a_double_is_the_decimal_given() {
        // Found by fuzzing (fuzz/corpus/dynamodb_attribute): 999997777773772.3 and
        // ...772.2 both read back as the same double; serde_json writes the latter,
        // which is not the stored number, so it must stay text.
        let text = "9999977777737723E-1";
        let v = number_to_json(text);
        match &v {
            Value::Number(n) => {
                assert_eq!(Decimal::parse(&n.to_string()), Decimal::parse(text), "{n}")
            }
            Value::String(s) => assert_eq!(s, text),
            other => panic!("{other}"),
        }
        // An exponent at the edge of i64 is text, not an overflow.
        assert_eq!(
            number_to_json("10e9223372036854775807"),
            json!("10e9223372036854775807")
        );
        assert_eq!(
            number_to_json("0.1e-9223372036854775808"),
            json!("0.1e-9223372036854775808")
        );
    }

    #[test]
    fn number_json_text_reads_back_exactly() {
        for text in ["3.14159", "1234567.125", "-0.000001", "2.5e-7", "100.0100"] {
            let v = number_to_json(text);
            let back = v.as_f64().unwrap();
            assert_eq!(back, text.parse::<f64>().unwrap(), "{text}");
            assert!(v.is_number(), "{text}");
        }
    }

    #[test]
    fn every_type() {
        let item = vec![
            ("s".to_string(), Attribute::S("héllo".into())),
            ("n".to_string(), Attribute::N("12.5".into())),
            ("b".to_string(), Attribute::B(vec![0, 1, 2, 255])),
            ("t".to_string(), Attribute::Bool(true)),
            ("z".to_string(), Attribute::Null),
            (
                "m".to_string(),
                Attribute::M(vec![
                    ("y".into(), Attribute::N("1".into())),
                    (
                        "x".into(),
                        Attribute::L(vec![Attribute::S("a".into()), Attribute::Null]),
                    ),
                ]),
            ),
            (
                "ss".to_string(),
                Attribute::Ss(vec!["a".into(), "b".into()]),
            ),
            (
                "ns".to_string(),
                Attribute::Ns(vec!["1".into(), "123456789012345678901234567890".into()]),
            ),
            (
                "bs".to_string(),
                Attribute::Bs(vec![b"hi".to_vec(), vec![]]),
            ),
        ];
        let v = item_to_json(item.iter().map(|(k, v)| (k, v)));
        assert_eq!(
            v,
            json!({
                "s": "héllo", "n": 12.5, "b": "AAEC/w==", "t": true, "z": null,
                "m": {"x": ["a", null], "y": 1},
                "ss": ["a", "b"], "ns": [1, "123456789012345678901234567890"],
                "bs": ["aGk=", ""]
            })
        );
        // Object keys come out sorted whatever order the SDK used.
        let text = v.to_string();
        assert!(text.find("\"b\"").unwrap() < text.find("\"bs\"").unwrap());
    }
}
