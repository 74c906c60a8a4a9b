//! Generic request validation against the AgentCore service models.
//!
//! `crates/api/model/*.json` are trimmed copies of botocore's service models (see
//! `scripts/gen-model.py`); validating against them instead of hand-written checks keeps every
//! constraint (lengths, patterns, enums, ranges, required members, unions) exactly as AWS defines it.

use crate::error::{ApiError, FieldError};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

#[derive(Debug, Deserialize)]
struct RawOperations {
    operations: HashMap<String, Operation>,
}

/// How an operation is reached over HTTP.
#[derive(Debug, Deserialize)]
pub struct Http {
    /// HTTP method.
    pub method: String,
    /// Path template, e.g. `/runtimes/{agentRuntimeId}/`.
    #[serde(rename = "requestUri")]
    pub request_uri: String,
    /// Status code of a successful response.
    #[serde(rename = "responseCode", default = "default_code")]
    pub response_code: u16,
}

fn default_code() -> u16 {
    200
}

/// One operation of a service model.
#[derive(Debug, Deserialize)]
pub struct Operation {
    /// Its HTTP binding.
    pub http: Http,
    /// Name of its input shape.
    pub input: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Member {
    shape: String,
    location: Option<String>,
    #[serde(rename = "locationName")]
    location_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Shape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    required: Vec<String>,
    min: Option<f64>,
    max: Option<f64>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    enumeration: Option<Vec<String>>,
    #[serde(default)]
    union: bool,
    #[serde(default)]
    sensitive: bool,
    #[serde(default)]
    members: Vec<(String, Member)>,
    member: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

/// A loaded service model with its patterns compiled.
pub struct Model {
    operations: HashMap<String, Operation>,
    shapes: HashMap<String, Shape>,
    patterns: HashMap<String, Regex>,
    /// Patterns the `regex` crate cannot express (look-around); listed so a test can pin them.
    unsupported_patterns: Vec<String>,
}

/// The control-plane model (`bedrock-agentcore-control`).
pub fn control() -> &'static Model {
    static M: LazyLock<Model> =
        LazyLock::new(|| Model::load(include_str!("../model/bedrock-agentcore-control.json")));
    &M
}

/// The data-plane model (`bedrock-agentcore`).
pub fn data() -> &'static Model {
    static M: LazyLock<Model> =
        LazyLock::new(|| Model::load(include_str!("../model/bedrock-agentcore.json")));
    &M
}

/// AgentCore limits a server may relax for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relax {
    /// Accept lifecycle timeouts below AgentCore's 60 s minimum (down to 1 s).
    pub lifecycle_minimum: bool,
}

/// A value from the path or query string of a request, keyed by its `locationName`.
pub type Params<'a> = &'a [(&'a str, String)];

const MAX_ERRORS: usize = 10;

impl Model {
    fn load(text: &str) -> Self {
        // The embedded models are generated and checked by tests; a failure here is a build defect.
        let raw: Value = serde_json::from_str(text).expect("embedded service model is valid json");
        let mut shapes = HashMap::new();
        let raw_shapes = raw["shapes"].as_object().cloned().unwrap_or_default();
        for (name, mut s) in raw_shapes {
            // Members are kept in declaration order so error lists are stable.
            if let Some(members) = s.get_mut("members").and_then(Value::as_object_mut) {
                let ordered: Vec<Value> = std::mem::take(members)
                    .into_iter()
                    .map(|(k, v)| Value::Array(vec![Value::String(k), v]))
                    .collect();
                s["members"] = Value::Array(ordered);
            }
            let shape: Shape = serde_json::from_value(s).expect("embedded shape is well-formed");
            shapes.insert(name, shape);
        }
        let RawOperations { operations } = serde_json::from_value(serde_json::json!({
            "operations": raw["operations"]
        }))
        .expect("embedded operations are well-formed");
        let mut patterns = HashMap::new();
        let mut unsupported_patterns = Vec::new();
        for s in shapes.values() {
            if let Some(p) = &s.pattern {
                match Regex::new(&format!("^(?:{p})$")) {
                    Ok(re) => {
                        patterns.insert(p.clone(), re);
                    }
                    Err(_) => unsupported_patterns.push(p.clone()),
                }
            }
        }
        unsupported_patterns.sort();
        unsupported_patterns.dedup();
        Model {
            operations,
            shapes,
            patterns,
            unsupported_patterns,
        }
    }

    /// The operation named `op`, if the model has it.
    pub fn operation(&self, op: &str) -> Option<&Operation> {
        self.operations.get(op)
    }

    /// Patterns that are not checked because the regex engine cannot express them.
    pub fn unsupported_patterns(&self) -> &[String] {
        &self.unsupported_patterns
    }

    /// Validates the input of `op` and returns it as one JSON object: body members merged with
    /// the members bound to the path and query string (`params`, keyed by `locationName`).
    pub fn input(&self, op: &str, body: Value, params: Params<'_>) -> Result<Value, ApiError> {
        self.input_with(op, body, params, Relax::default())
    }

    /// The body members of `op`'s input, read from `params` (the query string) instead of a JSON
    /// body. Some operations have two public HTTP bindings: botocore's model sends
    /// `ListDatasets` as `POST /datasets/list` with `maxResults` in the body, while the AWS SDK
    /// for JavaScript v3's newer model sends `GET /datasets?maxResults=..`. A server that answers
    /// both reads the GET form through this, then validates the result with
    /// [`Model::input_with`] like any body. Values are typed by the member's shape (a list takes
    /// every repetition of its key); keys that name no body member, or a structure or map, are
    /// ignored, as unknown query parameters are everywhere.
    pub fn body_from_params(&self, op: &str, params: Params<'_>) -> Result<Value, ApiError> {
        let Some(shape) = self
            .operations
            .get(op)
            .and_then(|o| o.input.as_deref())
            .map(|s| &self.shapes[s])
        else {
            return Ok(Value::Object(Map::new()));
        };
        let mut obj = Map::new();
        let mut errors = Vec::new();
        for (name, member) in &shape.members {
            // A structure or map has no query-string form.
            let flat = !matches!(
                self.shapes[&member.shape].kind.as_str(),
                "structure" | "map"
            );
            if member.location.is_none()
                && flat
                && let Some(v) = self.param_value(name, name, &member.shape, params, &mut errors)
            {
                obj.insert(name.clone(), v);
            }
        }
        if errors.is_empty() {
            Ok(Value::Object(obj))
        } else {
            Err(ApiError::fields(errors))
        }
    }

    /// The value of member `name` (of shape `shape`) from the parameters keyed `loc`, typed by
    /// its shape; `None` when the request has none (or it is malformed, recorded in `errors`).
    fn param_value(
        &self,
        name: &str,
        loc: &str,
        shape: &str,
        params: Params<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Option<Value> {
        let target = &self.shapes[shape];
        let values: Vec<&String> = params
            .iter()
            .filter(|(k, _)| *k == loc)
            .map(|(_, v)| v)
            .collect();
        if values.is_empty() {
            return None;
        }
        Some(match target.kind.as_str() {
            "list" => Value::Array(values.iter().map(|s| Value::String((*s).clone())).collect()),
            "integer" | "long" => match values[0].parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    errors.push(FieldError {
                        name: name.to_owned(),
                        message: format!(
                            "Value '{}' at '{name}' failed to satisfy constraint: Member must be an integer",
                            trunc(values[0])
                        ),
                    });
                    return None;
                }
            },
            "boolean" => Value::Bool(values[0] == "true"),
            _ => Value::String(values[0].clone()),
        })
    }

    /// [`Model::input`] with some of AgentCore's limits relaxed (test servers only).
    pub fn input_with(
        &self,
        op: &str,
        body: Value,
        params: Params<'_>,
        relax: Relax,
    ) -> Result<Value, ApiError> {
        let Some(shape_name) = self.operations.get(op).and_then(|o| o.input.as_deref()) else {
            return Ok(body);
        };
        let Value::Object(mut obj) = body else {
            return Err(ApiError::cannot_parse(
                "the request body must be a JSON object",
            ));
        };
        let shape = &self.shapes[shape_name];
        let mut errors = Vec::new();
        for (name, member) in &shape.members {
            if member.location.as_deref() == Some("uri")
                || member.location.as_deref() == Some("querystring")
            {
                obj.remove(name);
                let loc = member.location_name.as_deref().unwrap_or(name);
                if let Some(v) = self.param_value(name, loc, &member.shape, params, &mut errors) {
                    obj.insert(name.clone(), v);
                }
            }
        }
        let value = Value::Object(obj);
        self.check(shape_name, &value, "", &mut errors, relax);
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::fields(errors))
        }
    }

    /// Checks one value against the model's shape `shape` (lengths, pattern, enum), naming it
    /// `name` in the error: for values that reach Berth outside an operation's modelled input,
    /// such as an invocation's `OAuth2CallbackUrl` header (a `ResourceOauth2ReturnUrlType`).
    pub fn check_shape(&self, shape: &str, name: &str, v: &Value) -> Result<(), ApiError> {
        let mut errors = Vec::new();
        self.check(shape, v, name, &mut errors, Relax::default());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::fields(errors))
        }
    }

    fn check(
        &self,
        shape_name: &str,
        v: &Value,
        path: &str,
        errors: &mut Vec<FieldError>,
        relax: Relax,
    ) {
        if errors.len() >= MAX_ERRORS {
            return;
        }
        let Some(shape) = self.shapes.get(shape_name) else {
            return;
        };
        let mut fail = |msg: String| {
            let shown = if shape.sensitive {
                "Value".to_owned()
            } else {
                match v {
                    Value::String(s) => format!("Value '{}'", trunc(s)),
                    Value::Number(n) => format!("Value '{n}'"),
                    _ => "Value".to_owned(),
                }
            };
            let at = if path.is_empty() { "input" } else { path };
            errors.push(FieldError {
                name: at.to_owned(),
                message: format!("{shown} at '{at}' failed to satisfy constraint: {msg}"),
            });
        };
        match shape.kind.as_str() {
            "structure" => {
                let Some(obj) = v.as_object() else {
                    return fail("Member must be a structure".into());
                };
                self.check_structure(shape, obj, path, errors, relax);
            }
            "string" => {
                let Some(s) = v.as_str() else {
                    return fail("Member must be a string".into());
                };
                let n = s.chars().count() as f64;
                if let Some(min) = shape.min
                    && n < min
                {
                    return fail(format!(
                        "Member must have length greater than or equal to {min}"
                    ));
                }
                if let Some(max) = shape.max
                    && n > max
                {
                    return fail(format!(
                        "Member must have length less than or equal to {max}"
                    ));
                }
                if let Some(e) = &shape.enumeration
                    && !e.iter().any(|x| x == s)
                {
                    return fail(format!(
                        "Member must satisfy enum value set: [{}]",
                        e.join(", ")
                    ));
                }
                if let Some(p) = &shape.pattern
                    && let Some(re) = self.patterns.get(p)
                    && !re.is_match(s)
                {
                    fail(format!(
                        "Member must satisfy regular expression pattern: {p}"
                    ));
                }
            }
            "integer" | "long" => {
                let Some(n) = v.as_i64() else {
                    return fail("Member must be an integer".into());
                };
                let relaxed =
                    relax.lifecycle_minimum && shape_name.starts_with("LifecycleConfiguration");
                if let Some(min) = shape.min
                    && (n as f64) < min
                    && !(relaxed && n >= 1)
                {
                    return fail(format!(
                        "Member must have value greater than or equal to {min}"
                    ));
                }
                if let Some(max) = shape.max
                    && (n as f64) > max
                {
                    fail(format!(
                        "Member must have value less than or equal to {max}"
                    ));
                }
            }
            "double" | "float" if !v.is_number() => fail("Member must be a number".into()),
            "double" | "float" => {}
            "boolean" if !v.is_boolean() => fail("Member must be a boolean".into()),
            "boolean" => {}
            "timestamp" if !(v.is_number() || v.is_string()) => {
                fail("Member must be a timestamp".into())
            }
            "timestamp" => {}
            "blob" if !v.is_string() => fail("Member must be base64-encoded data".into()),
            "blob" => {}
            "list" => {
                let Some(items) = v.as_array() else {
                    return fail("Member must be a list".into());
                };
                let n = items.len() as f64;
                if let Some(min) = shape.min
                    && n < min
                {
                    return fail(format!(
                        "Member must have length greater than or equal to {min}"
                    ));
                }
                if let Some(max) = shape.max
                    && n > max
                {
                    return fail(format!(
                        "Member must have length less than or equal to {max}"
                    ));
                }
                if let Some(m) = &shape.member {
                    for (i, item) in items.iter().enumerate() {
                        self.check(m, item, &format!("{path}.{}", i + 1), errors, relax);
                    }
                }
            }
            "map" => {
                let Some(obj) = v.as_object() else {
                    return fail("Member must be a map".into());
                };
                let n = obj.len() as f64;
                if let Some(min) = shape.min
                    && n < min
                {
                    return fail(format!(
                        "Member must have length greater than or equal to {min}"
                    ));
                }
                if let Some(max) = shape.max
                    && n > max
                {
                    return fail(format!(
                        "Member must have length less than or equal to {max}"
                    ));
                }
                for (k, item) in obj {
                    if let Some(ks) = &shape.key {
                        self.check(
                            ks,
                            &Value::String(k.clone()),
                            &format!("{path}.key"),
                            errors,
                            relax,
                        );
                    }
                    if let Some(vs) = &shape.value {
                        self.check(vs, item, &format!("{path}.{k}"), errors, relax);
                    }
                }
            }
            // `document` and anything newer: any JSON is acceptable.
            _ => {}
        }
    }

    fn check_structure(
        &self,
        shape: &Shape,
        obj: &Map<String, Value>,
        path: &str,
        errors: &mut Vec<FieldError>,
        relax: Relax,
    ) {
        let join = |m: &str| {
            if path.is_empty() {
                m.to_owned()
            } else {
                format!("{path}.{m}")
            }
        };
        for r in &shape.required {
            if obj.get(r).is_none_or(Value::is_null) {
                errors.push(FieldError {
                    name: join(r),
                    message: format!(
                        "Value null at '{}' failed to satisfy constraint: Member must not be null",
                        join(r)
                    ),
                });
            }
        }
        let mut set = 0;
        for (name, member) in &shape.members {
            let Some(v) = obj.get(name) else { continue };
            if v.is_null() {
                continue;
            }
            set += 1;
            self.check(&member.shape, v, &join(name), errors, relax);
        }
        if shape.union && set != 1 {
            let at = if path.is_empty() { "input" } else { path };
            errors.push(FieldError {
                name: at.to_owned(),
                message: format!("Value at '{at}' failed to satisfy constraint: exactly one member of the union must be set"),
            });
        }
    }
}

fn trunc(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_members_read_from_the_query_string_validate_like_a_body() {
        let m = control();
        let params = [
            ("datasetId", "ds-0123456789".to_owned()),
            ("datasetVersion", "1".to_owned()),
            ("maxResults", "2".to_owned()),
            ("nextToken", "tok".to_owned()),
            ("unknown", "ignored".to_owned()),
        ];
        let body = m.body_from_params("ListDatasetExamples", &params).unwrap();
        assert_eq!(
            body,
            json!({"datasetVersion": "1", "maxResults": 2, "nextToken": "tok"})
        );
        let input = m
            .input_with("ListDatasetExamples", body, &params, Relax::default())
            .unwrap();
        assert_eq!(input["datasetId"], "ds-0123456789");
        assert_eq!(input["maxResults"], 2);
        // A malformed number names its member; a number out of range fails the model's check.
        let e = m
            .body_from_params("ListDatasets", &[("maxResults", "ten".to_owned())])
            .unwrap_err();
        assert!(e.message.contains("maxResults"), "{}", e.message);
        let body = m
            .body_from_params("ListDatasets", &[("maxResults", "0".to_owned())])
            .unwrap();
        assert!(
            m.input_with("ListDatasets", body, &[], Relax::default())
                .is_err()
        );
    }

    #[test]
    fn models_load_and_patterns_compile() {
        assert!(control().operation("CreateAgentRuntime").is_some());
        assert!(data().operation("InvokeAgentRuntime").is_some());
        // Only the look-ahead pattern of memory namespace templates is beyond the regex crate;
        // that rule is enforced by hand in the memory crate.
        for m in [control(), data()] {
            for p in m.unsupported_patterns() {
                assert!(p.starts_with("(?!"), "unexpected unsupported pattern {p}");
            }
        }
    }

    #[test]
    fn one_value_checks_against_a_shape() {
        let check = |s: &str| {
            data().check_shape(
                "ResourceOauth2ReturnUrlType",
                "OAuth2CallbackUrl",
                &Value::String(s.to_owned()),
            )
        };
        assert!(check("https://app.example/cb?x=1").is_ok());
        assert!(check("myapp:cb").is_ok());
        for bad in ["no-scheme", "https://a b", ""] {
            let e = check(bad).unwrap_err();
            assert!(e.to_string().contains("OAuth2CallbackUrl"), "{e}");
        }
        assert!(check(&format!("x:{}", "a".repeat(2047))).is_err());
    }

    fn create(body: Value) -> Result<Value, ApiError> {
        control().input("CreateAgentRuntime", body, &[])
    }

    fn good() -> Value {
        json!({
            "agentRuntimeName": "my_agent",
            "agentRuntimeArtifact": {"codeConfiguration": {
                "code": {"s3": {"bucket": "bucket", "prefix": "agent.zip"}},
                "runtime": "PYTHON_3_11", "entryPoint": ["agent.py"]}},
            "roleArn": "arn:aws:iam::000000000000:role/x",
        })
    }

    #[test]
    fn accepts_a_valid_create() {
        create(good()).unwrap();
    }

    #[test]
    fn reports_each_broken_rule_with_its_path() {
        let mut b = good();
        b["agentRuntimeName"] = json!("9bad");
        b["agentRuntimeArtifact"]["codeConfiguration"]["runtime"] = json!("PYTHON_2_7");
        b["agentRuntimeArtifact"]["codeConfiguration"]["entryPoint"] = json!([]);
        b["lifecycleConfiguration"] = json!({"idleRuntimeSessionTimeout": 5});
        let e = create(b).unwrap_err();
        assert_eq!(e.reason, Some("FieldValidationFailed"));
        let names: Vec<_> = e.field_list.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "agentRuntimeName",
                "agentRuntimeArtifact.codeConfiguration.runtime",
                "agentRuntimeArtifact.codeConfiguration.entryPoint",
                "lifecycleConfiguration.idleRuntimeSessionTimeout"
            ]
        );
    }

    #[test]
    fn unions_need_exactly_one_member() {
        let mut b = good();
        b["agentRuntimeArtifact"]["containerConfiguration"] =
            json!({"containerUri": "public.ecr.aws/x/y:1"});
        let e = create(b).unwrap_err();
        assert_eq!(e.field_list[0].name, "agentRuntimeArtifact");
    }

    #[test]
    fn wrong_types_and_missing_members() {
        let e = create(json!({"agentRuntimeName": 5})).unwrap_err();
        let names: Vec<_> = e.field_list.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"agentRuntimeArtifact"));
        assert!(names.contains(&"roleArn"));
        assert!(names.contains(&"agentRuntimeName"));
    }

    #[test]
    fn query_params_are_typed_and_checked() {
        let v = control()
            .input(
                "ListAgentRuntimes",
                json!({}),
                &[("maxResults", "5".into())],
            )
            .unwrap();
        assert_eq!(v["maxResults"], 5);
        let e = control()
            .input(
                "ListAgentRuntimes",
                json!({}),
                &[("maxResults", "101".into())],
            )
            .unwrap_err();
        assert_eq!(e.field_list[0].name, "maxResults");
        let e = control()
            .input(
                "ListAgentRuntimes",
                json!({}),
                &[("maxResults", "x".into())],
            )
            .unwrap_err();
        assert_eq!(e.field_list[0].name, "maxResults");
    }

    #[test]
    fn lifecycle_minimum_is_relaxed_only_on_request() {
        let mut b = good();
        b["lifecycleConfiguration"] = json!({"idleRuntimeSessionTimeout": 2, "maxLifetime": 6});
        assert!(create(b.clone()).is_err());
        let relax = Relax {
            lifecycle_minimum: true,
        };
        control()
            .input_with("CreateAgentRuntime", b.clone(), &[], relax)
            .unwrap();
        b["lifecycleConfiguration"] = json!({"idleRuntimeSessionTimeout": 0});
        assert!(
            control()
                .input_with("CreateAgentRuntime", b, &[], relax)
                .is_err()
        );
    }

    #[test]
    fn sensitive_values_are_not_echoed() {
        let mut b = good();
        b["description"] = json!("");
        let e = create(b).unwrap_err();
        assert!(!e.message.contains("Value ''"), "{}", e.message);
    }
}
