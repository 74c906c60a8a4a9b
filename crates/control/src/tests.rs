use super::*;
use async_trait::async_trait;
use berth_api::ErrorKind;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// A typed request from its wire JSON, as the server reads it after model validation.
fn req<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// A deployer whose builds finish when the test says so.
struct Scripted {
    results: Mutex<mpsc::Receiver<Result<String, String>>>,
}

#[async_trait]
impl Deployer for Scripted {
    fn check(&self, spec: &RuntimeSpec) -> Result<(), ApiError> {
        match spec.agent_runtime_artifact {
            berth_api::control::Artifact::ContainerConfiguration { .. } => {
                Err(ApiError::field("agentRuntimeArtifact", "no containers"))
            }
            _ => Ok(()),
        }
    }
    async fn build(
        &self,
        _: &Runtime,
        _: &RuntimeVersion,
    ) -> Result<String, crate::deployer::Error> {
        self.results
            .lock()
            .await
            .recv()
            .await
            .unwrap_or(Err("test over".into()))
            .map_err(crate::deployer::Error::Build)
    }
    async fn retire(&self, _: &str, _: Option<u32>) {}
}

struct Fixture {
    control: Control,
    builds: mpsc::Sender<Result<String, String>>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = berth_store::open(&format!("sqlite://{}", dir.path().join("db").display()))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(16);
    let control = Control::start(
        store,
        Partition {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        },
        Arc::new(Scripted {
            results: Mutex::new(rx),
        }),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    Fixture {
        control,
        builds: tx,
        _dir: dir,
    }
}

fn create_input(name: &str) -> Value {
    json!({
        "agentRuntimeName": name,
        "agentRuntimeArtifact": {"codeConfiguration": {
            "code": {"s3": {"bucket": "b", "prefix": "a.zip"}},
            "runtime": "PYTHON_3_11", "entryPoint": ["agent.py"]}},
        "roleArn": "arn:aws:iam::000000000000:role/r",
        "clientToken": format!("{name}-token-0123456789012345678901234567890"),
    })
}

async fn settle(f: &Fixture, id: &str, version: u32, want: Status) {
    // Wait for the build task to record its result: poll the real state, bounded.
    for _ in 0..500 {
        let v = f
            .control
            .store()
            .version(id, version)
            .await
            .unwrap()
            .unwrap();
        if v.status == want {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("version {version} never reached {want:?}");
}

#[tokio::test]
async fn create_build_update_and_default_tracks_latest() {
    let f = fixture().await;
    let r = f
        .control
        .create_runtime(req(create_input("agent_a")))
        .await
        .unwrap();
    let id = r.agent_runtime_id.clone();
    assert_eq!(r.status, Status::Creating);
    f.builds.send(Ok("sha256:1".into())).await.unwrap();
    settle(&f, &id, 1, Status::Ready).await;
    let ep = f
        .control
        .get_endpoint(req(
            json!({"agentRuntimeId": id, "endpointName": "DEFAULT"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        (ep.live_version.as_deref(), ep.status),
        (Some("1"), Status::Ready)
    );

    let pinned = f
        .control
        .create_endpoint(req(json!({"agentRuntimeId": id, "name": "prod"})))
        .await
        .unwrap();
    assert_eq!(pinned.status, Status::Ready);

    let mut upd = create_input("agent_a");
    upd["agentRuntimeId"] = id.clone().into();
    upd["clientToken"] = "update-token-0123456789012345678901234567890".into();
    let u = f.control.update_runtime(req(upd)).await.unwrap();
    assert_eq!(u.agent_runtime_version, "2");
    f.builds.send(Ok("sha256:2".into())).await.unwrap();
    settle(&f, &id, 2, Status::Ready).await;
    let d = f
        .control
        .get_endpoint(req(
            json!({"agentRuntimeId": id, "endpointName": "DEFAULT"}),
        ))
        .await
        .unwrap();
    assert_eq!(d.live_version.as_deref(), Some("2"));
    let p = f
        .control
        .get_endpoint(req(json!({"agentRuntimeId": id, "endpointName": "prod"})))
        .await
        .unwrap();
    assert_eq!(
        p.live_version.as_deref(),
        Some("1"),
        "named endpoints stay pinned"
    );
}

#[tokio::test]
async fn idempotency_replays_and_detects_mismatch() {
    let f = fixture().await;
    let a = f
        .control
        .create_runtime(req(create_input("agent_b")))
        .await
        .unwrap();
    let b = f
        .control
        .create_runtime(req(create_input("agent_b")))
        .await
        .unwrap();
    assert_eq!(a, b);
    let mut changed = create_input("agent_b");
    changed["description"] = "different".into();
    let e = f.control.create_runtime(req(changed)).await.unwrap_err();
    assert_eq!(e.reason, Some("IdempotentParameterMismatchException"));
    let mut other_token = create_input("agent_b");
    other_token["clientToken"] = "another-token-0123456789012345678901234567890".into();
    assert_eq!(
        f.control
            .create_runtime(req(other_token))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Conflict
    );
}

#[tokio::test]
async fn failed_build_is_recorded_with_reason() {
    let f = fixture().await;
    let r = f
        .control
        .create_runtime(req(create_input("agent_c")))
        .await
        .unwrap();
    let id = r.agent_runtime_id.clone();
    f.builds
        .send(Err("pip: no matching distribution".into()))
        .await
        .unwrap();
    settle(&f, &id, 1, Status::CreateFailed).await;
    let g = f
        .control
        .get_runtime(req(json!({"agentRuntimeId": id})))
        .await
        .unwrap();
    assert_eq!(
        g.failure_reason.as_deref(),
        Some("pip: no matching distribution")
    );
    let ep = f
        .control
        .get_endpoint(req(
            json!({"agentRuntimeId": id, "endpointName": "DEFAULT"}),
        ))
        .await
        .unwrap();
    assert_eq!(ep.status, Status::CreateFailed);
}

#[tokio::test]
async fn default_endpoint_cannot_be_deleted_and_versions_in_use_are_kept() {
    let f = fixture().await;
    let r = f
        .control
        .create_runtime(req(create_input("agent_d")))
        .await
        .unwrap();
    let id = r.agent_runtime_id.clone();
    let e = f
        .control
        .delete_endpoint(req(
            json!({"agentRuntimeId": id, "endpointName": "DEFAULT"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    let e = f
        .control
        .delete_runtime(req(
            json!({"agentRuntimeId": id, "agentRuntimeVersion": "1"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    let d = f
        .control
        .delete_runtime(req(json!({"agentRuntimeId": id})))
        .await
        .unwrap();
    assert_eq!(d.status, Status::Deleting);
}

#[tokio::test]
async fn paging_walks_every_runtime_once() {
    let f = fixture().await;
    for i in 0..7 {
        f.control
            .create_runtime(req(create_input(&format!("pg_{i}"))))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = json!({"maxResults": 3});
        if let Some(t) = &token {
            q["nextToken"] = t.clone().into();
        }
        let page = f.control.list_runtimes(req(q)).await.unwrap();
        for r in &page.agent_runtimes {
            seen.push(r.agent_runtime_name.clone());
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 7);
    assert_eq!(seen.len(), 7);
    let e = f
        .control
        .list_runtimes(req(json!({"nextToken": "garbage"})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation);
}

#[tokio::test]
async fn a_qualifier_for_a_live_session_must_name_an_endpoint_or_a_version() {
    let f = fixture().await;
    let r = f
        .control
        .create_runtime(req(create_input("agent_q")))
        .await
        .unwrap();
    let id = r.agent_runtime_id.clone();
    f.builds.send(Ok("sha256:1".into())).await.unwrap();
    settle(&f, &id, 1, Status::Ready).await;
    f.control
        .create_endpoint(req(json!({"agentRuntimeId": id, "name": "prod"})))
        .await
        .unwrap();
    for known in ["DEFAULT", "prod", "1"] {
        f.control.check_qualifier(&id, known).await.unwrap();
    }
    for unknown in ["nope", "2", "99999", ""] {
        let e = f.control.check_qualifier(&id, unknown).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceNotFound, "{unknown}");
    }
    let e = f
        .control
        .check_qualifier("nothere-0123456789", "DEFAULT")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
}

/// A runtime spec built in Rust, not read from JSON: what a caller other than the HTTP server
/// (the CLI, a test, another component) hands `Control`.
fn typed_spec(description: &str) -> RuntimeSpec {
    RuntimeSpec {
        agent_runtime_artifact: berth_api::control::Artifact::CodeConfiguration(
            berth_api::control::CodeConfiguration {
                code: berth_api::control::Code {
                    s3: berth_api::control::S3Location {
                        bucket: "b".into(),
                        prefix: "a.zip".into(),
                        version_id: None,
                    },
                },
                runtime: "PYTHON_3_11".into(),
                entry_point: vec!["agent.py".into()],
            },
        ),
        role_arn: "arn:aws:iam::000000000000:role/r".into(),
        description: Some(description.into()),
        lifecycle_configuration: Some(berth_api::control::Lifecycle {
            idle_runtime_session_timeout: Some(120),
            max_lifetime: None,
        }),
        environment_variables: None,
        network_configuration: None,
        protocol_configuration: None,
        request_header_configuration: None,
        other: Default::default(),
    }
}

#[tokio::test]
async fn typed_create_then_get_returns_the_typed_configuration() {
    let f = fixture().await;
    let created = f
        .control
        .create_runtime(ops::CreateAgentRuntime {
            agent_runtime_name: "typed_agent".into(),
            client_token: None,
            tags: Some([("team".to_owned(), "search".to_owned())].into()),
            agent_runtime_id: None,
            spec: typed_spec("first"),
        })
        .await
        .unwrap();
    assert_eq!(created.status, Status::Creating);
    assert_eq!(created.agent_runtime_version, "1");
    assert_eq!(
        created.agent_runtime_arn,
        format!(
            "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/{}",
            created.agent_runtime_id
        )
    );
    f.builds.send(Ok("sha256:1".into())).await.unwrap();
    settle(&f, &created.agent_runtime_id, 1, Status::Ready).await;

    let got = f
        .control
        .get_runtime(ops::GetAgentRuntime {
            agent_runtime_id: created.agent_runtime_id.clone(),
            agent_runtime_version: None,
        })
        .await
        .unwrap();
    assert_eq!(got.agent_runtime_name, "typed_agent");
    assert_eq!(got.agent_runtime_version, "1");
    assert_eq!(got.status, Status::Ready);
    assert_eq!(got.spec.description.as_deref(), Some("first"));
    assert_eq!(got.spec.role_arn, "arn:aws:iam::000000000000:role/r");
    // Defaults are filled in on the way out: the idle timeout given, AgentCore's lifetime.
    assert_eq!(
        got.spec.lifecycle_configuration,
        Some(berth_api::control::Lifecycle {
            idle_runtime_session_timeout: Some(120),
            max_lifetime: Some(berth_api::control::DEFAULT_MAX_LIFETIME_SECS),
        })
    );
    assert_eq!(
        got.spec.network_configuration,
        Some(json!({"networkMode": "PUBLIC"}))
    );
    assert_eq!(got.failure_reason, None);

    let tags = f
        .control
        .list_tags(ops::ListTagsForResource {
            resource_arn: created.agent_runtime_arn.clone(),
        })
        .await
        .unwrap();
    assert_eq!(tags.tags.get("team").map(String::as_str), Some("search"));

    let updated = f
        .control
        .update_runtime(ops::UpdateAgentRuntime {
            agent_runtime_id: created.agent_runtime_id.clone(),
            client_token: None,
            agent_runtime_name: None,
            tags: None,
            spec: typed_spec("second"),
        })
        .await
        .unwrap();
    assert_eq!(
        (updated.agent_runtime_version.as_str(), updated.status),
        ("2", Status::Updating)
    );
    let versions = f
        .control
        .list_versions(ops::ListAgentRuntimeVersions {
            agent_runtime_id: created.agent_runtime_id.clone(),
            max_results: Some(1),
            next_token: None,
        })
        .await
        .unwrap();
    assert_eq!(versions.agent_runtimes.len(), 1);
    assert_eq!(versions.agent_runtimes[0].agent_runtime_version, "2");
    assert_eq!(versions.agent_runtimes[0].description, "second");
    assert!(versions.next_token.is_some(), "one more page: version 1");
}

#[test]
fn an_idempotency_token_binds_the_typed_request_not_its_member_order() {
    let token = "order-token-0123456789012345678901234567890";
    let a: ops::CreateAgentRuntimeEndpoint = req(json!({
        "agentRuntimeId": "x", "name": "n", "description": "d", "clientToken": token
    }));
    let b: ops::CreateAgentRuntimeEndpoint = req(json!({
        "clientToken": token, "description": "d", "name": "n", "agentRuntimeId": "x"
    }));
    let ha = Idem::new("CreateAgentRuntimeEndpoint", &a, a.client_token.as_deref()).unwrap();
    let hb = Idem::new("CreateAgentRuntimeEndpoint", &b, b.client_token.as_deref()).unwrap();
    assert_eq!(ha.hash, hb.hash);
    let c = ops::CreateAgentRuntimeEndpoint {
        description: Some("other".into()),
        ..a.clone()
    };
    let hc = Idem::new("CreateAgentRuntimeEndpoint", &c, c.client_token.as_deref()).unwrap();
    assert_ne!(ha.hash, hc.hash);
}
