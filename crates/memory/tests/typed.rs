//! `Memory` called directly with typed requests (no HTTP, no JSON in the calls) on a SQLite store
//! in a temp dir: create a memory, write events, list them back, and what the typed responses
//! put on the wire (member names, epoch-second timestamps, absent members skipped). Also the
//! idempotency of `CreateMemory` on its typed request.

// Tests fail by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

use berth_api::ErrorKind;
use berth_api::memory::{
    Branch, Content, Conversational, CreateEventRequest, CreateMemoryRequest, EventFilter,
    GetEventRequest, ListEventsRequest, ListSessionsRequest, MemoryStrategyInput, PayloadItem,
    StrategyInput, WireTime,
};
use berth_memory::{Memory, Options};
use berth_types::Partition;
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Running {
    memory: Memory,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("berth.db").display());
        let stores = berth_store::open_all(&url).await.unwrap();
        let shutdown = CancellationToken::new();
        let opts = Options::new(Partition {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        });
        let memory = Memory::start(stores.memory, opts, shutdown.clone())
            .await
            .unwrap();
        Self {
            memory,
            shutdown,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.memory.closed().await;
    }
}

fn create_memory_request(name: &str, token: Option<&str>) -> CreateMemoryRequest {
    CreateMemoryRequest {
        client_token: token.map(str::to_owned),
        name: name.into(),
        description: Some("typed".into()),
        encryption_key_arn: None,
        memory_execution_role_arn: None,
        event_expiry_duration: Some(30),
        memory_strategies: Some(vec![MemoryStrategyInput::Semantic(StrategyInput {
            name: "facts".into(),
            description: None,
            namespaces: None,
            namespace_templates: None,
            configuration: None,
            reflection_configuration: None,
            memory_record_schema: None,
            record_expiry_specification: None,
        })]),
        indexed_keys: None,
        namespace_keys: None,
        stream_delivery_resources: None,
        tags: None,
    }
}

fn said(role: &str, text: &str) -> PayloadItem {
    PayloadItem {
        conversational: Some(Conversational {
            content: Content {
                text: Some(text.into()),
            },
            role: role.into(),
        }),
        blob: None,
        json: None,
    }
}

#[tokio::test]
async fn create_memory_then_events_then_list_them_typed() {
    let r = Running::start().await;
    let created = r
        .memory
        .create_memory(create_memory_request("typed_mem", None))
        .await
        .unwrap()
        .memory;
    assert!(created.id.starts_with("typed_mem-"));
    assert_eq!(
        created.arn,
        format!(
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:memory/{}",
            created.id
        )
    );
    assert_eq!(created.status, "CREATING");
    assert_eq!(created.event_expiry_duration, 30);
    assert_eq!(created.description.as_deref(), Some("typed"));
    assert_eq!(created.strategies.len(), 1);
    let s = &created.strategies[0];
    assert_eq!(s.strategy_type, "SEMANTIC");
    assert_eq!(
        s.namespaces,
        ["/strategies/{memoryStrategyId}/actors/{actorId}/"]
    );

    // Recent times: events older than the memory's expiry (30 days) are not listed.
    let now = (berth_types::now_millis() / 1000) as f64;
    let event = |ts: f64, payload: Vec<PayloadItem>| CreateEventRequest {
        // The data plane takes the memory's ARN as well as its id.
        memory_id: created.arn.clone(),
        actor_id: "alice".into(),
        session_id: Some("s1".into()),
        event_timestamp: WireTime::Seconds(ts),
        payload,
        branch: None,
        client_token: None,
        metadata: None,
        extraction_config: None,
    };
    let first = r
        .memory
        .create_event(event(now + 0.25, vec![said("USER", "I drink tea")]))
        .await
        .unwrap()
        .event;
    assert_eq!(first.memory_id, created.id);
    assert_eq!(first.session_id, "s1");
    assert_eq!(first.event_timestamp, (now * 1000.0) as i64 + 250);
    let mut second = event(
        0.0,
        vec![PayloadItem {
            conversational: None,
            blob: Some(json!(["any", {"json": 1}])),
            json: None,
        }],
    );
    // Seconds as text, as some SDKs send them.
    second.event_timestamp = WireTime::Text(format!("{}", now + 1.0));
    second.branch = Some(Branch {
        name: "alt".into(),
        root_event_id: Some(first.event_id.clone()),
    });
    let second = r.memory.create_event(second).await.unwrap().event;
    assert_eq!(second.event_timestamp, (now * 1000.0) as i64 + 1000);

    let list = |include: Option<bool>, filter: Option<EventFilter>| ListEventsRequest {
        memory_id: created.id.clone(),
        actor_id: "alice".into(),
        session_id: "s1".into(),
        include_payloads: include,
        filter,
        max_results: Some(1),
        next_token: None,
    };
    let page = r.memory.list_events(list(None, None)).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].event_id, second.event_id, "newest first");
    assert!(page.next_token.is_some());
    let mut rest = list(Some(false), None);
    rest.next_token = page.next_token.clone();
    let page2 = r.memory.list_events(rest).await.unwrap();
    assert_eq!(page2.events.len(), 1);
    assert_eq!(page2.events[0].event_id, first.event_id);
    assert!(page2.events[0].payload.is_none());
    assert!(page2.next_token.is_none());

    // The wire form of a typed response: model member names, epoch seconds, no absent members.
    assert_eq!(
        serde_json::to_value(&page.events[0]).unwrap(),
        json!({"memoryId": created.id, "actorId": "alice", "sessionId": "s1",
               "eventId": second.event_id, "eventTimestamp": now + 1.0,
               "payload": [{"blob": ["any", {"json": 1}]}],
               "branch": {"name": "alt", "rootEventId": first.event_id}})
    );
    let got = r
        .memory
        .get_event(GetEventRequest {
            memory_id: created.id.clone(),
            actor_id: "alice".into(),
            session_id: "s1".into(),
            event_id: first.event_id.clone(),
        })
        .await
        .unwrap()
        .event;
    assert_eq!(
        got.payload.unwrap()[0]
            .conversational
            .as_ref()
            .unwrap()
            .content
            .text
            .as_deref(),
        Some("I drink tea")
    );
    let sessions = r
        .memory
        .list_sessions(ListSessionsRequest {
            memory_id: created.id.clone(),
            actor_id: "alice".into(),
            max_results: None,
            next_token: None,
        })
        .await
        .unwrap();
    assert_eq!(sessions.session_summaries.len(), 1);
    assert_eq!(sessions.session_summaries[0].session_id, "s1");

    // An event time that is not a time is refused against its member.
    let mut bad = event(0.0, vec![said("USER", "x")]);
    bad.event_timestamp = WireTime::Text("yesterday".into());
    let e = r.memory.create_event(bad).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Validation);
    assert!(e.message.contains("eventTimestamp"), "{}", e.message);
    r.stop().await;
}

#[tokio::test]
async fn create_memory_replays_its_typed_answer_for_the_same_token() {
    let r = Running::start().await;
    let a = r
        .memory
        .create_memory(create_memory_request("idem", Some("tok-1")))
        .await
        .unwrap();
    let b = r
        .memory
        .create_memory(create_memory_request("idem", Some("tok-1")))
        .await
        .unwrap();
    assert_eq!(
        a, b,
        "the stored answer reads back into the same typed response"
    );
    let mut other = create_memory_request("idem", Some("tok-1"));
    other.description = Some("changed".into());
    let e = r.memory.create_memory(other).await.unwrap_err();
    assert_eq!(e.reason, Some("IdempotentParameterMismatchException"));
    r.stop().await;
}
