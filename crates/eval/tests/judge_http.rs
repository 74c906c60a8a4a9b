//! The judge against a real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions API
//! with scripted answers, and `evaluate` end to end over a real Strands session.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_api::evaluation::{
    BedrockEvaluatorModelConfig, Context, EvaluateInput, EvaluationContent,
    EvaluationExpectedTrajectory, EvaluationInput, EvaluationReferenceInput, EvaluationTarget,
    EvaluatorConfig, EvaluatorLevel, EvaluatorModelConfig, LambdaEvaluatorConfig,
    LlmAsAJudgeEvaluatorConfig, NumericalScaleDefinition, RatingScale, SpanContext, TokenUsage,
};
use berth_eval::catalogue::builtin;
use berth_eval::judge::{INVALID_VERDICT, NOT_CONFIGURED, PROVIDER_ERROR, Scale};
use berth_eval::{CodeRunner, Evaluator, Judge, JudgeSettings, NoCodeRunner, evaluate};
use berth_memory::provider::ProviderKind;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer: a status and a body.
#[derive(Clone)]
enum Answer {
    /// 200 with this assistant text and usage (prompt, completion).
    Text(String, u64, u64),
    /// This status with an OpenAI-style error.
    Error(u16),
}

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    /// The default when the script is used up.
    fallback: Option<Answer>,
    requests: Vec<Value>,
}

type Shared = Arc<Mutex<Script>>;

async fn chat(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    let answer = {
        let mut s = s.lock().expect("lock");
        s.requests.push(body);
        let next = s.answers.pop_front();
        next.or_else(|| s.fallback.clone())
    };
    match answer {
        Some(Answer::Text(text, p, c)) => Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "judge-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        }))
        .into_response(),
        Some(Answer::Error(code)) => (
            StatusCode::from_u16(code).expect("status"),
            Json(json!({"error": {"message": "overloaded", "type": "server_error"}})),
        )
            .into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no scripted answer").into_response(),
    }
}

/// Starts the scripted server; returns its base URL and script.
async fn server(answers: Vec<Answer>, fallback: Option<Answer>) -> (String, Shared) {
    let script: Shared = Arc::new(Mutex::new(Script {
        answers: answers.into(),
        fallback,
        requests: Vec::new(),
    }));
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{addr}/v1"), script)
}

fn settings(base: &str, retries: u32) -> JudgeSettings {
    JudgeSettings {
        provider: Some(ProviderKind::OpenAiCompatible),
        base_url: Some(base.to_owned()),
        api_key: Some("sk-test".into()),
        default_model: Some("default-judge".into()),
        timeout: Duration::from_secs(10),
        retries,
        ..JudgeSettings::default()
    }
}

fn scale() -> Vec<NumericalScaleDefinition> {
    vec![
        NumericalScaleDefinition {
            definition: "bad".into(),
            value: 0.0,
            label: "Bad".into(),
        },
        NumericalScaleDefinition {
            definition: "good".into(),
            value: 1.0,
            label: "Good".into(),
        },
    ]
}

fn user_prompt(req: &Value) -> &str {
    req["messages"][1]["content"]
        .as_str()
        .expect("user message")
}

#[tokio::test]
async fn judge_retries_provider_errors_and_bad_verdicts_and_adds_usage() {
    let (base, script) = server(
        vec![
            Answer::Error(503),
            Answer::Text("I'd say it is fine overall.".into(), 100, 7),
            Answer::Text(
                "```json\n{\"explanation\": \"Answers the question.\", \"label\": \"good\"}\n```"
                    .into(),
                120,
                9,
            ),
        ],
        None,
    )
    .await;
    let judge = Judge::new(settings(&base, 2));
    let scale = scale();
    let v = judge
        .verdict(None, "Judge this: {x}", Scale::Numerical(&scale))
        .await
        .expect("a verdict on the third attempt");
    assert_eq!(v.label, "Good");
    assert_eq!(v.value, Some(1.0));
    assert_eq!(v.explanation, "Answers the question.");
    assert_eq!(
        v.usage,
        TokenUsage {
            input_tokens: 220,
            output_tokens: 16,
            total_tokens: 236
        }
    );
    let s = script.lock().expect("lock");
    assert_eq!(s.requests.len(), 3);
    let req = &s.requests[2];
    assert_eq!(req["model"], "default-judge");
    assert_eq!(req["messages"][0]["role"], "system");
    let prompt = user_prompt(req);
    assert!(prompt.starts_with("Judge this: {x}"), "{prompt}");
    assert!(prompt.contains("- \"Bad\" (score 0): bad"), "{prompt}");
    assert!(prompt.contains("- \"Good\" (score 1): good"), "{prompt}");
    assert!(prompt.contains("\"label\""), "{prompt}");
}

#[tokio::test]
async fn judge_gives_up_after_its_retries() {
    let (base, script) = server(
        Vec::new(),
        Some(Answer::Text("{\"label\": \"Excellent\"}".into(), 10, 1)),
    )
    .await;
    let judge = Judge::new(settings(&base, 1));
    let scale = scale();
    let e = judge
        .verdict(None, "p", Scale::Numerical(&scale))
        .await
        .expect_err("no label on the scale");
    assert_eq!(e.code, INVALID_VERDICT);
    assert!(e.message.contains("after 2 attempts"), "{}", e.message);
    assert!(
        e.message.contains("\"excellent\" is not on the scale"),
        "{}",
        e.message
    );
    assert_eq!(e.usage.total_tokens, 22);
    assert_eq!(script.lock().expect("lock").requests.len(), 2);

    let (base, _) = server(Vec::new(), Some(Answer::Error(500))).await;
    let e = Judge::new(settings(&base, 0))
        .verdict(None, "p", Scale::Numerical(&scale))
        .await
        .expect_err("provider down");
    assert_eq!(e.code, PROVIDER_ERROR);
    assert!(e.message.contains("overloaded"), "{}", e.message);

    let e = Judge::new(JudgeSettings::default())
        .verdict(None, "p", Scale::Numerical(&scale))
        .await
        .expect_err("no provider");
    assert_eq!(e.code, NOT_CONFIGURED);
}

fn strands_docs() -> Vec<Value> {
    let path = format!(
        "{}/tests/fixtures/strands_events.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn input(target: Option<EvaluationTarget>, refs: Vec<EvaluationReferenceInput>) -> EvaluateInput {
    let docs = strands_docs();
    // Both log groups' copies, as the SDK sends them.
    let twice: Vec<Value> = docs.iter().chain(docs.iter()).cloned().collect();
    EvaluateInput {
        evaluation_input: EvaluationInput::SessionSpans(twice),
        evaluation_target: target,
        evaluation_reference_inputs: (!refs.is_empty()).then_some(refs),
    }
}

fn session_ref(trace_id: Option<&str>) -> Context {
    Context::SpanContext(SpanContext {
        session_id: "session-fixture-0001".into(),
        trace_id: trace_id.map(str::to_owned),
        span_id: None,
    })
}

#[tokio::test]
async fn evaluate_builtin_trace_judge_over_a_strands_session() {
    let (base, script) = server(
        vec![Answer::Error(429)],
        Some(Answer::Text(
            "{\"explanation\": \"Direct answer.\", \"label\": \"Very Helpful\"}".into(),
            50,
            5,
        )),
    )
    .await;
    let judge = Judge::new(settings(&base, 2));
    let helpfulness = builtin("Builtin.Helpfulness").expect("built-in");
    let out = evaluate(
        &helpfulness,
        &input(
            None,
            vec![EvaluationReferenceInput {
                context: session_ref(None),
                expected_response: None,
                assertions: Some(vec![EvaluationContent::Text("contains: 5".into())]),
                expected_trajectory: None,
            }],
        ),
        &NoCodeRunner,
        &judge,
    )
    .await
    .expect("evaluates");
    assert_eq!(out.evaluation_results.len(), 2, "one per trace");
    let traces: Vec<String> = out
        .evaluation_results
        .iter()
        .map(|r| r.context.span().trace_id.clone().expect("trace id"))
        .collect();
    assert_ne!(traces[0], traces[1]);
    for r in &out.evaluation_results {
        assert_eq!(r.evaluator_id, "Builtin.Helpfulness");
        assert_eq!(
            r.evaluator_arn,
            "arn:aws:bedrock-agentcore:::evaluator/Builtin.Helpfulness"
        );
        assert_eq!(r.label.as_deref(), Some("Very Helpful"));
        assert!((r.value.expect("value") - 5.0 / 6.0).abs() < 1e-9);
        assert_eq!(r.error_code, None);
        assert_eq!(
            r.ignored_reference_input_fields.as_deref(),
            Some(&["assertions".to_owned()][..])
        );
        assert_eq!(r.context.span().session_id, "session-fixture-0001");
        assert!(r.token_usage.expect("usage").total_tokens >= 55);
    }
    let wire = serde_json::to_value(&out).expect("serialises");
    assert!(wire["evaluationResults"][0]["tokenUsage"]["inputTokens"].is_number());

    let s = script.lock().expect("lock");
    assert_eq!(s.requests.len(), 3, "two traces, one retried after the 429");
    let prompts: Vec<&str> = s.requests.iter().map(user_prompt).collect();
    // The second turn's prompt: the first turn as context, the current turn's user input and
    // tool call, its response as the assistant turn.
    let second = prompts
        .iter()
        .find(|p| p.contains("Turn 2 (current)"))
        .expect("second turn judged");
    assert!(second.contains("User: add 2 and 3"), "{second}");
    assert!(second.contains("Assistant: the tool said 5"), "{second}");
    assert!(second.contains("User: now try the broken tool"), "{second}");
    assert!(
        second.contains("Tool call: broken({\"a\": 2, \"b\": 3}) -> error: Error: RuntimeError - the broken tool broke"),
        "{second}"
    );
    assert!(
        second.contains(
            "# Assistant response to evaluate\nthe tool said Error: RuntimeError - the broken tool broke"
        ),
        "{second}"
    );
}

#[tokio::test]
async fn evaluate_levels_targets_and_checks() {
    let judge = Judge::new(JudgeSettings::default());
    let docs = strands_docs();
    let session = berth_eval::read_session(&docs).expect("reads");
    let (t1, t2) = (
        session.traces[0].trace_id.clone(),
        session.traces[1].trace_id.clone(),
    );
    let broken_span = session.traces[1].tool_calls[0].span_id.clone();

    // Trajectory: SESSION, needs expectedTrajectory.
    let exact = builtin("Builtin.TrajectoryExactOrderMatch").expect("built-in");
    let with_traj = |names: &[&str]| {
        vec![EvaluationReferenceInput {
            context: session_ref(None),
            expected_response: None,
            assertions: None,
            expected_trajectory: Some(EvaluationExpectedTrajectory {
                tool_names: Some(names.iter().map(|s| s.to_string()).collect()),
            }),
        }]
    };
    let out = evaluate(
        &exact,
        &input(None, with_traj(&["add", "broken"])),
        &NoCodeRunner,
        &judge,
    )
    .await
    .expect("evaluates");
    assert_eq!(out.evaluation_results.len(), 1);
    let r = &out.evaluation_results[0];
    assert_eq!((r.value, r.label.as_deref()), (Some(1.0), Some("Match")));
    assert_eq!(r.context.span().trace_id, None);
    let out = evaluate(
        &exact,
        &input(None, with_traj(&["broken"])),
        &NoCodeRunner,
        &judge,
    )
    .await
    .expect("evaluates");
    assert_eq!(out.evaluation_results[0].value, Some(0.0));
    let out = evaluate(&exact, &input(None, Vec::new()), &NoCodeRunner, &judge)
        .await
        .expect("evaluates");
    assert_eq!(
        out.evaluation_results[0].error_code.as_deref(),
        Some("MissingReferenceInput")
    );

    // Assertions.
    let asserts = builtin("Builtin.Berth.Assertions").expect("built-in");
    let refs = vec![
        EvaluationReferenceInput {
            context: session_ref(None),
            expected_response: None,
            assertions: Some(vec![
                EvaluationContent::Text("contains: the tool said 5".into()),
                EvaluationContent::Text("tokens <= 560".into()),
                EvaluationContent::Text("regex: broke$".into()),
            ]),
            expected_trajectory: None,
        },
        EvaluationReferenceInput {
            context: session_ref(Some(&t1)),
            expected_response: Some(EvaluationContent::Text("5".into())),
            assertions: None,
            expected_trajectory: None,
        },
    ];
    let out = evaluate(&asserts, &input(None, refs.clone()), &NoCodeRunner, &judge)
        .await
        .expect("evaluates");
    let r = &out.evaluation_results[0];
    assert_eq!(r.label.as_deref(), Some("Pass"), "{:?}", r.explanation);
    assert_eq!(
        r.ignored_reference_input_fields.as_deref(),
        Some(&["expectedResponse".to_owned()][..])
    );

    // TOOL_CALL judge without a configured model: one error result per tool call, not a
    // failed call.
    let tool = builtin("Builtin.ToolSelectionAccuracy").expect("built-in");
    let out = evaluate(&tool, &input(None, Vec::new()), &NoCodeRunner, &judge)
        .await
        .expect("evaluates");
    assert_eq!(out.evaluation_results.len(), 2);
    assert!(
        out.evaluation_results
            .iter()
            .all(|r| r.error_code.as_deref() == Some(NOT_CONFIGURED))
    );
    let out = evaluate(
        &tool,
        &input(
            Some(EvaluationTarget::SpanIds(vec![broken_span.clone()])),
            Vec::new(),
        ),
        &NoCodeRunner,
        &judge,
    )
    .await
    .expect("evaluates");
    assert_eq!(out.evaluation_results.len(), 1);
    let c = out.evaluation_results[0].context.span();
    assert_eq!(
        (c.trace_id.as_deref(), c.span_id.as_deref()),
        (Some(t2.as_str()), Some(broken_span.as_str()))
    );

    // Bad targets are validation errors.
    let helpfulness = builtin("Builtin.Helpfulness").expect("built-in");
    let e = evaluate(
        &helpfulness,
        &input(
            Some(EvaluationTarget::TraceIds(vec!["f".repeat(32)])),
            Vec::new(),
        ),
        &NoCodeRunner,
        &judge,
    )
    .await
    .expect_err("unknown trace");
    assert_eq!(e.field_list[0].name, "evaluationTarget.traceIds.0");
    let e = evaluate(
        &exact,
        &input(
            Some(EvaluationTarget::TraceIds(vec![t1.clone()])),
            Vec::new(),
        ),
        &NoCodeRunner,
        &judge,
    )
    .await
    .expect_err("session evaluators take no target");
    assert_eq!(e.field_list[0].name, "evaluationTarget");
    let mut other = refs.clone();
    other[0].context = Context::SpanContext(SpanContext {
        session_id: "another".into(),
        trace_id: None,
        span_id: None,
    });
    let e = evaluate(&asserts, &input(None, other), &NoCodeRunner, &judge)
        .await
        .expect_err("another session");
    assert_eq!(
        e.field_list[0].name,
        "evaluationReferenceInputs.0.context.spanContext.sessionId"
    );
}

/// A code runner that answers per trace, recording the events.
struct Recorder(Mutex<Vec<Value>>);

#[async_trait::async_trait]
impl CodeRunner for Recorder {
    async fn run(&self, lambda: &LambdaEvaluatorConfig, event: Value) -> Result<Value, String> {
        assert_eq!(
            lambda.lambda_arn,
            "arn:aws:lambda:us-east-1:123456789012:function:f"
        );
        let traces = event["evaluationTarget"]["traceIds"].clone();
        self.0.lock().expect("lock").push(event);
        Ok(if traces.is_null() {
            json!({"errorCode": "VALIDATION_FAILED", "errorMessage": "no target"})
        } else {
            json!({"label": "Pass", "value": 1, "explanation": "ok"})
        })
    }
}

#[tokio::test]
async fn code_and_custom_judges() {
    let code = Evaluator::custom(
        "mycode-abcdefghij",
        "arn:aws:bedrock-agentcore:us-east-1:123456789012:evaluator/mycode-abcdefghij",
        "mycode",
        EvaluatorLevel::Trace,
        &EvaluatorConfig::CodeBased(
            berth_api::evaluation::CodeBasedEvaluatorConfig::LambdaConfig(LambdaEvaluatorConfig {
                lambda_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
                lambda_timeout_in_seconds: None,
            }),
        ),
        None,
    )
    .expect("custom");
    let runner = Recorder(Mutex::new(Vec::new()));
    let judge = Judge::new(JudgeSettings::default());
    let out = evaluate(&code, &input(None, Vec::new()), &runner, &judge)
        .await
        .expect("evaluates");
    assert_eq!(out.evaluation_results.len(), 2);
    assert!(
        out.evaluation_results
            .iter()
            .all(|r| r.label.as_deref() == Some("Pass") && r.value == Some(1.0))
    );
    {
        let events = runner.0.lock().expect("lock");
        assert_eq!(events[0]["schemaVersion"], "1.0");
        assert_eq!(events[0]["evaluationLevel"], "TRACE");
        assert_eq!(events[0]["evaluatorId"], "mycode-abcdefghij");
        assert_eq!(
            events[0]["evaluationInput"]["sessionSpans"]
                .as_array()
                .expect("spans")
                .len(),
            44
        );
        assert_eq!(
            events[0]["evaluationTarget"]["traceIds"]
                .as_array()
                .expect("ids")
                .len(),
            1
        );
    }

    // A custom judge with its own model id, multi-dimensional scale.
    let (base, script) = server(
        Vec::new(),
        Some(Answer::Text(
            "{\"label\": \"Good\", \"explanation\": \"fine\"}".into(),
            1,
            1,
        )),
    )
    .await;
    let judge = Judge::new(settings(&base, 0));
    let custom =
        Evaluator::custom(
            "myjudge-abcdefghij",
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:evaluator/myjudge-abcdefghij",
            "myjudge",
            EvaluatorLevel::Session,
            &EvaluatorConfig::LlmAsAJudge(LlmAsAJudgeEvaluatorConfig {
                instructions: "Rate the session {context}".into(),
                rating_scale: RatingScale::MultiDimensional(vec![
                    berth_api::evaluation::EvaluationDimension {
                        dimension_name: "Tone".into(),
                        dimension_instruction: "Is the tone right?".into(),
                        dimension_rating_scale:
                            berth_api::evaluation::DimensionRatingScale::Numerical(scale()),
                    },
                    berth_api::evaluation::EvaluationDimension {
                        dimension_name: "Accuracy".into(),
                        dimension_instruction: "Is it accurate?".into(),
                        dimension_rating_scale:
                            berth_api::evaluation::DimensionRatingScale::Numerical(scale()),
                    },
                ]),
                model_config: EvaluatorModelConfig::Bedrock(BedrockEvaluatorModelConfig {
                    model_id: "custom-model".into(),
                    inference_config: None,
                    additional_model_request_fields: None,
                }),
            }),
            None,
        )
        .expect("custom");
    let out = evaluate(&custom, &input(None, Vec::new()), &NoCodeRunner, &judge)
        .await
        .expect("evaluates");
    let dims: Vec<&str> = out
        .evaluation_results
        .iter()
        .map(|r| r.evaluation_dimension_name.as_deref().expect("dimension"))
        .collect();
    assert_eq!(dims, ["Tone", "Accuracy"]);
    let s = script.lock().expect("lock");
    assert!(s.requests.iter().all(|r| r["model"] == "custom-model"));
    assert!(
        user_prompt(&s.requests[1])
            .contains("# Dimension: Accuracy\nJudge only this dimension: Is it accurate?")
    );
}
